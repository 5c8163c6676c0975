"""TF Serving's gRPC services (`tensorflow.serving.PredictionService` and `ModelService`).

Uses the generated servicers from tensorflow-serving-api, so any TF Serving client works
unchanged. Errors carry TF Serving's status codes and messages. `MultiInference` runs
classification and regression tasks over the same examples; `HandleReloadConfigRequest`
switches the server to a new ModelServerConfig (model_service_impl.cc). Besides a TCP port
the server can listen on a unix socket (`--grpc_socket_path`) and takes TF Serving's
`--grpc_channel_arguments` ("key=value,key=value"; integer values are passed as integers).
"""

from __future__ import annotations

import logging
import time
from concurrent import futures

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from serving.errors import Code, ServingError, invalid_argument
from serving.model_manager import ModelSpec
from serving.monitoring import Metrics
from serving.prediction_service import PredictionService, Result
from serving.protos import serving_protos
from serving.tensor_proto import array_to_tensor_proto

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


def _require_model_spec(request) -> None:
    """predict_impl.cc, classification_service.cc, ...: a request without a ModelSpec."""
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")


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


def _call_recorded(
    metrics: Metrics | None, api: str, model_name: str, context: grpc.ServicerContext, function, *args
):
    """`_call`, recording TF Serving's request count and latency for Predict, Classify and
    Regress (prediction_service_impl.cc records those three only)."""
    start = time.perf_counter()
    try:
        response = function(*args)
    except ServingError as e:
        if metrics is not None:
            metrics.record_request(model_name, e.code.name)
        _abort(context, e)
    except Exception as e:  # noqa: BLE001
        logger.exception("Internal error in gRPC call")
        if metrics is not None:
            metrics.record_request(model_name, Code.INTERNAL.name)
        _abort(context, ServingError(Code.INTERNAL, f"Internal error: {e}"))
    if metrics is not None:
        metrics.record_latency(model_name, api, "GRPC", (time.perf_counter() - start) * 1e6)
        metrics.record_request(model_name, Code.OK.name)
    return response


def parse_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """--grpc_channel_arguments as server.cc parses it: comma-separated key=value pairs,
    a value that is a 32-bit integer is passed as one, anything else as a string."""
    arguments: list[tuple[str, int | str]] = []
    for item in text.split(",") if text else []:
        key, separator, value = item.partition("=")
        if not separator:
            raise ValueError(f"grpc channel argument {item!r} is not key=value")
        try:
            number = int(value)
        except ValueError:
            arguments.append((key, value))
            continue
        arguments.append((key, number) if -(2**31) <= number < 2**31 else (key, value))
    return arguments


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService."""

    def __init__(self, service: PredictionService, metrics: Metrics | None = None):
        self.service = service
        self.metrics = metrics
        self.protos = serving_protos()

    def _predict(self, request):
        _require_model_spec(request)
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
            response.outputs[name].CopyFrom(array_to_tensor_proto(array))
        return response

    def Predict(self, request, context):  # noqa: N802  (gRPC method name)
        return _call_recorded(
            self.metrics, "Predict", request.model_spec.name, context, self._predict, request
        )

    def _classify(self, request):
        _require_model_spec(request)
        # The input is read after the servable and signature checks, as TF Serving does.
        result = self.service.classify(
            model_spec_from_proto(request.model_spec), lambda: _serialized_examples(request.input)
        )
        response = self.protos.classification_pb2.ClassificationResponse()
        _fill_response_spec(response.model_spec, result)
        for row in result.classifications:
            classifications = response.result.classifications.add()
            for label, score in row:
                classifications.classes.add(label=label, score=score)
        return response

    def Classify(self, request, context):  # noqa: N802
        return _call_recorded(
            self.metrics, "Classify", request.model_spec.name, context, self._classify, request
        )

    def _regress(self, request):
        _require_model_spec(request)
        result = self.service.regress(
            model_spec_from_proto(request.model_spec), lambda: _serialized_examples(request.input)
        )
        response = self.protos.regression_pb2.RegressionResponse()
        _fill_response_spec(response.model_spec, result)
        for value in result.regressions:
            response.result.regressions.add(value=value)
        return response

    def Regress(self, request, context):  # noqa: N802
        return _call_recorded(
            self.metrics, "Regress", request.model_spec.name, context, self._regress, request
        )

    def _multi_inference(self, request):
        tasks = [(model_spec_from_proto(t.model_spec), t.method_name) for t in request.tasks]
        results = self.service.multi_inference(
            tasks, lambda: _serialized_examples(request.input)
        )
        response = inference_pb2.MultiInferenceResponse()
        for task, result in zip(request.tasks, results, strict=True):
            entry = response.results.add()
            # MakeModelSpec: the task's name and signature name as given, the served version.
            entry.model_spec.name = task.model_spec.name
            entry.model_spec.signature_name = task.model_spec.signature_name
            entry.model_spec.version.value = result.servable.version
            if result.classifications is not None:
                for row in result.classifications:
                    classifications = entry.classification_result.classifications.add()
                    for label, score in row:
                        classifications.classes.add(label=label, score=score)
            else:
                for value in result.regressions:
                    entry.regression_result.regressions.add(value=value)
        return response

    def MultiInference(self, request, context):  # noqa: N802
        return _call(context, self._multi_inference, request)

    def _model_metadata(self, request):
        _require_model_spec(request)
        return self.service.model_metadata(
            model_spec_from_proto(request.model_spec), list(request.metadata_field)
        )

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _call(context, self._model_metadata, request)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService."""

    def __init__(self, service: PredictionService):
        self.service = service

    def GetModelStatus(self, request, context):  # noqa: N802
        if not request.HasField("model_spec"):
            _abort(context, invalid_argument("Missing ModelSpec"))
        return _call(context, self.service.model_status, model_spec_from_proto(request.model_spec))

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        """model_service_impl.cc: only a model_config_list; the status is both in the
        response and the call's status."""
        response = model_management_pb2.ReloadConfigResponse()
        try:
            if request.config.WhichOneof("config") != "model_config_list":
                raise invalid_argument(
                    "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                    "Only ModelConfigList is currently supported"
                )
            self.service.manager.reload(request.config)
        except ServingError as e:
            logger.error("ReloadConfig failed: %s", e.message)
            response.status.error_code = int(e.code)
            response.status.error_message = e.message
            _abort(context, e)
        return response


class GrpcServer:
    """TF Serving's gRPC services for `service` on host:port (port 0: any free port)."""

    def __init__(
        self,
        service: PredictionService,
        host: str = "0.0.0.0",
        port: int | None = 8500,
        max_workers: int = 64,
        socket_path: str | None = None,
        channel_arguments: str = "",
        metrics: Metrics | None = None,
    ):
        if port is None and not socket_path:
            raise ValueError("the gRPC server needs a port or a unix socket path")
        options = [
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            *parse_channel_arguments(channel_arguments),
        ]
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
            options=options,
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(service, metrics), self._server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(service), self._server
        )
        self._port: int | None = None
        if port is not None:
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            self._port = self._server.add_insecure_port(address)
            if self._port == 0:
                raise OSError(f"cannot bind the gRPC server to {address}")
        self.socket_path = socket_path
        if socket_path:
            # server.cc: "unix:" + the path, relative or absolute.
            if not self._server.add_insecure_port(f"unix:{socket_path}"):
                raise OSError(f"cannot listen on the unix socket {socket_path}")

    @property
    def port(self) -> int | None:
        return self._port

    def start(self) -> None:
        self._server.start()

    def stop(self, grace: float = 2.0) -> None:
        self._server.stop(grace).wait()
