"""TF Serving's gRPC services (`tensorflow.serving.PredictionService` and `ModelService`).

Uses the generated servicers from tensorflow-serving-api, so any TF Serving client works
unchanged. Errors carry TF Serving's status codes and messages. `MultiInference` and
`HandleReloadConfigRequest` answer UNIMPLEMENTED (this server has no config to reload).
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving.errors import Code, ServingError, invalid_argument
from serving.model_manager import ModelSpec
from serving.prediction_service import PredictionService, Result
from serving.protos import serving_protos

logger = logging.getLogger(__name__)

_MAX_MESSAGE_BYTES = 2**31 - 1  # TF Serving accepts messages up to INT_MAX too


def model_spec_from_proto(proto) -> ModelSpec:
    choice = proto.WhichOneof("version_choice")
    return ModelSpec(
        name=proto.name,
        version=proto.version.value if choice == "version" else None,
        version_label=proto.version_label if choice == "version_label" else None,
        signature_name=proto.signature_name,
    )


def _fill_response_spec(response_spec, result: Result) -> None:
    response_spec.name = result.servable.model_name
    response_spec.version.value = result.servable.version
    response_spec.signature_name = result.signature_name


def _serialized_examples(input_proto) -> list[bytes]:
    """tensorflow.serving.Input -> serialized tf.Examples (context merged into each)."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        examples, context = input_proto.example_list.examples, None
    elif kind == "example_list_with_context":
        examples = input_proto.example_list_with_context.examples
        context = input_proto.example_list_with_context.context
    else:
        raise invalid_argument("Input is empty")
    if not examples:
        raise invalid_argument("Input is empty")
    prefix = context.SerializeToString() if context is not None else b""
    return [prefix + example.SerializeToString() for example in examples]


def _abort(context: grpc.ServicerContext, error: ServingError):
    context.abort(grpc.StatusCode[error.code.name], error.message)


def _call(context: grpc.ServicerContext, function, *args):
    try:
        return function(*args)
    except ServingError as e:
        _abort(context, e)
    except Exception as e:  # noqa: BLE001
        logger.exception("Internal error in gRPC call")
        _abort(context, ServingError(Code.INTERNAL, f"Internal error: {e}"))


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService."""

    def __init__(self, service: PredictionService):
        self.service = service
        self.protos = serving_protos()

    def _predict(self, request):
        inputs = {}
        for alias, tensor in request.inputs.items():
            try:
                inputs[alias] = tf.make_ndarray(tensor)
            except Exception:  # noqa: BLE001  (malformed TensorProto)
                raise invalid_argument(f"tensor parsing error: {alias}") from None
            if inputs[alias].dtype.kind == "U":
                inputs[alias] = inputs[alias].astype(object)
        result = self.service.predict(
            model_spec_from_proto(request.model_spec), inputs, list(request.output_filter)
        )
        response = self.protos.predict_pb2.PredictResponse()
        _fill_response_spec(response.model_spec, result)
        for name, array in result.outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(array)))
        return response

    def Predict(self, request, context):  # noqa: N802  (gRPC method name)
        return _call(context, self._predict, request)

    def _classify(self, request):
        result = self.service.classify(
            model_spec_from_proto(request.model_spec), _serialized_examples(request.input)
        )
        response = self.protos.classification_pb2.ClassificationResponse()
        _fill_response_spec(response.model_spec, result)
        for row in result.classifications:
            classifications = response.result.classifications.add()
            for label, score in row:
                classifications.classes.add(label=label, score=score)
        return response

    def Classify(self, request, context):  # noqa: N802
        return _call(context, self._classify, request)

    def _regress(self, request):
        result = self.service.regress(
            model_spec_from_proto(request.model_spec), _serialized_examples(request.input)
        )
        response = self.protos.regression_pb2.RegressionResponse()
        _fill_response_spec(response.model_spec, result)
        for value in result.regressions:
            response.result.regressions.add(value=value)
        return response

    def Regress(self, request, context):  # noqa: N802
        return _call(context, self._regress, request)

    def MultiInference(self, request, context):  # noqa: N802
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not supported by this server"
        )

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _call(
            context,
            self.service.model_metadata,
            model_spec_from_proto(request.model_spec),
            list(request.metadata_field),
        )


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService."""

    def __init__(self, service: PredictionService):
        self.service = service

    def GetModelStatus(self, request, context):  # noqa: N802
        if not request.HasField("model_spec"):
            _abort(context, invalid_argument("Missing ModelSpec"))
        return _call(context, self.service.model_status, model_spec_from_proto(request.model_spec))

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "Config reloading is not supported by this server"
        )


class GrpcServer:
    """TF Serving's gRPC services for `service` on host:port (port 0: any free port)."""

    def __init__(
        self,
        service: PredictionService,
        host: str = "0.0.0.0",
        port: int = 8500,
        max_workers: int = 64,
    ):
        options = [
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
        ]
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
            options=options,
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(service), self._server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(service), self._server
        )
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._port = self._server.add_insecure_port(address)
        if self._port == 0:
            raise OSError(f"cannot bind the gRPC server to {address}")

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> None:
        self._server.start()

    def stop(self, grace: float = 2.0) -> None:
        self._server.stop(grace).wait()
