"""TF Serving's REST JSON encoding of tensors and tf.Examples, in Python.

A faithful port of `tensorflow_serving/util/json_tensor.cc` (request parsing, response
writing and the error messages clients see), working on numpy arrays so that it is usable
without TensorFlow. Summary of the format (see TF Serving's `api_rest.md`):

* Predict requests carry either `"instances"` (row format: a list with one item per batch
  row; items are objects `{input_name: value}` when the signature has several inputs) or
  `"inputs"` (columnar format: one value, or an object of input name -> batched value), and
  an optional `"signature_name"`. Binary strings are `{"b64": "..."}`.
* Responses are `{"predictions": [...]}` for row requests (a list of objects when there are
  several outputs) and `{"outputs": ...}` for columnar ones. Floats are written with the
  shortest decimal that round-trips at the tensor's precision; outputs whose name ends in
  `_bytes` are written as `{"b64": ...}`.
* Classify/regress requests carry `"examples"` (a list of objects, feature name -> value or
  list) and an optional `"context"` example merged into each.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from serving.errors import invalid_argument

ROW_FORMAT = "row"
COLUMNAR_FORMAT = "columnar"

# tensorflow.DataType enum values (types.proto) used on the REST path.
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 1, 2, 3, 4, 5, 6, 7
DT_INT64, DT_BOOL, DT_UINT32, DT_UINT64 = 9, 10, 22, 23

_DTYPE_NAMES = {
    DT_FLOAT: "float",
    DT_DOUBLE: "double",
    DT_INT32: "int32",
    DT_UINT8: "uint8",
    DT_INT16: "int16",
    DT_INT8: "int8",
    DT_STRING: "string",
    DT_INT64: "int64",
    DT_BOOL: "bool",
    DT_UINT32: "uint32",
    DT_UINT64: "uint64",
}
_NUMPY_DTYPES = {
    DT_FLOAT: np.float32,
    DT_DOUBLE: np.float64,
    DT_INT32: np.int32,
    DT_UINT8: np.uint8,
    DT_INT16: np.int16,
    DT_INT8: np.int8,
    DT_STRING: object,
    DT_INT64: np.int64,
    DT_BOOL: np.bool_,
    DT_UINT32: np.uint32,
    DT_UINT64: np.uint64,
}
_INT_RANGES = {
    DT_INT32: (-(2**31), 2**31 - 1),
    DT_INT16: (-(2**15), 2**15 - 1),
    DT_INT8: (-(2**7), 2**7 - 1),
    DT_UINT8: (0, 2**8 - 1),
    DT_INT64: (-(2**63), 2**63 - 1),
    DT_UINT32: (0, 2**32 - 1),
    DT_UINT64: (0, 2**64 - 1),
}
_MAX_EXACT_INT = {DT_FLOAT: 2**24 - 1, DT_DOUBLE: 2**53 - 1}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def dtype_name(dtype: int) -> str:
    """TF's DataTypeString(), e.g. 7 -> "string"."""
    return _DTYPE_NAMES.get(dtype, f"type_enum_{dtype}")


def numpy_dtype(dtype: int):
    if dtype not in _NUMPY_DTYPES:
        raise invalid_argument(
            f"Conversion of JSON values to type: {dtype_name(dtype)} is not supported"
        )
    return _NUMPY_DTYPES[dtype]


# ---------------------------------------------------------------------------------------
# Parsing


def _json_value_to_string(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _json_type_string(value: Any) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _format_error(value: Any, *parts: str):
    return invalid_argument("JSON Value: " + _json_value_to_string(value) + " " + "".join(parts))


def parse_json_object(body: bytes) -> dict:
    """Parses a request body; TF Serving's errors for empty, malformed or non-object JSON."""
    if not body or not body.strip():
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise invalid_argument(
            f"JSON Parse error: Invalid encoding in string. at offset: {e.start}"
        ) from None
    try:
        document = json.loads(text)  # accepts NaN/Infinity like rapidjson's kParseNanAndInfFlag
    except json.JSONDecodeError as e:
        raise invalid_argument(f"JSON Parse error: {e.msg} at offset: {e.pos}") from None
    if not isinstance(document, dict):
        raise _format_error(document, "Is not object")
    return document


def signature_name_of(document: Mapping) -> str:
    """The optional "signature_name" ("" when absent, meaning the default signature)."""
    if "signature_name" not in document:
        return ""
    name = document["signature_name"]
    if not isinstance(name, str):
        raise _format_error(
            document, "not formatted correctly. 'signature_name' key must be a string value."
        )
    return name


def _is_base64_object(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _decode_base64_object(value: Any) -> bytes:
    if not _is_base64_object(value):
        raise _format_error(value, "not formatted correctly for base64 data")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("Unable to base64 decode") from None


def _type_error(value: Any, dtype: int):
    return invalid_argument(
        f"JSON Value: {_json_value_to_string(value)} Type: {_json_type_string(value)} "
        f"is not of expected type: {dtype_name(dtype)}"
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _convert_scalar(value: Any, dtype: int) -> Any:
    """One JSON leaf -> a Python value for a tensor of `dtype` (AddValueToTensor)."""
    if dtype in (DT_FLOAT, DT_DOUBLE):
        if not _is_number(value):
            raise _type_error(value, dtype)
        lossless = (
            abs(value) <= _MAX_EXACT_INT[dtype]
            if isinstance(value, int)
            else (not math.isfinite(value) or dtype == DT_DOUBLE or abs(value) <= _FLOAT32_MAX)
        )
        if not lossless:
            raise invalid_argument(
                f"Cannot convert JSON value: {_json_value_to_string(value)} to "
                f"{dtype_name(dtype)} without loss of precision."
            )
        return float(value)
    if dtype == DT_STRING:
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8")
    if dtype == DT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise _type_error(value, dtype)
        return value
    raise invalid_argument(
        f"Conversion of JSON Value: {_json_value_to_string(value)} to type: {dtype_name(dtype)}"
    )


def _dense_shape(value: Any) -> list[int]:
    """Shape implied by nested lists, following the first element (GetDenseTensorShape)."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill_values(value: Any, level: int, shape: list[int], dtype: int, out: list) -> None:
    """Flattens `value` into `out`, checking it is a dense tensor of `shape` (FillTensorProto)."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid_argument(
                f"JSON Value: {_json_value_to_string(value)} found at incorrect level: "
                f"{level + 1} in the JSON DOM. Expected at level: {rank}"
            )
        if isinstance(value, dict):
            if dtype != DT_STRING:
                raise _type_error(value, dtype)
            out.append(_decode_base64_object(value))
        else:
            out.append(_convert_scalar(value, dtype))
        return
    if level >= rank:
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}"
        )
    for item in value:
        _fill_values(item, level + 1, shape, dtype, out)


def json_to_array(value: Any, dtype: int) -> np.ndarray:
    """A JSON (nested list) value -> a numpy array for a tensor of TF dtype `dtype`."""
    shape = _dense_shape(value)
    flat: list = []
    _fill_values(value, 0, shape, dtype, flat)
    np_dtype = numpy_dtype(dtype)
    if np_dtype is object:
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    return np.asarray(flat, dtype=np_dtype).reshape(shape)


def _is_element_object(value: Any) -> bool:
    return isinstance(value, dict) and not _is_base64_object(value)


def _instances_to_arrays(instances: list, input_dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Row format -> one batched array per input (FillTensorMapFromInstancesList)."""
    if not isinstance(instances[0], dict) and len(input_dtypes) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input "
            "tensors required as per tensorinfo_map"
        )
    elements_are_objects = _is_element_object(instances[0])
    input_names = set(input_dtypes)
    rows: dict[str, list[np.ndarray]] = {}
    shapes: dict[str, tuple[int, ...]] = {}

    def add_item(item: Any, name: str) -> None:
        if name not in input_dtypes:
            raise invalid_argument(f"JSON object: does not have named input: {name}")
        array = json_to_array(item, input_dtypes[name])
        if name in shapes and shapes[name] != array.shape:
            if int(np.prod(shapes[name])) != array.size:
                raise invalid_argument(
                    f"Expecting tensor size: {int(np.prod(shapes[name]))} but got: {array.size}"
                )
            raise invalid_argument(
                f"Expecting shape [{','.join(map(str, shapes[name]))}] but got: "
                f"[{','.join(map(str, array.shape))}]"
            )
        shapes.setdefault(name, array.shape)
        rows.setdefault(name, []).append(array)

    for index, element in enumerate(instances):
        if elements_are_objects:
            if not _is_element_object(element):
                raise invalid_argument(
                    f"Expecting object but got list at item {index} of input list"
                )
            for name, item in element.items():
                try:
                    add_item(item, name)
                except Exception as e:
                    raise invalid_argument(
                        f"Failed to process element: {index} key: {name} of 'instances' list. "
                        f"Error: INVALID_ARGUMENT: {e}"
                    ) from None
            if set(element) != input_names:
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{_json_value_to_string(element)} must only have keys: "
                    f"{','.join(sorted(input_names))}"
                )
        else:
            if _is_element_object(element):
                raise invalid_argument(
                    f"Expecting value/list but got object at item {index} of input list"
                )
            name = next(iter(input_dtypes))
            try:
                add_item(element, name)
            except Exception as e:
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. "
                    f"Error: INVALID_ARGUMENT: {e}"
                ) from None
    return {name: np.stack(arrays) for name, arrays in rows.items()}


def _inputs_to_arrays(inputs: Any, input_dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Columnar format -> arrays (FillTensorMapFromInputsMap)."""
    if not isinstance(inputs, dict) or _is_base64_object(inputs):
        if len(input_dtypes) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map"
            )
        name, dtype = next(iter(input_dtypes.items()))
        return {name: json_to_array(inputs, dtype)}
    arrays = {}
    for name, dtype in input_dtypes.items():
        if name not in inputs:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = json_to_array(inputs[name], dtype)
    return arrays


def predict_request_to_arrays(
    document: Mapping, input_dtypes: Mapping[str, int]
) -> tuple[dict[str, np.ndarray], str]:
    """A parsed predict request -> ({input name: array}, ROW_FORMAT | COLUMNAR_FORMAT).

    `input_dtypes` maps the signature's input names to TF dtype enums (their order matters
    only for single-input signatures).
    """
    if not input_dtypes:
        raise invalid_argument("Failed to get input map for signature")
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise _format_error(
            document,
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ",
        )
    if has_instances:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise _format_error(document, "Excepting 'instances' to be an list/array")
        if not instances:
            raise _format_error(document, "No values in 'instances' array")
        return _instances_to_arrays(instances, input_dtypes), ROW_FORMAT
    if has_inputs:
        return _inputs_to_arrays(document["inputs"], input_dtypes), COLUMNAR_FORMAT
    raise invalid_argument("Missing 'inputs' or 'instances' key")


# ---------------------------------------------------------------------------------------
# tf.Example JSON (classify / regress)


def _add_value_to_feature(value: Any, name: str, feature, kinds: dict) -> None:
    def require(kind: str) -> None:
        current = kinds.setdefault(name, kind)
        if current != kind:
            raise invalid_argument(
                f"Unexpected element type in feature: {name} expecting type: {current}"
            )

    if value is None or isinstance(value, list):
        raise invalid_argument(
            f"Feature: {name} has element with unexpected JSON type: {_json_type_string(value)}"
        )
    if isinstance(value, bool):
        require("int64")
        feature.int64_list.value.append(int(value))
    elif isinstance(value, dict):
        if not _is_base64_object(value):
            raise invalid_argument(
                f"Feature: {name} has element with unexpected JSON type: {_json_type_string(value)}"
            )
        require("bytes")
        feature.bytes_list.value.append(_decode_base64_object(value))
    elif isinstance(value, str):
        require("bytes")
        feature.bytes_list.value.append(value.encode("utf-8"))
    elif isinstance(value, float):
        require("float")
        if math.isfinite(value) and abs(value) > _FLOAT32_MAX:
            raise invalid_argument(
                f"Cannot convert JSON value: {_json_value_to_string(value)} to float without "
                "loss of precision."
            )
        feature.float_list.value.append(value)
    else:
        require("int64")
        if value > 2**63 - 1:
            raise invalid_argument(f"Feature: {name} has uint64 element. Only int64 is supported.")
        feature.int64_list.value.append(value)


def example_from_json(value: Any, example_pb2) -> Any:
    """A JSON object (feature name -> value or list of values) -> a tf.train.Example."""
    if not isinstance(value, dict):
        raise invalid_argument(
            f"Example must be JSON object but got JSON {_json_type_string(value)}"
        )
    example = example_pb2.Example()
    kinds: dict[str, str] = {}
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            _add_value_to_feature(item, name, feature, kinds)
    return example


def examples_request_to_serialized(document: Mapping, example_pb2, method: str) -> list[bytes]:
    """A classify/regress request -> serialized tf.Examples (context merged into each)."""
    context = None
    if "context" in document:
        context = example_from_json(document["context"], example_pb2)
    if "examples" not in document:
        raise _format_error(
            document, f"When method is {method}, key 'examples' is expected and was not found"
        )
    examples = document["examples"]
    if not isinstance(examples, list):
        raise _format_error(document, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(document, "'examples' value is an empty array")
    prefix = context.SerializeToString() if context is not None else b""
    # Concatenated serialized protos parse as their merge: the context's features are
    # added to every example, which is how TF Serving feeds ExampleListWithContext.
    return [prefix + example_from_json(item, example_pb2).SerializeToString() for item in examples]


# ---------------------------------------------------------------------------------------
# Writing


def json_float(value: float, double: bool = False) -> float:
    """The float that prints as TF Serving's WriteDecimal output (shortest round-trip)."""
    value = float(value)
    if not math.isfinite(value):
        return value  # json.dumps writes NaN / Infinity / -Infinity, as TF Serving does.
    text = f"{value:g}"
    parsed = float(text)
    if (parsed != value) if double else (np.float32(parsed) != np.float32(value)):
        text = f"{value:.17g}" if double else f"{value:.9g}"
    return float(text)


def _leaf_to_json(value: Any, as_bytes: bool, kind: str) -> Any:
    if kind == "S" or kind == "O":
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
        if as_bytes:
            return {"b64": base64.b64encode(raw).decode("ascii")}
        return raw.decode("utf-8", errors="replace")
    if kind == "f":
        return json_float(value, double=(np.asarray(value).dtype == np.float64))
    if kind == "b":
        return bool(value)
    return int(value)


def array_to_json(array: np.ndarray, as_bytes: bool = False) -> Any:
    """A numpy array -> nested JSON lists (scalars stay scalars)."""
    array = np.asarray(array)
    kind = array.dtype.kind
    if array.ndim == 0:
        return _leaf_to_json(array[()], as_bytes, kind)
    if kind == "f":
        double = array.dtype == np.float64
        flat = [json_float(v, double) for v in array.ravel().tolist()]
    else:
        flat = [_leaf_to_json(v, as_bytes, kind) for v in array.ravel().tolist()]
    return _nest(flat, array.shape)


def _nest(flat: list, shape: tuple[int, ...]) -> Any:
    if len(shape) == 1:
        return flat
    step = int(np.prod(shape[1:])) if shape[1:] else 1
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _is_bytes_output(name: str, array: np.ndarray) -> bool:
    return name.endswith("_bytes") and np.asarray(array).dtype.kind in "SO"


def predict_response_json(outputs: Mapping[str, np.ndarray], request_format: str) -> dict:
    """Output arrays -> {"predictions": ...} (row) or {"outputs": ...} (columnar)."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    if request_format == COLUMNAR_FORMAT:
        converted = {
            name: array_to_json(array, _is_bytes_output(name, array))
            for name, array in outputs.items()
        }
        return {"outputs": converted if len(converted) > 1 else next(iter(converted.values()))}
    batch_size = 0
    for name, array in outputs.items():
        array = np.asarray(array)
        if array.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if array.shape[0] < 1:
            raise invalid_argument(f"Tensor name: {name} has invalid batch size: {array.shape[0]}")
        if batch_size and batch_size != array.shape[0]:
            raise invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} "
                f"expecting: {batch_size}"
            )
        batch_size = array.shape[0]
    per_output = {
        name: array_to_json(array, _is_bytes_output(name, array)) for name, array in outputs.items()
    }
    if len(per_output) == 1:
        return {"predictions": next(iter(per_output.values()))}
    return {
        "predictions": [
            {name: values[row] for name, values in per_output.items()} for row in range(batch_size)
        ]
    }


def classify_response_json(classifications: list[list[tuple[str, float]]]) -> dict:
    """[[(label, score), ...] per example] -> {"results": [[[label, score], ...], ...]}."""
    if not classifications:
        raise invalid_argument("Cannot convert empty ClassificationResults to JSON")
    return {
        "results": [[[label, json_float(score)] for label, score in row] for row in classifications]
    }


def regress_response_json(values: list[float]) -> dict:
    if not values:
        raise invalid_argument("Cannot convert empty RegressionResults to JSON")
    return {"results": [json_float(v) for v in values]}
