"""TF Serving's REST JSON rules (issue 12, item 3), over HTTP on 127.0.0.1.

Expectations from TF Serving's `json_tensor_test.cc` and `json_tensor.cc`: any JSON number
for a float input (1435774380 -> 1.43577434e+09, +-1.79769e308 -> +-Infinity), a zero-size
batch written as `{"predictions": []}`, base64 without padding, JSON nested deeper than any
recursion limit answered with a 400 (or parsed, where the deep value is not used), an output
dtype the JSON writer cannot write (complex64) a 400 INVALID_ARGUMENT, and rapidjson's parse
error messages. TF Serving's half_plus_two (tests/serving/testdata) has the float input, the
sst2 export of conftest.py the string input; the zero-row and complex64 outputs come from a
tiny SavedModel built here, so those tests run against the built-in server only.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from serving_test_support import real_tf_serving

TESTDATA = Path(__file__).parent / "testdata"


def call(base_url: str, model: str, suffix: str, body: bytes | dict) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base_url}/v1/models/{model}{suffix}", data=data, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _server(name: str, base_path: str):
    from serving.model_server import ModelServer

    return ModelServer(
        name,
        base_path,
        rest_port=0,
        grpc_port=None,
        host="127.0.0.1",
        file_system_poll_wait_seconds=-1,
    ).start()


@pytest.fixture(scope="module")
def half_plus_two():
    """REST URL serving TF Serving's half_plus_two (the real server's, when one is set)."""
    if real_tf_serving():
        url = os.environ.get("TF_SERVING_REST")
        if not url:
            pytest.skip("no REST API to test (TF_SERVING_GRPC only)")
        try:
            urllib.request.urlopen(f"{url}/v1/models/half_plus_two", timeout=30).close()
        except urllib.error.HTTPError:  # answered, but not for this model (404)
            pytest.skip("the TF Serving under test does not serve half_plus_two")
        yield url
        return
    server = _server("half_plus_two", str(TESTDATA / "saved_model_half_plus_two_cpu"))
    yield server.rest_url
    server.stop()


@pytest.fixture(scope="module")
def odd_outputs(tmp_path_factory):
    """A built-in server for a SavedModel with outputs TF Serving's writer treats specially."""
    if real_tf_serving():
        pytest.skip("serves a model built by the test (TF_SERVING_REST/GRPC is set)")
    import tensorflow as tf

    class OddOutputs(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def zero_rows(self, x):
            return {"y": tf.zeros([0, 2]) + tf.reduce_sum(x), "z": tf.zeros([0], tf.int32)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def complex_output(self, x):
            return {"c": tf.complex(x, 2 * x)}

    module = OddOutputs()
    base_path = tmp_path_factory.mktemp("odd") / "odd"
    tf.saved_model.save(
        module,
        str(base_path / "1"),
        signatures={"serving_default": module.zero_rows, "complex": module.complex_output},
    )
    server = _server("odd", str(base_path))
    yield server.rest_url
    server.stop()


@pytest.fixture
def sst2(target) -> tuple[str, str]:
    """(REST URL, model name) of conftest.py's target: the sst2 export, string input `text`."""
    if not target.rest_url:
        pytest.skip("no REST API to test (TF_SERVING_GRPC only)")
    return target.rest_url, target.model


def nested(depth: int, leaf: str = "1.0") -> str:
    return "[" * depth + leaf + "]" * depth


# --- numbers for float inputs --------------------------------------------------------------


def test_integers_and_big_doubles_are_accepted_for_float_inputs(half_plus_two):
    # json_tensor_test.cc FloatTensorWithPrecisionLoss: 1435774380 and 1435774380.0 behave the
    # same (float 1.43577434e+09); FloatTensorThatExceedsMaxReturnsInf: +-DBL_MAX -> +-inf.
    for value in (1435774380, 1435774380.0):
        status, body = call(half_plus_two, "half_plus_two", ":predict", {"instances": [value]})
        assert status == 200
        x = np.float32(1435774380)
        assert np.float32(body["predictions"][0]) == x * np.float32(0.5) + np.float32(2)
    body = b'{"instances": [1.79769e308, -1.79769e308, 1, 2.0, 5]}'
    status, answer = call(half_plus_two, "half_plus_two", ":predict", body)
    assert (status, answer) == (200, {"predictions": [np.inf, -np.inf, 2.5, 3.0, 4.5]})


def test_a_zero_size_batch_is_an_empty_list(half_plus_two, odd_outputs):
    # json_tensor_test.cc FromJsonSingleZeroBatchTensor / FromJsonMultipleZeroBatchTensors.
    assert call(odd_outputs, "odd", ":predict", {"instances": [1.0]}) == (
        200,
        {"predictions": []},
    )
    assert call(half_plus_two, "half_plus_two", ":predict", {"inputs": []}) == (
        200,
        {"outputs": []},
    )


def test_an_output_dtype_json_cannot_hold_is_invalid_argument(odd_outputs):
    # json_tensor_test.cc FromJsonSingleTensorErrors: complex64 -> INVALID_ARGUMENT (a 400).
    status, body = call(
        odd_outputs, "odd", ":predict", {"signature_name": "complex", "instances": [1.0]}
    )
    assert status == 400
    assert "Failed to write JSON value for tensor type: complex64" in body["error"]


# --- base64 --------------------------------------------------------------------------------


def test_base64_without_padding_decodes(sst2):
    padded = base64.b64encode(b"a dull mess").decode()
    assert padded.endswith("=")
    status, with_padding = call(*sst2, ":predict", {"instances": [{"b64": padded}]})
    assert status == 200
    status, without = call(*sst2, ":predict", {"instances": [{"b64": padded.rstrip("=")}]})
    assert (status, without) == (200, with_padding)
    status, body = call(*sst2, ":predict", {"instances": [{"b64": "a"}]})
    # Wrapped as TF Serving wraps an instance's error ("Failed to process element: 0 ...").
    assert status == 400 and body["error"].endswith("Unable to base64 decode")


# --- deep nesting and parse errors ---------------------------------------------------------


def test_deeply_nested_json_is_a_400_not_a_crash(sst2):
    # json_tensor_test.cc DeeplyNestedMalformed: a deep signature_name is the usual 400.
    body = ('{"signature_name": ' + nested(500_000) + ', "instances": ["a"]}').encode()
    status, answer = call(*sst2, ":predict", body)
    assert status == 400
    assert "'signature_name' key must be a string value." in answer["error"]
    assert len(answer["error"]) < 1000  # the quoted JSON is cut, as TF Serving cuts it
    # A tensor 100,000 lists deep cannot exist (TensorFlow allows 254 dimensions).
    body = ('{"instances": ' + nested(100_000, '"a"') + "}").encode()
    status, answer = call(*sst2, ":predict", body)
    assert status == 400 and "error" in answer


def test_deep_json_the_request_does_not_use_is_parsed(sst2):
    # json_tensor_test.cc DeeplyNestedWellFormed: 500,000 levels elsewhere in the document.
    body = ('{"instances": ["a gorgeous film"], "nested": ' + nested(500_000) + "}").encode()
    status, answer = call(*sst2, ":predict", body)
    assert status == 200 and len(answer["predictions"]) == 1


@pytest.mark.parametrize(
    "body, message",
    [
        (b'{"instances": [1, 2}', "JSON Parse error: Missing a comma or ']' after an array "
         "element. at offset: 19"),
        (b"instances = [1, 2]", "JSON Parse error: Invalid value. at offset: 0"),
        (b'{"instances": ["a"]} x', "JSON Parse error: The document root must not be followed "
         "by other values. at offset: 21"),
        (b'{"instances" ["a"]}', "JSON Parse error: Missing a colon after a name of object "
         "member. at offset: 13"),
        (b'{"instances": ["a"], }', "JSON Parse error: Missing a name for object member. at "
         "offset: 21"),
        (b'{"instances": ["a]}', "JSON Parse error: Missing a closing quotation mark in "
         "string. at offset: 19"),
    ],
)  # fmt: skip
def test_json_parse_errors_have_rapidjsons_wording(sst2, body, message):
    status, answer = call(*sst2, ":predict", body)
    assert (status, answer) == (400, {"error": message})


def test_uint64_feature_values_are_refused_with_tf_servings_message(sst2):
    status, body = call(*sst2, ":classify", {"examples": [{"n": 2**63}]})
    assert status == 400
    assert body["error"] == "Feature: n has uint64_t element. Only int64_t is supported."
