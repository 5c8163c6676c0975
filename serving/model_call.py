"""The model call inside an export's signatures, in the configured precision and compilation.

`ModelCall(model, precision, jit_compile)` is what the exports (`serving.export`,
`serving.token_classification_export`, `serving.question_answering_export`) call on the
tokenizer's int32 features:

* `precision` (config `serving.precision`): "float32", or "mixed_bfloat16" for an encoder
  that computes in bfloat16 with its float32 weights cast as it reads them
  (`bert_keras.precision.set_precision`, applied to the model in place). The head, and so
  every output of the signatures, stays float32: the SavedModel's interface is the same.
* `jit_compile` (config `serving.jit_compile`): the model call (and only it: XLA cannot
  compile the tokenizer's string ops) is a `tf.function(jit_compile=True)`. In the SavedModel
  it is a function with the `_XlaMustCompile` attribute, called by a
  `StatefulPartitionedCall`; TensorFlow compiles it at run time for each new input shape
  (batch size x padded length). Stock TF Serving runs it only with
  `--xla_cpu_compilation_enabled=true` (an experimental flag of tensorflow_model_server).

A plain Python object, not a `tf.Module`: the exports track the model's variables
themselves, and the compiled function is saved as part of the signatures that call it.
"""

from __future__ import annotations

import tensorflow as tf

from bert_keras.precision import set_precision


class ModelCall:
    """`call(features)`: the Keras model's outputs for the features (training=False)."""

    def __init__(self, model, precision: str = "float32", jit_compile: bool = False):
        set_precision(model, precision)
        self.model = model
        self.precision = precision
        self.jit_compile = jit_compile
        self._call = tf.function(self._forward, jit_compile=True) if jit_compile else self._forward

    def _forward(self, features: dict[str, tf.Tensor]):
        return self.model(features, training=False)

    def __call__(self, features: dict[str, tf.Tensor]):
        return self._call(features)


def _functions(export_dir: str) -> list:
    import os

    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    return [function for meta_graph in saved_model.meta_graphs
            for function in meta_graph.graph_def.library.function]


def compiled_function_names(export_dir: str) -> list[str]:
    """The names of the SavedModel's functions marked for XLA (`_XlaMustCompile`)."""
    return sorted(function.signature.name for function in _functions(export_dir)
                  if function.attr["_XlaMustCompile"].b)


def matmul_dtypes(export_dir: str) -> set[tf.DType]:
    """The dtypes the SavedModel's matrix products (MatMul, BatchMatMul, Einsum) compute in."""
    ops = {"MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum"}
    return {tf.as_dtype(node.attr["T"].type) for function in _functions(export_dir)
            for node in function.node_def if node.op in ops}
