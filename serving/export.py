"""The export contract: a SavedModel that TF Serving loads as-is, with tokenization inside.

Signatures (every consumer, from TFMA to the REST clients, relies on them exactly):

* ``serving_default``: ``text`` (tf.string, [None]) -> ``probabilities`` (float32,
  [None, num_classes]) and ``label`` (tf.string, [None], the class name).
* ``from_examples``: ``examples`` (serialized tf.Example, [None]) -> the same outputs. The
  text is read from the configured feature (and the second segment's, for pairs).

``classification`` is TF Serving's classify signature (method tensorflow/serving/classify:
``inputs``, serialized tf.Example [None] -> ``classes`` tf.string and ``scores`` float32, both
[None, num_classes]), so `:classify` and the gRPC Classify call work on a real TF Serving.

A fourth signature, ``score_examples`` (``examples`` -> ``probabilities`` and
``predicted_label`` [None, 1]), serves TFX's BulkInferrer: tfx-bsl's predict post-processing
cannot split a rank-1 string output per example.

Only core TensorFlow and tensorflow-text ops end up in the graph (see `graph_op_types`).

Example:

>>> export_saved_model(classifier, BertTextEncoder(vocab, 64), ["negative", "positive"],
...                    "/tmp/model/1")  # doctest: +SKIP
"""

from __future__ import annotations

import os

import tensorflow as tf

from serving.model_call import ModelCall
from serving.text_encoder import BertTextEncoder
from serving.warmup import filler_text, write_shape_warmup

SERVING_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "from_examples"
BULK_INFERENCE_SIGNATURE = "score_examples"
CLASSIFY_SIGNATURE = "classification"
CLASSIFY_METHOD_NAME = "tensorflow/serving/classify"


class BertServingModule(tf.Module):
    """Wraps a Keras 3 classifier (inputs: token_ids/segment_ids/padding_mask -> logits)."""

    def __init__(
        self,
        model,
        encoder: BertTextEncoder,
        class_names: list[str],
        text_feature: str = "text",
        second_text_feature: str | None = None,
        precision: str = "float32",
        jit_compile: bool = False,
    ):
        super().__init__(name="bert_serving")
        self.model = model
        self.call_model = ModelCall(model, precision, jit_compile,
                                    max_seq_length=encoder.max_seq_length)
        # The tf.Variables under Keras 3's variable wrappers, tracked directly: without them
        # a Session-based loader (TF Serving's C++ loader, tfx-bsl's RunInference) restores
        # nothing and fails with "Could not find variable ...".
        self.model_variables = [variable.value for variable in model.variables]
        self.encoder = encoder
        self.class_names = tf.constant(list(class_names), dtype=tf.string)
        self.text_feature = text_feature
        self.second_text_feature = second_text_feature

    def _predict(self, texts: tf.Tensor, second_texts: tf.Tensor | None) -> dict:
        logits = self.call_model(self.encoder(texts, second_texts))
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        label = tf.gather(self.class_names, tf.argmax(probabilities, axis=-1))
        return {"probabilities": probabilities, "label": label}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text: tf.Tensor) -> dict:
        if self.second_text_feature:
            # Sentence pairs over the plain-text signature: "first\tsecond" per row.
            parts = tf.strings.split(text, sep="\t", maxsplit=1).to_tensor(default_value="")
            return self._predict(parts[:, 0], parts[:, 1])
        return self._predict(text, None)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples: tf.Tensor) -> dict:
        return self._predict_examples(examples)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def score_examples(self, examples: tf.Tensor) -> dict:
        outputs = self._predict_examples(examples)
        return {
            "probabilities": outputs["probabilities"],
            "predicted_label": tf.expand_dims(outputs["label"], -1),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify_examples(self, inputs: tf.Tensor) -> dict:
        scores = self._predict_examples(inputs)["probabilities"]
        classes = tf.tile(tf.expand_dims(self.class_names, 0), [tf.shape(scores)[0], 1])
        return {"classes": classes, "scores": scores}

    def _predict_examples(self, examples: tf.Tensor) -> dict:
        spec = {self.text_feature: tf.io.FixedLenFeature([], tf.string, default_value="")}
        if self.second_text_feature:
            spec[self.second_text_feature] = tf.io.FixedLenFeature([], tf.string, default_value="")
        features = tf.io.parse_example(examples, spec)
        second = features[self.second_text_feature] if self.second_text_feature else None
        return self._predict(features[self.text_feature], second)


def export_saved_model(
    model,
    encoder: BertTextEncoder,
    class_names: list[str],
    export_dir: str,
    text_feature: str = "text",
    second_text_feature: str | None = None,
    precision: str = "float32",
    jit_compile: bool = False,
) -> str:
    """Writes the serving SavedModel (the contract above) to `export_dir`; returns it.

    `precision` and `jit_compile` (config `serving.precision`, `serving.jit_compile`): what
    the encoder computes in and whether XLA compiles it (`serving.model_call`); they change
    the graph, never the signatures. The model's layers are left in `precision`.
    """
    if encoder.pad_to_max_length:
        # Requests are padded to their longest text, not to max_seq_length: the same ids and
        # predictions, at a fraction of the compute for short texts.
        encoder = BertTextEncoder(encoder.vocabulary, encoder.max_seq_length,
                                  encoder.lower_case, pad_to_max_length=False)
    module = BertServingModule(model, encoder, class_names, text_feature, second_text_feature,
                               precision, jit_compile)
    signatures = {
        SERVING_SIGNATURE: module.serve_text.get_concrete_function(),
        EXAMPLES_SIGNATURE: module.serve_examples.get_concrete_function(),
        BULK_INFERENCE_SIGNATURE: module.score_examples.get_concrete_function(),
        CLASSIFY_SIGNATURE: module.classify_examples.get_concrete_function(),
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    _set_method_name(export_dir, CLASSIFY_SIGNATURE, CLASSIFY_METHOD_NAME)
    if jit_compile:  # TF Serving compiles every request shape before the version serves
        def texts(length: int) -> dict[str, str]:
            # [CLS] words [SEP], or [CLS] words [SEP] a [SEP] for pairs ("first\tsecond").
            pair = second_text_feature is not None
            return {"text": filler_text(length - 4) + "\ta" if pair else filler_text(length - 2)}

        write_shape_warmup(export_dir, SERVING_SIGNATURE, encoder.max_seq_length, texts)
    return export_dir


def _set_method_name(export_dir: str, signature: str, method_name: str) -> None:
    """tf.saved_model.save marks every signature as predict; TF Serving's Classify API
    accepts only a signature whose method name says classify."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(export_dir, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        meta_graph.signature_def[signature].method_name = method_name
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(saved_model.SerializeToString())


def graph_op_types(export_dir: str) -> set[str]:
    """Every op type in the SavedModel's graph and all its functions."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    ops: set[str] = set()
    for meta_graph in saved_model.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


# The tensorflow-text kernels TF Serving links; any other non-core op would not load there.
SERVING_TEXT_OPS = frozenset({
    "CaseFoldUTF8", "NormalizeUTF8", "RegexSplitWithOffsets",
    "FastWordpieceTokenizeWithOffsets", "WordpieceTokenizeWithOffsets",
})  # fmt: skip

_CLASSIFY_OPS = """
import json, sys
import tensorflow as tf
from tensorflow.python.framework import op_def_registry
ops = set(json.loads(sys.argv[1]))
core = {op for op in ops if op_def_registry.get(op) is not None}
import tensorflow_text
text = {op for op in ops - core if op_def_registry.get(op) is not None}
print(json.dumps({"core": sorted(core), "text": sorted(text),
                  "unknown": sorted(ops - core - text)}))
"""


def op_sources(export_dir: str) -> dict[str, list[str]]:
    """The SavedModel's op types by where they come from: `core` (registered by TensorFlow
    alone), `text` (registered once tensorflow_text is imported) and `unknown` (neither).

    Runs in a fresh Python process, so nothing this process imported registers an op. An
    export TF Serving can load has no `unknown` op, only `SERVING_TEXT_OPS` in `text` and no
    Python op (PyFunc) in `core`.
    """
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", _CLASSIFY_OPS, json.dumps(sorted(graph_op_types(export_dir)))],
        capture_output=True, text=True, timeout=300, cwd="/", check=False)
    if result.returncode != 0:
        raise RuntimeError(f"classifying the ops of {export_dir} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
