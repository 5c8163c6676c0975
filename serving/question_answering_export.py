"""The extractive question-answering export contract: a SavedModel TF Serving loads as-is.

Signatures:

* ``serving_default``: ``question``, ``context`` (tf.string [None]) -> ``answer_text``
  (tf.string [None]), ``answer_start``, ``answer_end`` (int32 [None]: offsets into
  ``context`` in Unicode code points, end exclusive, so `context[start:end]` in Python is the
  answer) and ``score`` (float32 [None]: the answer's start + end logit).
* ``from_examples``: ``examples`` (serialized tf.Example [None] with bytes features
  ``question`` and ``context``, `serving.question_answering_features`) -> the same.

Everything runs in the graph with `serving.question_answering_encoder` (the windows the
Trainer used, the model on all windows of the batch at once, BERT's n-best span search over
each question's windows). A question with an empty context gets "", -1, -1 and the lowest
float32 score. Only core TensorFlow and the tensorflow-text kernels TF Serving links end up in
the graph (`serving.export.graph_op_types`).

Example:

>>> export_question_answering(model, QuestionAnsweringEncoder(vocab), "/tmp/squad/1")
... # doctest: +SKIP
"""

from __future__ import annotations

import tensorflow as tf

from serving.model_call import ModelCall
from serving.question_answering_encoder import QuestionAnsweringEncoder
from serving.question_answering_features import CONTEXT, QUESTION
from serving.warmup import filler_text, write_shape_warmup

SERVING_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "from_examples"
MODEL_INPUTS = ("token_ids", "segment_ids", "padding_mask")


class QuestionAnsweringServingModule(tf.Module):
    """Wraps a Keras 3 span classifier (model inputs -> start_logits, end_logits)."""

    def __init__(self, model, encoder: QuestionAnsweringEncoder, n_best: int = 20,
                 max_answer_length: int = 30, precision: str = "float32",
                 jit_compile: bool = False):
        super().__init__(name="bert_question_answering_serving")
        self.model = model
        self.call_model = ModelCall(model, precision, jit_compile, token_outputs=True,
                                    max_seq_length=encoder.max_seq_length)
        # The tf.Variables under Keras 3's variable wrappers, tracked directly: without them
        # a Session-based loader (TF Serving's C++ loader) restores nothing (serving.export).
        self.model_variables = [variable.value for variable in model.variables]
        self.encoder = encoder
        self.n_best = int(n_best)
        self.max_answer_length = int(max_answer_length)

    def answer(self, question: tf.Tensor, context: tf.Tensor) -> dict:
        windows = self.encoder.windows(question, context)
        logits = self.call_model({name: windows[name] for name in MODEL_INPUTS})
        return self.encoder.decode(windows, logits["start_logits"], logits["end_logits"],
                                   context, self.n_best, self.max_answer_length)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=QUESTION),
                                  tf.TensorSpec([None], tf.string, name=CONTEXT)])
    def serve_text(self, question: tf.Tensor, context: tf.Tensor) -> dict:
        return self.answer(question, context)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples: tf.Tensor) -> dict:
        spec = {name: tf.io.FixedLenFeature([], tf.string) for name in (QUESTION, CONTEXT)}
        parsed = tf.io.parse_example(examples, spec)
        return self.answer(parsed[QUESTION], parsed[CONTEXT])


def export_question_answering(
    model,
    encoder: QuestionAnsweringEncoder,
    export_dir: str,
    n_best: int = 20,
    max_answer_length: int = 30,
    precision: str = "float32",
    jit_compile: bool = False,
) -> str:
    """Writes the question-answering SavedModel (the contract above); returns `export_dir`.

    Args:
        model: a Keras 3 model from `{token_ids, segment_ids, padding_mask}` to
            `{start_logits, end_logits}`, e.g. `bert_keras.span_classifier`.
        encoder: the encoder the model was trained with (vocabulary, casing, window sizes);
            requests are padded per batch whatever its padding setting.
        export_dir: where to write the SavedModel.
        n_best: start and end candidates per window.
        max_answer_length: the longest answer, in WordPieces.
        precision, jit_compile: config `serving.precision` and `serving.jit_compile`
            (`serving.model_call`); the model's layers are left in `precision`.
    """
    if encoder.pad_to_max_length:
        # Short contexts are padded to their longest window, not to max_seq_length.
        encoder = QuestionAnsweringEncoder(
            encoder.vocabulary, encoder.max_seq_length, encoder.max_query_length,
            encoder.doc_stride, encoder.lower_case, pad_to_max_length=False)
    module = QuestionAnsweringServingModule(model, encoder, n_best, max_answer_length,
                                            precision, jit_compile)
    signatures = {
        SERVING_SIGNATURE: module.serve_text.get_concrete_function(),
        EXAMPLES_SIGNATURE: module.serve_examples.get_concrete_function(),
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    if jit_compile:  # TF Serving compiles every request shape before the version serves
        # One window per row: [CLS] a [SEP] context [SEP].
        write_shape_warmup(export_dir, SERVING_SIGNATURE, encoder.max_seq_length,
                           lambda length: {QUESTION: "a", CONTEXT: filler_text(length - 4)})
    return export_dir
