"""TF Serving's gRPC API (PredictionService, ModelService) with the tensorflow-serving-api stubs."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from serving_test_support import MODEL_NAME, SENTENCES

from serving.client import ServerError
from serving.protos import serving_protos

protos = serving_protos()


def predict_request(model: str, inputs: dict, **spec):
    request = protos.predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    for alias, tensor in inputs.items():
        request.inputs[alias].CopyFrom(tensor)
    return request


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call(request, timeout=30)
    return error.value


def test_predict_matches_rest_and_reports_the_version(grpc_client, rest, target, exports):
    by_grpc = grpc_client.predict(SENTENCES)
    by_rest = rest.predict(SENTENCES)
    assert [p.label for p in by_grpc] == [p.label for p in by_rest]
    np.testing.assert_allclose(
        [p.probabilities for p in by_grpc], [p.probabilities for p in by_rest], atol=1e-5
    )
    response = grpc_client.predict_response(SENTENCES[:2])
    assert response.model_spec.name == grpc_client.model
    assert response.model_spec.signature_name == "serving_default"
    assert set(response.outputs) == {"label", "probabilities"}
    assert [d.size for d in response.outputs["probabilities"].tensor_shape.dim] == [2, 2]
    if target.builtin:
        assert response.model_spec.version.value == 2
        reference = exports.reference(2, SENTENCES)
        np.testing.assert_allclose(
            [p.probabilities for p in by_grpc], reference["probabilities"], atol=1e-5
        )


def test_output_filter_and_explicit_version(grpc_client, target):
    request = predict_request(
        grpc_client.model,
        {"text": grpc_client.string_tensor(["a film"])},
        signature_name="serving_default",
    )
    request.output_filter.append("label")
    response = grpc_client.prediction_stub.Predict(request, timeout=30)
    assert set(response.outputs) == {"label"}
    if target.builtin:
        request.model_spec.version.value = 2
        assert (
            grpc_client.prediction_stub.Predict(request, timeout=30).model_spec.version.value == 2
        )


def test_classify_returns_named_classes(grpc_client, exports, needs_own_server):
    example = protos.example_pb2.Example()
    example.features.feature["text"].bytes_list.value.append(SENTENCES[0].encode())
    results = grpc_client.classify([example])
    reference = exports.reference(2, SENTENCES[:1])["probabilities"][0]
    assert [label for label, _ in results[0]] == ["positive", "negative"]
    np.testing.assert_allclose([score for _, score in results[0]], reference, atol=1e-5)


def test_model_status_and_metadata(grpc_client, target):
    status = grpc_client.status()
    available = protos.get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert any(
        s.state == available and s.status.error_code == 0 for s in status.model_version_status
    )
    metadata = grpc_client.metadata()
    assert metadata.model_spec.name == grpc_client.model
    signatures = protos.get_model_metadata_pb2.SignatureDefMap()
    assert metadata.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def["serving_default"].inputs) == {"text"}
    assert set(signatures.signature_def["serving_default"].outputs) == {"label", "probabilities"}
    if target.builtin:
        assert [s.version for s in status.model_version_status] == [2]
        assert metadata.model_spec.version.value == 2


def test_errors_carry_tf_servings_codes(grpc_client):
    stub = grpc_client.prediction_stub
    text = {"text": grpc_client.string_tensor(["a film"])}

    error = rpc_error(stub.Predict, predict_request("nope", text))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "Servable not found for request: Latest(nope)" in error.details()

    error = rpc_error(stub.Predict, predict_request(grpc_client.model, text, version=99))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    error = rpc_error(
        stub.Predict,
        predict_request(grpc_client.model, {"sentence": grpc_client.string_tensor(["a"])}),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input tensor alias not found in signature: sentence" in error.details()

    error = rpc_error(stub.Predict, predict_request(grpc_client.model, {}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input size does not match signature" in error.details()

    floats = protos.tensor_pb2.TensorProto(dtype=1, float_val=[1.0])
    floats.tensor_shape.dim.add(size=1)
    error = rpc_error(stub.Predict, predict_request(grpc_client.model, {"text": floats}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT

    error = rpc_error(stub.Predict, predict_request(grpc_client.model, text, signature_name="nope"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

    request = protos.get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = grpc_client.model
    error = rpc_error(stub.GetModelMetadata, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must specify at least one metadata_field" in error.details()

    request = protos.get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    error = rpc_error(grpc_client.model_stub.GetModelStatus, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "Could not find any versions of model nope" in error.details()


def test_client_raises_server_errors(target, needs_own_server):
    from serving.client import GrpcClient

    client = GrpcClient(target.grpc_target, MODEL_NAME, version=99)
    with pytest.raises(ServerError) as error:
        client.predict(["a film"])
    assert error.value.status == "NOT_FOUND"
    client.close()
