"""Transform and Trainer functions of the extractive question-answering (SQuAD) pipeline.

Referenced by dotted path (`pipeline.modules.question_answering.preprocessing_fn` and
`.run_fn`). One tf.Example per question (`serving.question_answering_features`). Transform
keeps the question, the context and the FIRST gold answer's code-point span (SQuAD trains on
the first answer; the Evaluator scores against all of them). Windows and their targets are cut
by the Trainer in tf.data with `QuestionAnsweringEncoder`, the same code the export runs in the
serving graph, so training and serving cannot cut differently; Transform cannot do it because
one question becomes a varying number of windows.

`custom_config` keys: as `pipeline.modules.token_classification`, plus max_query_length,
doc_stride, n_best and max_answer_length.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import tensorflow as tf

from bert_keras.span_classifier import END_LOGITS, START_LOGITS
from pipeline.modules.common import (
    batch_by_length,
    checkpoint_backbone,
    checkpoint_vocabulary,
    compile_and_fit,
    export_precision,
    gzip_records,
    total_training_steps,
)
from serving import question_answering_features as features
from serving.question_answering_encoder import QuestionAnsweringEncoder

MODEL_INPUTS = ("token_ids", "segment_ids", "padding_mask")
ANSWER_START = "answer_start"  # code points, of the first gold answer
ANSWER_END = "answer_end"  # exclusive
WINDOWS_FILE = "windows.json"
# Questions tokenized together before their windows are regrouped into training batches.
_QUESTIONS_PER_CUT = 64


def _first(values: tf.Tensor | tf.SparseTensor, default) -> tf.Tensor:
    """[batch] the first value of each example's feature (dense [batch, 1] or sparse)."""
    if isinstance(values, tf.SparseTensor):
        values = tf.sparse.to_dense(values, default_value=default)
    values = tf.reshape(values, [tf.shape(values)[0], -1])
    padded = tf.concat([values, tf.fill([tf.shape(values)[0], 1], default)], axis=1)
    return padded[:, 0]


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any]) -> dict:
    """Question, context (strings) and the first answer's [start, end) in code points."""
    answer_text = _first(inputs[features.ANSWER_TEXTS], tf.constant("", tf.string))
    answer_start = tf.cast(_first(inputs[features.ANSWER_STARTS], tf.constant(0, tf.int64)),
                           tf.int64)
    return {
        features.QUESTION: _first(inputs[features.QUESTION], tf.constant("", tf.string)),
        features.CONTEXT: _first(inputs[features.CONTEXT], tf.constant("", tf.string)),
        ANSWER_START: answer_start,
        ANSWER_END: answer_start + tf.cast(tf.strings.length(answer_text, unit="UTF8_CHAR"),
                                           tf.int64),
    }


def encoder_from_config(custom_config: dict[str, Any], vocabulary: list[str] | None = None,
                        ) -> QuestionAnsweringEncoder:
    """The window encoder the Trainer uses, and the export after it."""
    if vocabulary is None:
        vocabulary = checkpoint_vocabulary(custom_config)
    return QuestionAnsweringEncoder(
        vocabulary, custom_config["max_seq_length"], custom_config["max_query_length"],
        custom_config["doc_stride"], lower_case=custom_config["lower_case"])


def window_dataset(questions: tf.data.Dataset, encoder: QuestionAnsweringEncoder
                   ) -> tf.data.Dataset:
    """Dicts of [batch] question, context, answer_start, answer_end -> one element per window:
    (model inputs [length] int32, {start_logits: position, end_logits: position})."""

    def cut(batch):
        windows = encoder.windows(batch[features.QUESTION], batch[features.CONTEXT])
        start, end = encoder.answer_positions(windows, batch[ANSWER_START], batch[ANSWER_END])
        inputs = {name: windows[name] for name in MODEL_INPUTS}
        return tf.data.Dataset.from_tensor_slices(
            (inputs, {START_LOGITS: start, END_LOGITS: end}))

    return questions.flat_map(cut)


def make_dataset(files: list[str], feature_spec: dict, encoder: QuestionAnsweringEncoder,
                 batch_size: int, buckets: list[int], shuffle: bool, seed: int,
                 ) -> tf.data.Dataset:
    """Transformed examples -> batches of windows and their start/end targets, grouped by
    length (`batch_by_length`: a short context's window is not padded to a long one's)."""
    dataset = gzip_records(files, "transformed examples")
    if shuffle:
        dataset = dataset.shuffle(20_000, seed=seed, reshuffle_each_iteration=True)
    questions = dataset.batch(_QUESTIONS_PER_CUT).map(
        lambda records: tf.io.parse_example(records, feature_spec),
        num_parallel_calls=tf.data.AUTOTUNE)
    windows = window_dataset(questions, encoder)
    if shuffle:  # windows of one question apart, as BERT's shuffled feature files do
        windows = windows.shuffle(4_096, seed=seed, reshuffle_each_iteration=True)
    batches = batch_by_length(windows, batch_size, encoder.max_seq_length, buckets)
    return batches.prefetch(tf.data.AUTOTUNE)


def count_windows(files: list[str], feature_spec: dict, encoder: QuestionAnsweringEncoder
                  ) -> dict[str, int]:
    """Questions, their windows, and the questions whose first answer some window holds
    whole (windows without it train the model to point at [CLS])."""
    questions = gzip_records(files, "transformed examples").batch(_QUESTIONS_PER_CUT).map(
        lambda records: tf.io.parse_example(records, feature_spec))
    totals = [0, 0, 0]
    for batch in questions:
        windows = encoder.windows(batch[features.QUESTION], batch[features.CONTEXT])
        start, _ = encoder.answer_positions(windows, batch[ANSWER_START], batch[ANSWER_END])
        size = tf.shape(batch[features.QUESTION])[0]
        held = tf.math.unsorted_segment_max(tf.cast(start > 0, tf.int32),
                                            windows["window_question"], size)
        totals[0] += int(size)
        totals[1] += int(tf.shape(start)[0])
        totals[2] += int(tf.reduce_sum(held))
    return {"questions": totals[0], "windows": totals[1], "answer_in_a_window": totals[2]}


def run_fn(fn_args: Any) -> None:
    """TFX Trainer entry point: warm-start, fine-tune, export the QA serving SavedModel."""
    import keras
    import tensorflow_transform as tft

    from bert_keras.span_classifier import build_span_classifier, span_loss, span_loss_weights
    from serving.question_answering_export import export_question_answering

    config = fn_args.custom_config
    keras.utils.set_random_seed(config["seed"])
    feature_spec = tft.TFTransformOutput(fn_args.transform_output).transformed_feature_spec()
    backbone, vocabulary, _ = checkpoint_backbone(config)
    encoder = encoder_from_config(config, vocabulary)  # windows padded per batch

    def dataset(files, batch_size, shuffle):
        return make_dataset(files, feature_spec, encoder, batch_size, config["length_buckets"],
                            shuffle, config["seed"])

    counts = {split: count_windows(files, feature_spec, encoder)
              for split, files in (("train", fn_args.train_files), ("eval", fn_args.eval_files))}
    for split, count in counts.items():
        logging.info("%s: %d questions -> %d windows", split, count["questions"],
                     count["windows"])
        lost = count["questions"] - count["answer_in_a_window"]
        if lost:
            # Not silent: an answer longer than a window's context, or on no piece.
            logging.warning("%s: %d of %d questions have no window holding their whole "
                            "first answer", split, lost, count["questions"])
    total_steps = total_training_steps(counts["train"]["windows"], config)

    model = build_span_classifier(backbone, dropout=config["dropout"])
    compile_and_fit(model, span_loss(), {"loss_weights": span_loss_weights()}, dataset,
                    fn_args, total_steps)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, WINDOWS_FILE), "w") as f:
        json.dump(counts, f)
    export_question_answering(model, encoder, fn_args.serving_model_dir,
                              n_best=config["n_best"],
                              max_answer_length=config["max_answer_length"],
                              **export_precision(config))
