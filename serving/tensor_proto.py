"""numpy arrays -> TensorProtos as TF Serving writes them in gRPC responses.

TF Serving fills a response's tensors with `Tensor::AsProtoField`: the values go into the
typed repeated fields (`float_val`, `int_val`, `string_val`, ...), not into the packed
`tensor_content` bytes that `tf.make_tensor_proto` writes for most arrays. Clients that
read `outputs["y"].float_val[0]` (TF Serving's own tests do) need the typed fields.

>>> proto = array_to_tensor_proto(np.array([[2.5], [3.0]], dtype=np.float32))
>>> list(proto.float_val), [d.size for d in proto.tensor_shape.dim], proto.tensor_content
([2.5, 3.0], [2, 1], b'')
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

# numpy dtype -> the TensorProto field TensorFlow's AsProtoField writes it to.
_FIELDS = {
    np.dtype(np.float32): "float_val",
    np.dtype(np.float64): "double_val",
    np.dtype(np.int32): "int_val",
    np.dtype(np.int16): "int_val",
    np.dtype(np.int8): "int_val",
    np.dtype(np.uint8): "int_val",
    np.dtype(np.uint16): "int_val",
    np.dtype(np.int64): "int64_val",
    np.dtype(np.uint32): "uint32_val",
    np.dtype(np.uint64): "uint64_val",
    np.dtype(np.bool_): "bool_val",
}


def array_to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A TensorProto of `array` with its values in the typed `*_val` fields."""
    array = np.asarray(array)
    if array.dtype.kind in "OSU":
        return tf.make_tensor_proto(array)  # strings already go to string_val
    dtype = tf.dtypes.as_dtype(array.dtype)
    values = array
    field = _FIELDS.get(array.dtype)
    if array.dtype == np.float16:
        field, values = "half_val", array.view(np.uint16)  # the raw bits, as TensorFlow
    elif array.dtype.kind == "c":
        field = "scomplex_val" if array.dtype == np.complex64 else "dcomplex_val"
        values = np.stack([array.real, array.imag], axis=-1)  # (real, imaginary) pairs
    if field is None:  # bfloat16 and the rest: TensorFlow's own encoding
        return tf.make_tensor_proto(array)
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum)
    for size in array.shape:
        proto.tensor_shape.dim.add().size = int(size)
    getattr(proto, field).extend(values.ravel().tolist())
    return proto
