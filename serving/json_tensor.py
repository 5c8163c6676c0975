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
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from serving.errors import Code, ServingError, invalid_argument

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


# TF Serving truncates the JSON it quotes in error messages (JsonValueToDebugString).
MAX_JSON_DEBUG_STRING_BYTES = 256
# TensorFlow's limit on a tensor's rank (TensorShape::MaxDimensions()).
MAX_TENSOR_RANK = 254


def _json_value_to_string(value: Any) -> str:
    """Compact JSON of `value`, cut after MAX_JSON_DEBUG_STRING_BYTES as TF Serving cuts it.

    Iterative, so a value nested 100,000 deep is quoted without Python's recursion limit.
    Like rapidjson's bounded writer, a token starts only while the output is under the
    limit, so the text may end mid-structure.
    """
    out: list[str] = []
    size = 0
    # Items: ("v", value, prefix) to write a value, ("t", text) to write closing text.
    stack: list[tuple] = [("v", value, "")]
    while stack and size < MAX_JSON_DEBUG_STRING_BYTES:
        item = stack.pop()
        if item[0] == "t":
            piece = item[1]
        else:
            _, current, prefix = item
            if isinstance(current, list):
                piece = prefix + "["
                stack.append(("t", "]"))
                for index in range(len(current) - 1, -1, -1):
                    stack.append(("v", current[index], "," if index else ""))
            elif isinstance(current, dict):
                piece = prefix + "{"
                stack.append(("t", "}"))
                entries = list(current.items())
                for index in range(len(entries) - 1, -1, -1):
                    key, member = entries[index]
                    key_text = ("," if index else "") + json.dumps(key, ensure_ascii=False) + ":"
                    stack.append(("v", member, key_text))
            else:
                piece = prefix + json.dumps(current, ensure_ascii=False)
        out.append(piece)
        size += len(piece.encode("utf-8"))
    return "".join(out)


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
    """Parses a request body; TF Serving's errors for empty, malformed or non-object JSON.

    Valid JSON goes through the C parser; JSON nested deeper than Python's recursion limit
    is parsed iteratively (TF Serving's rapidjson parses with kParseIterativeFlag, so any
    depth is accepted), and malformed JSON is parsed again by the iterative parser to
    report rapidjson's message and byte offset.
    """
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
    except (RecursionError, json.JSONDecodeError):
        document = parse_json_iteratively(text)
    if not isinstance(document, dict):
        raise _format_error(document, "Is not object")
    return document


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_LITERALS = {
    "true": True,
    "false": False,
    "null": None,
    "NaN": math.nan,
    "Infinity": math.inf,
    "-Infinity": -math.inf,
    # rapidjson's kParseNanAndInfFlag also takes the short forms (after the long ones: the
    # first literal the text starts with wins).
    "Inf": math.inf,
    "-Inf": -math.inf,
}


class _JsonSyntaxError(Exception):
    def __init__(self, message: str, position: int):
        super().__init__(message)
        self.message, self.position = message, position


def _scan_string(text: str, position: int) -> tuple[str, int]:
    """The string starting at the quote `position`; rapidjson's messages for bad ones."""
    try:
        return json.decoder.scanstring(text, position + 1)
    except json.JSONDecodeError as e:
        if e.msg.startswith("Unterminated"):
            raise _JsonSyntaxError(
                "Missing a closing quotation mark in string.", len(text)
            ) from None
        if "\\u" in e.msg or "uXXXX" in e.msg:
            raise _JsonSyntaxError(
                "Incorrect hex digit after \\u escape in string.", e.pos
            ) from None
        if "escape" in e.msg:
            raise _JsonSyntaxError("Invalid escape character in string.", e.pos) from None
        raise _JsonSyntaxError("Invalid encoding in string.", e.pos) from None


def _scan_scalar(text: str, position: int) -> tuple[Any, int]:
    for literal, value in _LITERALS.items():
        if text.startswith(literal, position):
            return value, position + len(literal)
    match = _NUMBER.match(text, position)
    if not match or match.end() == position:
        raise _JsonSyntaxError("Invalid value.", position)
    number = match.group(0)
    if match.group(1) or match.group(2):
        return float(number), match.end()
    return int(number), match.end()


def parse_json_iteratively(text: str) -> Any:
    """A JSON document -> Python values without recursion (any nesting depth).

    Raises TF Serving's "JSON Parse error: <rapidjson message> at offset: <byte offset>".
    """
    try:
        return _parse_iteratively(text)
    except _JsonSyntaxError as e:
        offset = len(text[: e.position].encode("utf-8"))
        raise invalid_argument(f"JSON Parse error: {e.message} at offset: {offset}") from None


def _parse_iteratively(text: str) -> Any:
    def skip(position: int) -> int:
        return _WHITESPACE.match(text, position).end()

    def object_key(position: int) -> tuple[str, int]:
        if position >= len(text) or text[position] != '"':
            raise _JsonSyntaxError("Missing a name for object member.", position)
        key, position = _scan_string(text, position)
        position = skip(position)
        if position >= len(text) or text[position] != ":":
            raise _JsonSyntaxError("Missing a colon after a name of object member.", position)
        return key, skip(position + 1)

    # Open containers: [list or dict, pending key (dicts)].
    stack: list[list] = []
    position = skip(0)
    while True:
        # Read one value at `position`; an opened container with members continues the loop.
        if position >= len(text):
            raise _JsonSyntaxError("Invalid value.", position)
        char = text[position]
        if char == "{":
            position = skip(position + 1)
            if position < len(text) and text[position] == "}":
                value, position = {}, position + 1
            else:
                key, position = object_key(position)
                stack.append([{}, key])
                continue
        elif char == "[":
            position = skip(position + 1)
            if position < len(text) and text[position] == "]":
                value, position = [], position + 1
            else:
                stack.append([[], None])
                continue
        elif char == '"':
            value, position = _scan_string(text, position)
        else:
            value, position = _scan_scalar(text, position)
        # Attach the value to its container; close containers that end here.
        while True:
            if not stack:
                position = skip(position)
                if position != len(text):
                    raise _JsonSyntaxError(
                        "The document root must not be followed by other values.", position
                    )
                return value
            container, key = stack[-1]
            if key is None:
                container.append(value)
            else:
                container[key] = value
            position = skip(position)
            closing = "]" if key is None else "}"
            if position < len(text) and text[position] == ",":
                position = skip(position + 1)
                if key is not None:
                    stack[-1][1], position = object_key(position)
                break
            if position < len(text) and text[position] == closing:
                stack.pop()
                value, position = container, position + 1
                continue
            raise _JsonSyntaxError(
                "Missing a comma or ']' after an array element."
                if key is None
                else "Missing a comma or '}' after an object member.",
                position,
            )


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
    encoded = value["b64"]
    # absl::Base64Unescape (TF Serving) accepts data without its "=" padding.
    if not encoded.endswith("="):
        encoded += "=" * (-len(encoded) % 4)
    try:
        return base64.b64decode(encoded, validate=True)
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
        # Any JSON number, as rapidjson's GetFloat()/GetDouble(): 1435774380 becomes
        # 1.43577434e+09 and 1.79769e308 becomes Infinity for a float (TF Serving since 2021).
        if not _is_number(value):
            raise _type_error(value, dtype)
        try:
            return float(value)
        except OverflowError:  # an integer beyond double's range
            return math.copysign(math.inf, value)
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
    # AddValueToTensor's default case: UNIMPLEMENTED (HTTP 501), e.g. for a half input.
    raise ServingError(
        Code.UNIMPLEMENTED,
        f"Conversion of JSON Value: {_json_value_to_string(value)} to type: {dtype_name(dtype)}",
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
    if len(shape) > MAX_TENSOR_RANK:
        # TensorFlow cannot hold it; checked before the (recursive) fill, so JSON nested
        # 100,000 deep is a 400 rather than Python's recursion limit.
        raise invalid_argument(
            f"JSON Value: {_json_value_to_string(value)} is nested {len(shape)} lists deep: "
            f"a tensor has at most {MAX_TENSOR_RANK} dimensions"
        )
    flat: list = []
    _fill_values(value, 0, shape, dtype, flat)
    np_dtype = numpy_dtype(dtype)
    if np_dtype is object:
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    with np.errstate(over="ignore"):  # doubles beyond float32's range become +-inf
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
        raise invalid_argument(
            f"Failed to get input map for signature: {signature_name_of(document) or 'DEFAULT'}"
        )
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
        # rapidjson's GetFloat(): a double beyond float's range is +-inf, not an error.
        with np.errstate(over="ignore"):
            feature.float_list.value.append(float(np.float32(value)))
    else:
        require("int64")
        if value > 2**63 - 1:
            raise invalid_argument(
                f"Feature: {name} has uint64_t element. Only int64_t is supported."
            )
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


# The dtypes TF Serving's JSON writer handles (AddSingleValueAndAdvance); others are a 400.
_WRITABLE_DTYPES = frozenset(
    np.dtype(t)
    for t in (
        np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
        np.uint8, np.uint32, np.uint64, np.bool_,
    )
)  # fmt: skip
_TF_DTYPE_NAMES = {"float16": "half", "complex64": "complex64", "complex128": "complex128"}


def _check_writable(array: np.ndarray) -> None:
    # Checked only for tensors with values: TF Serving fails while writing a value, so an
    # empty tensor of any dtype is written.
    if array.size and array.dtype.kind not in "OSU" and array.dtype not in _WRITABLE_DTYPES:
        name = _TF_DTYPE_NAMES.get(array.dtype.name, array.dtype.name)
        raise invalid_argument(f"Failed to write JSON value for tensor type: {name}")


def array_to_json(array: np.ndarray, as_bytes: bool = False) -> Any:
    """A numpy array -> nested JSON lists (scalars stay scalars)."""
    array = np.asarray(array)
    _check_writable(array)
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
    batch_size = -1
    for name, array in outputs.items():
        array = np.asarray(array)
        if array.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch_size >= 0 and batch_size != array.shape[0]:
            raise invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} "
                f"expecting: {batch_size}"
            )
        batch_size = array.shape[0]
    if batch_size == 0:  # a zero-size batch: no rows, as TF Serving writes it
        return {"predictions": []}
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
