"""gRPC MultiInference, REST OPTIONS, and empty model names / requests, as TF Serving answers.

MultiInference cases are those of TF Serving 2.16.1's multi_inference_test.cc, on a model
built like its `half_plus_two` (signatures regress_x_to_y: 0.5x + 2, regress_x_to_y2:
0.5x + 3, classify_x_to_y: score 0.5x + 2, over tf.Examples with a float feature `x`), served
by the built-in server (it controls the files: skipped against a real TF Serving). The
requests against the SST-2 model (`target`) also run against a real TF Serving.

OPTIONS follows http_server.cc: the dispatcher answers an OPTIONS request on a `/v1/` path
itself — 200 with an empty body if the `Origin` header matches `https?://`, else
FAILED_PRECONDITION (400), also with an empty body (the handler, which writes JSON errors,
is never called). Empty model names: server_core.cc's ServableRequestFromModelSpec ("ModelSpec
has no name specified.", INVALID_ARGUMENT) for every inference and metadata call; the REST
status and metadata routes say "Missing model name in request."; GetModelStatus without a
ModelSpec says "Missing ModelSpec".
"""

from __future__ import annotations

import http.client
import urllib.parse

import grpc
import numpy as np
import pytest
from serving_test_support import SENTENCES
from tensorflow_serving.apis import inference_pb2

from serving.protos import serving_protos

protos = serving_protos()
CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"
PREDICT = "tensorflow/serving/predict"
HALF_PLUS_TWO = "half_plus_two"


def _export_half_plus_two(export_dir: str) -> None:
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    class HalfPlusTwo(tf.Module):
        def _x(self, serialized):
            features = tf.io.parse_example(
                serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)}
            )
            return features["x"]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress_x_to_y(self, inputs):
            return {"outputs": 0.5 * self._x(inputs) + 2.0}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress_x_to_y2(self, inputs):
            return {"outputs": 0.5 * self._x(inputs) + 3.0}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def classify_x_to_y(self, inputs):
            return {"scores": 0.5 * self._x(inputs) + 2.0}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def predict(self, x):
            return {"y": 0.5 * x + 2.0}

    module = HalfPlusTwo()
    signatures = {
        "regress_x_to_y": module.regress_x_to_y.get_concrete_function(),
        "regress_x_to_y2": module.regress_x_to_y2.get_concrete_function(),
        "classify_x_to_y": module.classify_x_to_y.get_concrete_function(),
        "serving_default": module.predict.get_concrete_function(),
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    # As in half_plus_two: each signature says its method (tf.saved_model.save says predict).
    path = f"{export_dir}/saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        for name, method in (
            ("regress_x_to_y", REGRESS),
            ("regress_x_to_y2", REGRESS),
            ("classify_x_to_y", CLASSIFY),
        ):
            meta_graph.signature_def[name].method_name = method
    with open(path, "wb") as f:
        f.write(saved_model.SerializeToString())


@pytest.fixture(scope="module")
def half_plus_two(tmp_path_factory, needs_own_server):
    """A gRPC stub to a built-in server serving the half_plus_two model as version 1."""
    from serving.model_server import ModelServer

    base_path = tmp_path_factory.mktemp("serving_models") / HALF_PLUS_TWO
    _export_half_plus_two(str(base_path / "1"))
    server = ModelServer(
        HALF_PLUS_TWO, str(base_path), rest_port=None, grpc_port=0, host="127.0.0.1",
        file_system_poll_wait_seconds=-1,
    )  # fmt: skip
    server.start()
    channel = grpc.insecure_channel(server.grpc_target)
    yield protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()
    server.stop()


@pytest.fixture(scope="module")
def needs_own_server():
    from serving_test_support import real_tf_serving

    if real_tf_serving():
        pytest.skip("runs only against the built-in server (TF_SERVING_REST/GRPC is set)")


def _request(tasks: list[tuple[str, str, str]], x: float | None = 2.0):
    """A MultiInferenceRequest: (model, signature, method) per task, one example {x}."""
    request = inference_pb2.MultiInferenceRequest()
    for model, signature, method in tasks:
        task = request.tasks.add(method_name=method)
        task.model_spec.name = model
        task.model_spec.signature_name = signature
    if x is not None:
        example = request.input.example_list.examples.add()
        example.features.feature["x"].float_list.value.append(x)
    return request


def _error(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as error:
        call(request, timeout=30)
    return error.value.code(), error.value.details()


def test_regress_and_classify_signatures(half_plus_two):
    response = half_plus_two.MultiInference(
        _request(
            [(HALF_PLUS_TWO, "regress_x_to_y", REGRESS), (HALF_PLUS_TWO, "classify_x_to_y", CLASSIFY)]
        ),
        timeout=60,
    )
    expected = inference_pb2.MultiInferenceResponse()
    first = expected.results.add()
    first.model_spec.name, first.model_spec.signature_name = HALF_PLUS_TWO, "regress_x_to_y"
    first.model_spec.version.value = 1
    first.regression_result.regressions.add(value=3.0)
    second = expected.results.add()
    second.model_spec.name, second.model_spec.signature_name = HALF_PLUS_TWO, "classify_x_to_y"
    second.model_spec.version.value = 1
    second.classification_result.classifications.add().classes.add(score=3.0)
    assert response == expected


def test_multiple_valid_regress_signatures(half_plus_two):
    response = half_plus_two.MultiInference(
        _request(
            [(HALF_PLUS_TWO, "regress_x_to_y", REGRESS), (HALF_PLUS_TWO, "regress_x_to_y2", REGRESS)]
        ),
        timeout=60,
    )
    assert [r.regression_result.regressions[0].value for r in response.results] == [3.0, 4.0]
    assert [r.model_spec.version.value for r in response.results] == [1, 1]


@pytest.mark.parametrize(
    "tasks, x, code, message",
    [
        # MissingInputTest
        ([(HALF_PLUS_TWO, "regress_x_to_y", REGRESS)], None,
         grpc.StatusCode.INVALID_ARGUMENT, "Input is empty"),
        # UndefinedSignatureTest
        ([(HALF_PLUS_TWO, "ThisSignatureDoesNotExist", REGRESS)], 2.0,
         grpc.StatusCode.INVALID_ARGUMENT,
         "Requested signature not found in model graph: ThisSignatureDoesNotExist"),
        # InconsistentModelSpecsInRequestTest
        ([(HALF_PLUS_TWO, "regress_x_to_y", REGRESS), ("ModelDoesNotExist", "regress_x_to_y", REGRESS)],
         2.0, grpc.StatusCode.INVALID_ARGUMENT,
         "All ModelSpecs in a MultiInferenceRequest must access the same model name."),
        # EvaluateDuplicateSignaturesTest
        ([(HALF_PLUS_TWO, "regress_x_to_y", REGRESS), (HALF_PLUS_TWO, "regress_x_to_y", REGRESS)],
         2.0, grpc.StatusCode.INVALID_ARGUMENT, "Duplicate evaluation of signature: regress_x_to_y"),
        # UsupportedSignatureTypeTest
        ([(HALF_PLUS_TWO, "serving_default", PREDICT)], 2.0,
         grpc.StatusCode.UNIMPLEMENTED, "Unsupported signature method_name: tensorflow/serving/predict"),
        # The servable comes from the first task (multi_inference_helper.cc).
        ([("ModelDoesNotExist", "regress_x_to_y", REGRESS)], 2.0,
         grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(ModelDoesNotExist)"),
        ([(HALF_PLUS_TWO, "regress_x_to_y", REGRESS), ("", "regress_x_to_y2", REGRESS)], 2.0,
         grpc.StatusCode.INVALID_ARGUMENT, "Found ModelSpec with an empty model name."),
        # No task: the default (empty) ModelSpec.
        ([], 2.0, grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
    ],
)  # fmt: skip
def test_multi_inference_errors(half_plus_two, tasks, x, code, message):
    assert _error(half_plus_two.MultiInference, _request(tasks, x)) == (code, message)


def test_classify_task_on_sst2_matches_classify(grpc_client, target):
    """Against the SST-2 export's `classification` signature (also on a real TF Serving)."""
    request = _request([(target.model, "classification", CLASSIFY)], x=None)
    for text in SENTENCES[:3]:
        example = request.input.example_list.examples.add()
        example.features.feature["inputs"].bytes_list.value.append(text.encode())
    response = grpc_client.prediction_stub.MultiInference(request, timeout=60)
    classify = protos.classification_pb2.ClassificationRequest()
    classify.model_spec.name, classify.model_spec.signature_name = target.model, "classification"
    classify.input.CopyFrom(request.input)
    expected = grpc_client.prediction_stub.Classify(classify, timeout=60)
    (result,) = response.results
    assert result.model_spec.name == target.model
    assert result.model_spec.signature_name == "classification"
    assert result.model_spec.version.value == expected.model_spec.version.value
    got = [[(c.label, c.score) for c in row.classes] for row in result.classification_result.classifications]
    want = [[(c.label, c.score) for c in row.classes] for row in expected.result.classifications]
    assert [[label for label, _ in row] for row in got] == [[label for label, _ in row] for row in want]
    np.testing.assert_allclose(
        [[s for _, s in row] for row in got], [[s for _, s in row] for row in want], atol=1e-6
    )


def test_empty_model_name_and_empty_requests_over_grpc(grpc_client):
    """An empty request has no ModelSpec: "Missing ModelSpec" (predict_impl.cc,
    classification_service.cc, regression_service.cc, get_model_metadata_impl.cc,
    get_model_status_impl.cc), except MultiInference, which takes the default ModelSpec of
    its first task; a ModelSpec with an empty name: "ModelSpec has no name specified."."""
    stub = grpc_client.prediction_stub
    missing = (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
    no_name = (grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified.")
    model_spec = protos.model_pb2.ModelSpec()
    metadata_fields = ["signature_def"]
    for call, message in (
        (stub.Predict, protos.predict_pb2.PredictRequest),
        (stub.Classify, protos.classification_pb2.ClassificationRequest),
        (stub.Regress, protos.regression_pb2.RegressionRequest),
    ):
        assert _error(call, message()) == missing
        assert _error(call, message(model_spec=model_spec)) == no_name
    metadata = protos.get_model_metadata_pb2.GetModelMetadataRequest
    assert _error(stub.GetModelMetadata, metadata(metadata_field=metadata_fields)) == missing
    assert _error(
        stub.GetModelMetadata, metadata(model_spec=model_spec, metadata_field=metadata_fields)
    ) == no_name
    assert _error(stub.MultiInference, inference_pb2.MultiInferenceRequest()) == no_name
    status = protos.get_model_status_pb2.GetModelStatusRequest
    assert _error(grpc_client.model_stub.GetModelStatus, status()) == missing
    # With a ModelSpec, the status of model "" is looked up like any other: none.
    assert _error(grpc_client.model_stub.GetModelStatus, status(model_spec=model_spec)) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find any versions of model ",
    )


def test_empty_model_name_over_rest(rest):
    status, body = rest.request("GET", "/v1/models")
    assert (status, body) == (400, {"error": "Missing model name in request."})
    # An empty name cannot be written in the predict path: TF Serving's regex needs one.
    status, body = rest.request("POST", "/v1/models/:predict", {"instances": [1]})
    assert status == 400 and body["error"] == "Malformed request: POST /v1/models/:predict"


def _raw(url: str, method: str, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=30)
    connection.request(method, path, headers=headers)
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


def test_options_is_a_cors_preflight(target):
    if not target.rest_url:
        pytest.skip("no REST API to test (TF_SERVING_GRPC only)")
    path = f"/v1/models/{target.model}:predict"
    for origin in ("http://example.com", "https://example.com:8443"):
        response = _raw(target.rest_url, "OPTIONS", path, {"Origin": origin})
        assert (response.status, response.body) == (200, b"")
    for headers in ({}, {"Origin": "example.com"}, {"Origin": "null"}):
        response = _raw(target.rest_url, "OPTIONS", path, headers)
        assert (response.status, response.body) == (400, b"")
    if target.builtin is not None:  # started without --rest_api_enable_cors_support
        response = _raw(target.rest_url, "OPTIONS", path, {"Origin": "http://example.com"})
        assert response.getheader("Access-Control-Allow-Origin") is None
