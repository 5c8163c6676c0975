"""TF Serving's own test SavedModels answer as TF Serving's tests expect (issue 12, item 1).

The models are copies of TF Serving's testdata (tests/serving/testdata, see its README.md);
the expectations come from TF Serving's `tensorflow_model_server_test.py`,
`predict_impl_test.cc` and `api_rest.md`. Every call goes over REST or gRPC on 127.0.0.1 to
the built-in server (one server per model). With `TF_SERVING_REST` / `TF_SERVING_GRPC` set,
the same tests run against that TF Serving, which must serve the three models under the names
of `MODELS` (e.g. from a model config file); a model it does not serve skips its tests.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from serving_test_support import real_tf_serving

from serving.protos import serving_protos

protos = serving_protos()
TESTDATA = Path(__file__).parent / "testdata"
MODELS = {
    "half_plus_two": "saved_model_half_plus_two_cpu",
    "half_plus_three": "saved_model_half_plus_three",
    "counter": "saved_model_counter",
}
VERSION = 123  # the version directory of every TF Serving test model
DT_FLOAT = 1


class Endpoint:
    """One served model's REST URL and gRPC stub."""

    def __init__(self, model: str, rest_url: str | None, grpc_target: str | None):
        self.model = model
        self.rest_url = rest_url
        self.channel = grpc.insecure_channel(grpc_target) if grpc_target else None
        self.stub = (
            protos.prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
            if self.channel
            else None
        )

    def rest(self, method: str, suffix: str, body=None) -> tuple[int, dict]:
        if not self.rest_url:
            pytest.skip("no REST API to test (TF_SERVING_GRPC only)")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.rest_url}/v1/models/{self.model}{suffix}", data=data, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def grpc(self):
        if self.stub is None:
            pytest.skip("no gRPC API to test (TF_SERVING_REST only)")
        return self.stub


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory):
    """model name -> Endpoint: built-in servers over tests/serving/testdata, or the real one."""
    if real_tf_serving():
        rest, target = os.environ.get("TF_SERVING_REST"), os.environ.get("TF_SERVING_GRPC")
        yield {name: Endpoint(name, rest, target) for name in MODELS}
        return
    from serving.model_server import ModelServer

    servers = []
    try:
        for name, directory in MODELS.items():
            server = ModelServer(
                name,
                str(TESTDATA / directory),
                rest_port=0,
                grpc_port=0,
                host="127.0.0.1",
                file_system_poll_wait_seconds=-1,
            )
            servers.append(server.start())
        yield {
            name: Endpoint(name, server.rest_url, server.grpc_target)
            for name, server in zip(MODELS, servers, strict=True)
        }
    finally:
        for server in servers:
            server.stop()


def served(endpoints, name: str) -> Endpoint:
    endpoint = endpoints[name]
    if real_tf_serving() and endpoint.rest_url:
        status, _ = endpoint.rest("GET", "")
        if status != 200:
            pytest.skip(f"the TF Serving under test does not serve {name}")
    return endpoint


def float_tensor(values, shape=None):
    tensor = protos.tensor_pb2.TensorProto(dtype=DT_FLOAT)
    tensor.float_val.extend(values)
    for size in shape or ():
        tensor.tensor_shape.dim.add().size = size
    return tensor


def predict(stub, model: str, inputs: dict, signature_name: str = ""):
    request = protos.predict_pb2.PredictRequest()
    request.model_spec.name = model
    if signature_name:
        request.model_spec.signature_name = signature_name
    for alias, tensor in inputs.items():
        request.inputs[alias].CopyFrom(tensor)
    return stub.Predict(request, timeout=60)


# --- half_plus_two (saved_model_half_plus_two_cpu: x is [-1, 1]) ------------------------------


def test_half_plus_two_rest_predict_as_api_rest_md(endpoints):
    model = served(endpoints, "half_plus_two")
    # api_rest.md's example: a [3] tensor fed to the [-1, 1] input runs, as in TF Serving.
    assert model.rest("POST", ":predict", {"instances": [1.0, 2.0, 5.0]}) == (
        200,
        {"predictions": [2.5, 3.0, 4.5]},
    )
    # tensorflow_model_server_test.py: testPredictREST and testPredictColumnarREST.
    assert model.rest("POST", ":predict", {"instances": [2.0, 3.0, 4.0]}) == (
        200,
        {"predictions": [3.0, 3.5, 4.0]},
    )
    assert model.rest("POST", ":predict", {"inputs": [2.0, 3.0, 4.0]}) == (
        200,
        {"outputs": [3.0, 3.5, 4.0]},
    )
    # The declared [-1, 1] shape works too.
    assert model.rest("POST", ":predict", {"instances": [[1.0], [2.0]]}) == (
        200,
        {"predictions": [[2.5], [3.0]]},
    )


def test_half_plus_two_rest_classify_and_regress(endpoints):
    model = served(endpoints, "half_plus_two")
    request = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert model.rest("POST", ":classify", request) == (200, {"results": [[["", 3.0]]]})
    request = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    assert model.rest("POST", ":regress", request) == (200, {"results": [3.0]})


def test_half_plus_two_rest_status_and_every_signature_in_metadata(endpoints):
    model = served(endpoints, "half_plus_two")
    status, body = model.rest("GET", "")
    assert status == 200
    assert body["model_version_status"][0]["version"] == str(VERSION)
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    status, body = model.rest("GET", "/metadata")
    assert status == 200
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert {
        "serving_default",
        "classify_x_to_y",
        "regress_x_to_y",
        "regress_x_to_y2",
        "regress_x2_to_y3",
    } <= set(signatures)
    x = signatures["serving_default"]["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT" and [d["size"] for d in x["tensor_shape"]["dim"]] == ["-1", "1"]


def test_half_plus_two_metadata_is_tf_servings_json(endpoints):
    # tensorflow_model_server_test.py testGetModelMetadataREST (the model served as "default").
    model = served(endpoints, "half_plus_two")
    expected = json.loads((TESTDATA / "half_plus_two_model_metadata.json").read_text())
    expected["model_spec"]["name"] = model.model
    assert model.rest("GET", "/metadata") == (200, expected)


def test_half_plus_two_grpc_predict_in_typed_fields(endpoints):
    model = served(endpoints, "half_plus_two")
    stub = model.grpc()
    # tensorflow_model_server_test_base.VerifyPredictRequest: x = [2.0] (shape [1]).
    response = predict(stub, model.model, {"x": float_tensor([2.0], [1])})
    y = response.outputs["y"]
    assert list(y.float_val) == [3.0] and y.tensor_content == b""
    assert response.model_spec.version.value == VERSION
    assert response.model_spec.signature_name == "serving_default"
    # Batched: [[2.0]] -> [[3.0]].
    y = predict(stub, model.model, {"x": float_tensor([2.0], [1, 1])}).outputs["y"]
    assert list(y.float_val) == [3.0] and [d.size for d in y.tensor_shape.dim] == [1, 1]
    # predict_impl_test.cc PredictionSuccess: a scalar x gives a scalar y.
    y = predict(stub, model.model, {"x": float_tensor([2.0])}).outputs["y"]
    assert y.dtype == DT_FLOAT and list(y.float_val) == [3.0] and not y.tensor_shape.dim


def test_half_plus_two_grpc_predict_with_a_regression_signature(endpoints):
    # predict_impl_test.cc PredictionWithNamedRegressionSignature: y3 = 0.5 * x2 + 3.
    model = served(endpoints, "half_plus_two")
    response = predict(
        model.grpc(), model.model, {"inputs": float_tensor([2.0])}, "regress_x2_to_y3"
    )
    assert list(response.outputs["outputs"].float_val) == [4.0]


def test_half_plus_two_grpc_classify_and_regress(endpoints):
    # tensorflow_model_server_test.py _TestClassify / _TestRegress.
    model = served(endpoints, "half_plus_two")
    stub = model.grpc()
    request = protos.classification_pb2.ClassificationRequest()
    request.model_spec.name = model.model
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    result = stub.Classify(request, timeout=60)
    assert [c.score for c in result.result.classifications[0].classes] == [3.0]
    assert result.model_spec.version.value == VERSION
    request = protos.regression_pb2.RegressionRequest()
    request.model_spec.name = model.model
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    assert stub.Regress(request, timeout=60).result.regressions[0].value == 3.0


@pytest.mark.parametrize(
    "tensor, provided",
    [
        (protos.tensor_pb2.TensorProto(dtype=10, bool_val=[True]), "bool"),
        (protos.tensor_pb2.TensorProto(dtype=7, string_val=[b"a"]), "string"),
    ],
)
def test_tensorflow_decides_dtype_errors_with_its_message(endpoints, tensor, provided):
    # predict_impl_test.cc: "Expects arg[0] to be float but bool is provided".
    model = served(endpoints, "half_plus_two")
    with pytest.raises(grpc.RpcError) as error:
        predict(model.grpc(), model.model, {"x": tensor})
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"Expects arg[0] to be float but {provided} is provided" in error.value.details()


# --- half_plus_three (TF 1.0 SavedModel, scalar input) ------------------------------------


def test_half_plus_three_loads_and_predicts(endpoints):
    # tensorflow_model_server_test.py testGoodModelConfig: half_plus_three answers 4.0 for 2.0.
    model = served(endpoints, "half_plus_three")
    response = predict(model.grpc(), model.model, {"x": float_tensor([2.0], [1])})
    assert list(response.outputs["y"].float_val) == [4.0]
    assert response.model_spec.version.value == VERSION
    assert model.rest("POST", ":predict", {"instances": [2.0, 4.0]}) == (
        200,
        {"predictions": [4.0, 5.0]},
    )


# --- counter (ref variables, signatures without inputs) -----------------------------------


def test_counter_signatures_keep_state(endpoints):
    # predict_impl_test.cc PredictionWithCustomizedSignatures (reset first: a real server
    # may have counted before).
    model = served(endpoints, "counter")
    stub = model.grpc()

    def call(signature: str, inputs: dict | None = None) -> float:
        output = predict(stub, model.model, inputs or {}, signature).outputs["output"]
        assert output.dtype == DT_FLOAT and not output.tensor_shape.dim
        return list(output.float_val)[0]

    assert call("reset_counter") == 0.0
    assert call("get_counter") == 0.0
    assert call("incr_counter") == 1.0
    assert call("reset_counter") == 0.0
    assert call("incr_counter") == 1.0
    assert call("incr_counter_by", {"delta": float_tensor([3.0])}) == 4.0
    assert call("get_counter") == 4.0


def test_counter_over_rest_needs_inputs(endpoints):
    # A REST request is built from the signature's inputs: none is TF Serving's 400.
    model = served(endpoints, "counter")
    status, body = model.rest(
        "POST", ":predict", {"signature_name": "get_counter", "instances": [1.0]}
    )
    assert status == 400
    assert "Failed to get input map for signature: get_counter" in body["error"]
    status, body = model.rest(
        "POST", ":predict", {"signature_name": "incr_counter_by", "inputs": {"delta": 2.0}}
    )
    assert status == 200 and isinstance(body["outputs"], float)


def test_shapes_and_values_are_tensorflows_to_judge(endpoints):
    # No hand-written shape check: a [1, 2] tensor fed to the [-1, 1] input runs (the graph
    # multiplies elementwise), as in TF Serving; an example the graph's ParseExample cannot
    # parse fails in TensorFlow, with its INVALID_ARGUMENT.
    model = served(endpoints, "half_plus_two")
    assert model.rest("POST", ":predict", {"instances": [[1.0, 2.0]]}) == (
        200,
        {"predictions": [[2.5, 3.0]]},
    )
    request = {"signature_name": "classify_x_to_y", "examples": [{"x": "not a float"}]}
    status, body = model.rest("POST", ":classify", request)
    assert status == 400 and "error" in body
