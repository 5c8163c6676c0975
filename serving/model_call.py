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

With `jit_compile`, every call is padded to one of a few shapes before it reaches XLA, so
that a server compiles a bounded number of programs instead of one per request shape (each
compilation of a 6-layer encoder takes seconds): the padded length goes up to the next of
`LENGTH_BUCKETS` (at most the backbone's `max_sequence_length`), the batch up to the next
power of two up to `CHUNK_ROWS`. A larger batch is sorted by length and runs as a loop of
`CHUNK_ROWS`-row chunks, each padded only to its own longest row's bucket: short rows no
longer pay for the batch's longest (about a fifth less compute on SST-2's sentences in
requests of 32, `bench/encoder_forward.py`). Padded positions and rows are masked out,
sliced off and the rows put back in request order, so the outputs are those of the unpadded
call. `warmup_shapes(max_seq_length)` lists the shapes a server compiles, for the export's
warm-up requests (`serving.warmup`).

A plain Python object, not a `tf.Module`: the exports track the model's variables
themselves, and the compiled function is saved as part of the signatures that call it.
"""

from __future__ import annotations

import tensorflow as tf

from bert_keras.precision import encoder_of, set_precision

# Sequence lengths XLA is compiled for (a padded length is already a multiple of 8:
# serving.text_encoder.batch_length). Steps of at most 1.5x bound the padding's waste.
LENGTH_BUCKETS = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)
# Batches are padded to a power of two up to CHUNK_ROWS rows; larger ones run in chunks of
# rows of similar length. 16 rows of 32 tokens keep the matrix products near full speed.
CHUNK_ROWS = 16


def length_buckets(max_length: int) -> list[int]:
    """The padded lengths of a model call on requests of at most `max_length` tokens:
    `LENGTH_BUCKETS` under it, and `max_length` itself."""
    return [*(size for size in LENGTH_BUCKETS if size < max_length), max_length]


def batch_buckets() -> list[int]:
    return [2**i for i in range(CHUNK_ROWS.bit_length()) if 2**i <= CHUNK_ROWS]


def warmup_shapes(max_seq_length: int) -> list[tuple[int, int]]:
    """(batch, length) of every program a `jit_compile` export compiles for requests of at
    most `max_seq_length` tokens (larger batches reuse the `CHUNK_ROWS` ones)."""
    return [(batch, length) for batch in batch_buckets()
            for length in length_buckets(max_seq_length)]


def _round_up(value: tf.Tensor, sizes: list[int]) -> tf.Tensor:
    """The smallest of `sizes` (ascending) that is >= value; the largest if none is."""
    sizes = tf.constant(sizes, tf.int32)
    index = tf.minimum(tf.reduce_sum(tf.cast(sizes < value, tf.int32)), tf.size(sizes) - 1)
    return tf.maximum(sizes[index], value)


def _position_limit(model) -> int | None:
    """The backbone's position-embedding limit (no padded length may pass it), if it has one."""
    try:
        return int(encoder_of(model).max_sequence_length)
    except (ValueError, AttributeError, TypeError):
        return None


class ModelCall:
    """`call(features)`: the Keras model's outputs for the features (training=False).

    `token_outputs`: the model's outputs are per token ([batch, length, ...]: token
    classification, spans); otherwise per row ([batch, ...]). With `jit_compile` it says
    which dimensions the padding is sliced off. `max_seq_length`: the encoder's, the
    longest request a call gets (its lengths are `length_buckets(max_seq_length)`, what
    `warmup_shapes` lists); by default the backbone's position-embedding limit.
    """

    def __init__(self, model, precision: str = "float32", jit_compile: bool = False,
                 token_outputs: bool = False, max_seq_length: int | None = None):
        set_precision(model, precision)
        self.model = model
        self.precision = precision
        self.jit_compile = jit_compile
        self.token_outputs = token_outputs
        limit = max_seq_length or _position_limit(model)
        self.lengths = length_buckets(limit) if limit else list(LENGTH_BUCKETS)
        self._call = tf.function(self._forward, jit_compile=True) if jit_compile else self._forward

    def _forward(self, features: dict[str, tf.Tensor]):
        return self.model(features, training=False)

    def __call__(self, features: dict[str, tf.Tensor]):
        if not self.jit_compile:
            return self._call(features)
        return self._bucketed(features)

    def _bucketed(self, features: dict[str, tf.Tensor]):
        shape = tf.shape(features["token_ids"])
        batch, length = shape[0], shape[1]
        padded_length = _round_up(length, self.lengths)
        # Padding is 0 in every input: token id 0 is masked out by padding_mask 0.
        features = {name: tf.pad(value, [[0, 0], [0, padded_length - length]])
                    for name, value in features.items()}

        static_shapes = []

        def small_batch():
            rows = _round_up(tf.maximum(batch, 1), batch_buckets())
            outputs = self._call({name: tf.pad(value, [[0, rows - batch], [0, 0]])
                                  for name, value in features.items()})
            static_shapes.extend(output.shape for output in tf.nest.flatten(outputs))
            return outputs

        outputs = tf.cond(batch > CHUNK_ROWS,
                          lambda: self._sorted_chunks(features, batch), small_batch)
        if not tf.executing_eagerly():
            # The chunk loop's joined outputs have no static shape: give back the model's
            # (e.g. [None, num_classes]), which the signatures declare.
            variable = 2 if self.token_outputs else 1
            for output, shape in zip(tf.nest.flatten(outputs), static_shapes, strict=True):
                output.set_shape([None] * variable + shape[variable:].as_list())

        def unpad(output: tf.Tensor) -> tf.Tensor:
            return output[:batch, :length] if self.token_outputs else output[:batch]

        return tf.nest.map_structure(unpad, outputs)

    def _sorted_chunks(self, features: dict[str, tf.Tensor], batch: tf.Tensor):
        """The model over the rows sorted by length in chunks of CHUNK_ROWS, each chunk cut
        to its own length bucket; the outputs in the rows' original order."""
        real_lengths = tf.reduce_sum(tf.cast(features["padding_mask"] != 0, tf.int32), axis=1)
        order = tf.argsort(real_lengths, stable=True)
        rows = (batch + CHUNK_ROWS - 1) // CHUNK_ROWS * CHUNK_ROWS
        padded_length = tf.shape(features["token_ids"])[1]
        ordered = {name: tf.pad(tf.gather(value, order), [[0, rows - batch], [0, 0]])
                   for name, value in features.items()}
        ordered_lengths = tf.pad(tf.gather(real_lengths, order), [[0, rows - batch]])

        def chunk(index):
            start = index * CHUNK_ROWS
            longest = tf.reduce_max(ordered_lengths[start:start + CHUNK_ROWS])
            chunk_length = tf.minimum(_round_up(tf.maximum(longest, 1), self.lengths), padded_length)
            outputs = self._call({name: value[start:start + CHUNK_ROWS, :chunk_length]
                                  for name, value in ordered.items()})
            if not self.token_outputs:
                return outputs
            return tf.nest.map_structure(  # back to the batch's length, to be joined
                lambda output: tf.pad(output, [[0, 0], [0, padded_length - chunk_length]]
                                      + [[0, 0]] * (len(output.shape) - 2)), outputs)

        first = chunk(0)
        arrays = [tf.TensorArray(output.dtype, size=rows // CHUNK_ROWS, infer_shape=False)
                  .write(0, output) for output in tf.nest.flatten(first)]

        def body(index, *arrays):
            outputs = tf.nest.flatten(chunk(index))
            return (index + 1, *[array.write(index, output)
                                 for array, output in zip(arrays, outputs, strict=True)])

        _, *arrays = tf.while_loop(lambda index, *_: index < rows // CHUNK_ROWS, body,
                                   (1, *arrays))
        restore = tf.math.invert_permutation(order)  # sorted position of each original row
        return tf.nest.pack_sequence_as(
            first, [tf.gather(array.concat(), restore) for array in arrays])


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
