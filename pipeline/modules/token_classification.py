"""Transform and Trainer functions of the token-classification (NER) pipeline.

Referenced by dotted path (`pipeline.modules.token_classification.preprocessing_fn` and
`.run_fn`), like `pipeline.modules.text_classification`. One tf.Example per sentence: the
words in `tokens_feature` and their IOB2 tags in `tags_feature` (both VarLen bytes). A word is
tagged on its first WordPiece; its other pieces, [CLS], [SEP] and padding weigh 0 in the loss.

`custom_config` keys: checkpoint_dir, lower_case, max_seq_length, dropout, batch_size, epochs,
max_steps (None, or a step count; 0 exports the warm-started model untrained), learning_rate,
warmup_fraction, weight_decay, eval_batch_size, seed, length_buckets, code_fingerprint
(ignored here; it invalidates the cache), tokens_feature ("tokens"), tags_feature ("tags")
and tags (the tag list, `pipeline.tasks.iob.tag_names` order: the model's output order).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import tensorflow as tf

from pipeline.modules.common import (
    batch_by_length,
    checkpoint_backbone,
    checkpoint_vocabulary,
    compile_and_fit,
    export_precision,
    gzip_records,
    total_training_steps,
)
from serving.word_encoder import BertWordEncoder

TOKEN_FEATURES = ("token_ids", "segment_ids", "padding_mask")
LABEL_IDS = "label_ids"
LABEL_WEIGHTS = "label_weights"
TRUNCATED_WORDS = "truncated_words"
TRUNCATION_FILE = "truncation.json"


def _encoder(custom_config: dict[str, Any]) -> BertWordEncoder:
    vocabulary = checkpoint_vocabulary(custom_config)
    return BertWordEncoder(
        vocabulary, custom_config["max_seq_length"], lower_case=custom_config["lower_case"]
    )


def _ragged(values: tf.Tensor | tf.SparseTensor | tf.RaggedTensor) -> tf.RaggedTensor:
    """[batch, (n)] per-sentence lists, whichever form Transform hands them over in."""
    if isinstance(values, tf.RaggedTensor):
        return values
    if isinstance(values, tf.SparseTensor):
        return tf.RaggedTensor.from_sparse(values)
    return tf.RaggedTensor.from_tensor(values)


def tag_lookup(tags: list[str]) -> tf.lookup.StaticHashTable:
    """Tag name -> its index in `tags`; -1 for a name not in it."""
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(tags), tf.string), tf.range(len(tags), dtype=tf.int64)
        ),
        default_value=-1,
    )


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any]) -> dict:
    """Words + IOB2 tags -> fixed-length ids and per-piece labels (int64).

    Outputs [batch, max_seq_length]: `token_ids`, `segment_ids`, `padding_mask`,
    `label_ids` (the word's tag index on its first piece, 0 elsewhere) and `label_weights`
    (1 on the first piece of every word that fits, 0 elsewhere); and `truncated_words`
    [batch]: the words cut by max_seq_length, which get no label at all.
    """
    encoder = _encoder(custom_config)
    words = _ragged(inputs[custom_config.get("tokens_feature") or "tokens"])
    tags = _ragged(inputs[custom_config.get("tags_feature") or "tags"])
    tag_ids = tags.with_flat_values(tag_lookup(custom_config["tags"]).lookup(tags.flat_values))
    # Bad data must stop the Transform run, not train on shifted or invalid labels (the
    # validator checks the schema, not that the two lists match).
    checks = [
        tf.debugging.assert_equal(
            words.row_lengths(), tags.row_lengths(),
            message="a sentence has not as many tags as words"),
        tf.debugging.assert_non_negative(
            tag_ids.flat_values,
            message=f"a tag is not one of {list(custom_config['tags'])}"),
    ]
    with tf.control_dependencies(checks):
        encoded = encoder.encode_words(words)

    first = tf.equal(encoded["first_piece"], 1)
    # Each first piece's word, as an index into all the batch's tags; the others point at
    # an extra 0 appended after them (a batch may have no words at all).
    word_ids = tf.cast(encoded["word_ids"], tf.int64)
    flat_index = tf.expand_dims(tag_ids.row_starts(), 1) + word_ids
    no_word = tf.size(tag_ids.flat_values, out_type=tf.int64)
    index = tf.where(first, flat_index, no_word)
    label_ids = tf.gather(tf.concat([tag_ids.flat_values, [0]], axis=0), index)

    outputs = {name: tf.cast(encoded[name], tf.int64) for name in TOKEN_FEATURES}
    outputs[LABEL_IDS] = label_ids
    outputs[LABEL_WEIGHTS] = tf.cast(first, tf.int64)
    outputs[TRUNCATED_WORDS] = words.row_lengths() - tf.cast(encoded["num_words_kept"], tf.int64)
    return outputs


def make_dataset(
    files: list[str],
    feature_spec: dict,
    batch_size: int,
    max_seq_length: int,
    buckets: list[int],
    shuffle: bool,
    seed: int,
) -> tf.data.Dataset:
    """Transformed tf.Examples -> (model inputs int32, label_ids int32, label_weights float32).

    Rows are grouped by length (`batch_by_length`), labels and weights cut with them.
    """
    dataset = gzip_records(files, "transformed examples")
    if shuffle:
        dataset = dataset.shuffle(20_000, seed=seed, reshuffle_each_iteration=True)

    def parse(record):
        parsed = tf.io.parse_single_example(record, feature_spec)
        features = {name: tf.cast(parsed[name], tf.int32) for name in TOKEN_FEATURES}
        return (features, tf.cast(parsed[LABEL_IDS], tf.int32),
                tf.cast(parsed[LABEL_WEIGHTS], tf.float32))

    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = batch_by_length(dataset, batch_size, max_seq_length, buckets,
                              per_token_targets=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def count_rows(files: list[str], feature_spec: dict) -> dict[str, int]:
    """Sentences, sentences that lost words to max_seq_length, and the words lost."""
    spec = {TRUNCATED_WORDS: feature_spec[TRUNCATED_WORDS]}
    dataset = gzip_records(files, "transformed examples").map(
        lambda record: tf.reshape(tf.io.parse_single_example(record, spec)[TRUNCATED_WORDS], [])
    )
    zero = tf.constant(0, tf.int64)
    rows, cut_rows, cut_words = dataset.reduce(
        (zero, zero, zero),
        lambda totals, cut: (totals[0] + 1, totals[1] + tf.cast(cut > 0, tf.int64),
                             totals[2] + cut),
    )
    return {"sentences": int(rows), "truncated_sentences": int(cut_rows),
            "truncated_words": int(cut_words)}


def run_fn(fn_args: Any) -> None:
    """TFX Trainer entry point: warm-start, fine-tune, export the NER serving SavedModel."""
    import keras
    import tensorflow_transform as tft

    from bert_keras.token_classifier import build_token_classifier, token_classification_loss
    from serving.token_classification_export import export_token_classifier

    config = fn_args.custom_config
    keras.utils.set_random_seed(config["seed"])
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    feature_spec = tft_output.transformed_feature_spec()
    max_len = config["max_seq_length"]

    def dataset(files, batch_size, shuffle):
        return make_dataset(files, feature_spec, batch_size, max_len, config["length_buckets"],
                            shuffle, config["seed"])

    counts = {split: count_rows(files, feature_spec)
              for split, files in (("train", fn_args.train_files), ("eval", fn_args.eval_files))}
    for split, count in counts.items():
        if count["truncated_words"]:
            # Not silent: these words are never trained on (train) or scored (eval).
            logging.warning(
                "%s: %d of %d sentences are longer than max_seq_length=%d allows; %d words "
                "lost", split, count["truncated_sentences"], count["sentences"], max_len,
                count["truncated_words"])
    total_steps = total_training_steps(counts["train"]["sentences"], config)

    tags = list(config["tags"])
    backbone, vocabulary, _ = checkpoint_backbone(config)
    model = build_token_classifier(backbone, num_labels=len(tags), dropout=config["dropout"])
    compile_and_fit(
        model,
        token_classification_loss(),
        # Weighted: the accuracy of the word tags (first pieces), not of every position.
        {"weighted_metrics": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]},
        dataset, fn_args, total_steps,
    )
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, TRUNCATION_FILE), "w") as f:
        json.dump(counts, f)

    encoder = BertWordEncoder(vocabulary, max_len, lower_case=config["lower_case"])
    export_token_classifier(model, encoder, tags, fn_args.serving_model_dir,
                            tokens_feature=config.get("tokens_feature") or "tokens",
                            **export_precision(config))
