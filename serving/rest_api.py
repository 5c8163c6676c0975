"""TF Serving's REST API (`/v1/models/...`) on the standard library's ThreadingHTTPServer.

Routes, regular expressions, status codes and bodies follow TF Serving's
`http_rest_api_handler.cc` / `http_rest_api_util.cc` / `http_server.cc`:

    GET  /v1/models/{name}[/versions/{v} | /labels/{l}]            -> model status
    GET  /v1/models/{name}[/versions/{v} | /labels/{l}]/metadata   -> signature defs
    POST /v1/models/{name}[/versions/{v} | /labels/{l}]:predict    -> {"predictions"|"outputs"}
    POST /v1/models/{name}[/versions/{v} | /labels/{l}]:classify   -> {"results": [[[label, score]]]}
    POST /v1/models/{name}[/versions/{v} | /labels/{l}]:regress    -> {"results": [...]}

Other `/v1/...` requests are "Malformed request" (400); paths outside `/v1/` are 404. Every
error body is `{"error": "<message>"}`. The model name is URL-decoded and then only compared
with the served name, never used as a path.

`OPTIONS /v1/...` is answered as http_server.cc does (200 with an empty body when the
`Origin` header names an http(s) origin, else 400 FAILED_PRECONDITION with an empty body);
with `cors=True` (`--rest_api_enable_cors_support`) every `/v1/` response carries TF
Serving's three Access-Control-Allow-* headers. With a monitoring config, Prometheus metrics
are served at its path (`serving/monitoring.py`) and every `/v1/` request is counted and
timed as TF Serving counts it. `num_threads` / `timeout_ms` are `--rest_api_num_threads` /
`--rest_api_timeout_in_ms`: requests run on that many threads, and a predict, classify or
regress call that takes longer answers 504 DEADLINE_EXCEEDED (the model call itself runs
to its end, as a session run past its deadline cannot be interrupted here).

One addition outside TF Serving's namespace: `GET /bertpipe/stats` returns the batching
counters (model calls, requests and rows merged per call), used by tests and benchmarks.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.parse
from concurrent import futures
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format

from serving import json_tensor
from serving.errors import Code, ServingError, invalid_argument
from serving.model_manager import ModelSpec
from serving.monitoring import Metrics
from serving.prediction_service import PredictionService
from serving.protos import serving_protos

logger = logging.getLogger(__name__)

_PATH = re.compile(r"/v1/.*", re.IGNORECASE)
_PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_MODEL_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
STATS_PATH = "/bertpipe/stats"
# http_rest_api_util.cc AddCORSHeaders.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}
# What a Session::Run past its RunOptions deadline answers (TF's DirectSession).
DEADLINE_MESSAGE = "Timed out waiting for notification"
_MAX_INT64 = 2**63 - 1


def _message_to_dict(message, preserve_names: bool) -> dict:
    """MessageToDict printing default-valued fields, as TF Serving's JSON printer does."""
    try:
        return json_format.MessageToDict(
            message,
            preserving_proto_field_name=preserve_names,
            including_default_value_fields=True,
        )
    except TypeError:  # protobuf >= 5.26 renamed the option
        return json_format.MessageToDict(
            message,
            preserving_proto_field_name=preserve_names,
            always_print_fields_with_no_presence=True,
        )


def model_status_json(response) -> dict:
    return _message_to_dict(response, preserve_names=False)


def model_metadata_json(response) -> dict:
    """{"model_spec": ..., "metadata": {"signature_def": SignatureDefMap}} like TF Serving."""
    signature_map = serving_protos().get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return {
        "model_spec": _message_to_dict(response.model_spec, preserve_names=True),
        "metadata": {"signature_def": _message_to_dict(signature_map, preserve_names=True)},
    }


def _model_spec(
    name: str, version: str | None, label: str | None, signature_name: str = ""
) -> ModelSpec:
    parsed_version = None
    if version:
        parsed_version = int(version)
        if parsed_version > _MAX_INT64:
            raise invalid_argument(f"Failed to convert version: {version} to numeric.")
    decoded_label = urllib.parse.unquote(label) if label else None
    return ModelSpec(
        urllib.parse.unquote(name or ""), parsed_version, decoded_label, signature_name
    )


def request_model_and_api(method: str, path: str) -> tuple[str, str]:
    """(model name, API) as TF Serving's ParseModelInfo fills them for the metrics."""
    if method == "POST":
        match = _PREDICTION_PATH.fullmatch(path)
        if match:
            return urllib.parse.unquote(match.group(1)), match.group(4)
    elif method == "GET":
        match = _MODEL_STATUS_PATH.fullmatch(path)
        if match:
            return urllib.parse.unquote(match.group(1) or ""), ""
    return "", ""


class RestApi:
    """Request -> (HTTP status, JSON body) for TF Serving's REST API."""

    def __init__(self, service: PredictionService, metrics: Metrics | None = None):
        self.service = service
        self.metrics = metrics

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        start = time.perf_counter()
        try:
            reply, code = (200, self._dispatch(method, path, body)), Code.OK
        except ServingError as e:
            reply, code = (e.http_status, {"error": e.message}), e.code
        except RecursionError:  # a value too deep for some step: the client's input, not a bug
            reply = (400, {"error": "JSON value is nested too deeply to process"})
            code = Code.INVALID_ARGUMENT
        except Exception as e:  # noqa: BLE001  (a bug must still answer the client)
            logger.exception("Internal error on %s %s", method, path)
            reply, code = (500, {"error": f"Internal error: {e}"}), Code.INTERNAL
        self.record(method, path, code, start)
        return reply

    def record(self, method: str, path: str, code: Code, start: float) -> None:
        """http_server.cc: latency of successful requests (API = the POST verb, empty for
        GETs), and a count per status for every request."""
        if self.metrics is None:
            return
        model_name, api = request_model_and_api(method, path)
        if code == Code.OK:
            self.metrics.record_latency(
                model_name, api, "REST", (time.perf_counter() - start) * 1e6
            )
        self.metrics.record_request(model_name, code.name)

    def _dispatch(self, method: str, path: str, body: bytes) -> dict:
        if method == "POST":
            match = _PREDICTION_PATH.fullmatch(path)
            if match:
                name, version, label, verb = match.groups()
                return self._post(verb.lower(), _model_spec(name, version, label), body)
        elif method == "GET":
            match = _MODEL_STATUS_PATH.fullmatch(path)
            if match:
                name, version, label, metadata = match.groups()
                spec = _model_spec(name, version, label)
                if not spec.name:
                    raise invalid_argument("Missing model name in request.")
                if metadata:
                    return model_metadata_json(self.service.model_metadata(spec))
                return model_status_json(self.service.model_status(spec))
        raise invalid_argument(f"Malformed request: {method} {path}")

    def _post(self, verb: str, spec: ModelSpec, body: bytes) -> dict:
        document = json_tensor.parse_json_object(body)
        spec = ModelSpec(
            spec.name, spec.version, spec.version_label, json_tensor.signature_name_of(document)
        )
        if spec.version is not None and spec.version_label is not None:
            raise invalid_argument(
                f"Both model version ({spec.version}) and model version label "
                f"({spec.version_label}) cannot be supplied."
            )
        if verb == "predict":
            servable = self.service.manager.servable_for(spec)
            signature_name = spec.signature_name or "serving_default"
            if signature_name not in servable.signature_names:
                raise invalid_argument(
                    f'Serving signature name: "{signature_name}" not found in signature def'
                )
            specs = servable.input_specs(signature_name)
            inputs, request_format = json_tensor.predict_request_to_arrays(
                document, {alias: s.dtype for alias, s in specs.items()}
            )
            result = self.service.predict(spec, inputs, servable=servable)
            return json_tensor.predict_response_json(result.outputs, request_format)
        examples = json_tensor.examples_request_to_serialized(
            document, serving_protos().example_pb2, verb
        )
        if verb == "classify":
            return json_tensor.classify_response_json(
                self.service.classify(spec, examples).classifications
            )
        return json_tensor.regress_response_json(self.service.regress(spec, examples).regressions)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    server_version = "bertpipe-model-server"
    timeout = 120  # seconds an idle keep-alive connection may hold a thread

    def log_message(self, format: str, *args) -> None:  # noqa: A002  (stdlib signature)
        logger.debug("%s - %s", self.address_string(), format % args)

    def _read_body(self) -> bytes:
        """The request body; BodyTooLarge (before reading it) when over the server's limit."""
        limit = getattr(self.server, "max_body_bytes", 0)
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                total += size
                if limit and total > limit:
                    raise BodyTooLarge(f"more than {limit}", limit)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if limit and length > limit:
            raise BodyTooLarge(str(length), limit)
        return self.rfile.read(length) if length > 0 else b""

    def _reply(
        self,
        status: int,
        payload: dict | None,
        content_type: str = "application/json",
        text: str | None = None,
    ) -> None:
        """`payload` as JSON, or `text`, or (both None) an empty body without a type."""
        if text is not None:
            body = text.encode("utf-8")
        elif payload is not None:
            body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        else:
            body = b""
        self.send_response(status)
        if payload is not None or text is not None:
            self.send_header("Content-Type", content_type)
        if self.server.cors and _PATH.fullmatch(urllib.parse.urlsplit(self.path).path):  # type: ignore[attr-defined]
            for name, value in CORS_HEADERS.items():
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _options(self, api: RestApi, path: str) -> None:
        """http_server.cc: a CORS preflight needs an http(s) Origin; no body either way."""
        start = time.perf_counter()
        if re.search(r"https?://", self.headers.get("Origin", "")):
            code = Code.OK
        else:
            code = Code.FAILED_PRECONDITION  # "Origin header is missing in CORS preflight"
        api.record("OPTIONS", path, code, start)
        self._reply(200 if code == Code.OK else 400, None)

    def _run(self, api: RestApi, path: str, body: bytes) -> tuple[int, dict]:
        """The request on the server's executor (its --rest_api_num_threads), within its
        --rest_api_timeout_in_ms for model calls; inline when neither is set."""
        server = self.server
        executor: futures.ThreadPoolExecutor | None = server.executor  # type: ignore[attr-defined]
        if executor is None:
            return api.handle(self.command, path, body)
        future = executor.submit(api.handle, self.command, path, body)
        timeout_ms = server.timeout_ms  # type: ignore[attr-defined]
        if not timeout_ms or self.command != "POST":
            return future.result()
        try:
            return future.result(timeout=timeout_ms / 1000)
        except futures.TimeoutError:
            api.record(self.command, path, Code.DEADLINE_EXCEEDED, time.perf_counter())
            return 504, {"error": DEADLINE_MESSAGE}

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except BodyTooLarge as e:
            # Refused unread; the connection closes, as the rest of the body is not consumed.
            self.close_connection = True
            self._reply(400, {"error": str(e)})
            return
        except (ValueError, OSError):
            self.close_connection = True
            self._reply(400, {"error": "Malformed request body"})
            return
        path = urllib.parse.urlsplit(self.path).path
        api: RestApi = self.server.api  # type: ignore[attr-defined]
        metrics_path = self.server.metrics_path  # type: ignore[attr-defined]
        if metrics_path is not None and path == metrics_path and api.metrics is not None:
            self._reply(200, None, "text/plain", api.metrics.prometheus_text())
        elif path == STATS_PATH and self.command == "GET":
            self._reply(200, api.service.stats.as_dict())
        elif not _PATH.fullmatch(path):
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"Not found: {path}"})
        elif self.command == "OPTIONS":
            self._options(api, path)
        else:
            self._reply(*self._run(api, path, body))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class BodyTooLarge(Exception):
    """A request body over the server's `max_body_bytes`."""

    def __init__(self, size: str, limit: int):
        super().__init__(
            f"Request body of {size} bytes is larger than this server's limit of {limit} bytes "
            "(max_body_bytes); send fewer instances per request"
        )


# The default limit on a REST request body. TF Serving has none; the built-in server parses
# JSON into Python objects, so this limit is what bounds the memory one request can take:
# measured, a body of 8 MiB of one-character instances (2.1 million rows, the worst case per
# byte) took the server's peak RSS 1.5 GB over its baseline; 200,000 sentences (4 MB), 170 MB.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not block shutdown
    block_on_close = False
    request_queue_size = 1024  # listen() backlog: bursts of new clients are not dropped


class RestServer:
    """TF Serving's REST API for `service` on host:port (port 0: any free port)."""

    def __init__(
        self,
        service: PredictionService,
        host: str = "0.0.0.0",
        port: int = 8501,
        num_threads: int | None = None,
        timeout_ms: int | None = None,
        metrics: Metrics | None = None,
        metrics_path: str | None = None,
        cors: bool = False,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ):
        """`max_body_bytes`: a larger request body is a 400, refused unread (0: no limit)."""
        self._httpd = _HttpServer((host, port), _RequestHandler)
        self._httpd.max_body_bytes = max_body_bytes  # type: ignore[attr-defined]
        self._httpd.api = RestApi(service, metrics)  # type: ignore[attr-defined]
        self._httpd.metrics_path = metrics_path  # type: ignore[attr-defined]
        self._httpd.cors = cors  # type: ignore[attr-defined]
        self._httpd.timeout_ms = timeout_ms  # type: ignore[attr-defined]
        self._executor = (
            futures.ThreadPoolExecutor(num_threads or 64, thread_name_prefix="rest")
            if num_threads or timeout_ms
            else None
        )
        self._httpd.executor = self._executor  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="rest-server", daemon=True
        )

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
