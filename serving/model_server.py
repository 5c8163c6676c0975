"""bertpipe's built-in model server: TF Serving's REST and gRPC APIs for one or more models.

Used by `bertpipe serve` when no `tensorflow_model_server` binary is installed, and directly
in tests and benchmarks:

>>> with ModelServer("sst2", "serving_models/sst2", rest_port=0, grpc_port=0,
...                  host="127.0.0.1") as server:  # doctest: +SKIP
...     print(server.rest_url, server.grpc_target)

Several models (each with a version policy and version labels) come from a TF Serving
ModelServerConfig, passed as `model_config` or read from `model_config_file`, which is
re-read every `model_config_file_poll_wait_seconds` (TF Serving's
--model_config_file_poll_wait_seconds; 0: read once).
"""

from __future__ import annotations

import functools
import logging
import os
import threading

from serving import server_config
from serving.batching import BatchingOptions
from serving.errors import ServingError
from serving.grpc_api import GrpcServer
from serving.model_manager import ModelManager, ServerCore, load_and_warm_up
from serving.monitoring import Metrics, metrics_path
from serving.prediction_service import PredictionService
from serving.rest_api import DEFAULT_MAX_BODY_BYTES, RestServer

logger = logging.getLogger(__name__)


class ModelServer:
    """Serves `model_base_path` as `model_name` (its newest version), or the models of a
    ModelServerConfig.

    Args:
        model_name / model_base_path: one model, TF Serving's --model_name/--model_base_path
            (ignored when a model config is given, as in TF Serving).
        rest_port / grpc_port: ports to listen on; 0 picks a free port, None disables that API.
        host: interface to bind (TF Serving binds all interfaces: "0.0.0.0").
        batching: merge concurrent requests into model calls (None: one call per request).
        file_system_poll_wait_seconds: how often to look for new versions (<= 0: never after
            start-up).
        version_labels: label -> version of the one model, for `/labels/{label}` requests
            (as in TF Serving, labels given at start-up need
            `allow_version_labels_for_unavailable_models`).
        model_config / model_config_file: a ModelServerConfig proto, or its text file.
        model_config_file_poll_wait_seconds: re-read the file this often (<= 0: never).
        monitoring_config: a MonitoringConfig (serving.monitoring): Prometheus metrics on the
            REST port.
        grpc_socket_path: also serve gRPC on this unix socket (grpc_port may then be None).
        grpc_channel_arguments: TF Serving's "key=value,..." gRPC server arguments.
        grpc_max_threads: gRPC worker threads.
        rest_api_num_threads / rest_api_timeout_in_ms: see serving.rest_api.RestServer.
        rest_api_enable_cors_support: CORS headers on every REST response.
        rest_api_max_body_bytes: larger REST request bodies are a 400, refused unread (0: no
            limit; TF Serving has none, see serving.rest_api.DEFAULT_MAX_BODY_BYTES).
        allow_version_labels_for_unavailable_models: as TF Serving's flag.
        enable_model_warmup, num_request_iterations_for_warmup: as TF Serving's flags:
            replay each version's warm-up requests (`serving.warmup`) before it serves.
    """

    def __init__(
        self,
        model_name: str | None = None,
        model_base_path: str | None = None,
        rest_port: int | None = 8501,
        grpc_port: int | None = 8500,
        host: str = "0.0.0.0",
        batching: BatchingOptions | None = None,
        file_system_poll_wait_seconds: float = 1.0,
        version_labels: dict[str, int] | None = None,
        *,
        model_config=None,
        model_config_file: str | None = None,
        model_config_file_poll_wait_seconds: float = 0,
        monitoring_config=None,
        grpc_socket_path: str | None = None,
        grpc_channel_arguments: str = "",
        grpc_max_threads: int = 64,
        rest_api_num_threads: int | None = None,
        rest_api_timeout_in_ms: int | None = None,
        rest_api_enable_cors_support: bool = False,
        rest_api_max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        allow_version_labels_for_unavailable_models: bool = False,
        enable_model_warmup: bool = True,
        num_request_iterations_for_warmup: int = 1,
    ):
        if rest_port is None and grpc_port is None and not grpc_socket_path:
            raise ValueError("enable at least one of the REST and gRPC APIs")
        self.host = host
        self.model_config_file = model_config_file
        self._config_poll_seconds = model_config_file_poll_wait_seconds
        if model_config_file:
            model_config = server_config.read_model_server_config(model_config_file)
        if model_config is None:
            if not model_base_path:
                raise ValueError("give a model base path or a model config")
            model_config = server_config.single_model_config(
                model_name or "default", model_base_path
            )
            for label, version in (version_labels or {}).items():
                model_config.model_config_list.config[0].version_labels[label] = version
        self.core = ServerCore(
            model_config,
            load_servable=functools.partial(
                load_and_warm_up, enable_warmup=enable_model_warmup,
                warmup_iterations=num_request_iterations_for_warmup),
            file_system_poll_wait_seconds=file_system_poll_wait_seconds,
            allow_version_labels_for_unavailable_models=allow_version_labels_for_unavailable_models,
        )
        first = model_config.model_config_list.config
        self.model_name = first[0].name if first else None
        self.metrics = Metrics()
        self.metrics_path = metrics_path(monitoring_config)
        self.service = PredictionService(self.core, batching)
        self._rest_options = dict(
            num_threads=rest_api_num_threads,
            timeout_ms=rest_api_timeout_in_ms,
            metrics=self.metrics,
            metrics_path=self.metrics_path,
            cors=rest_api_enable_cors_support,
            max_body_bytes=rest_api_max_body_bytes,
        )
        self._grpc_options = dict(
            max_workers=grpc_max_threads,
            socket_path=grpc_socket_path,
            channel_arguments=grpc_channel_arguments,
            metrics=self.metrics,
        )
        self._rest_port, self._grpc_port = rest_port, grpc_port
        self._rest: RestServer | None = None
        self._grpc: GrpcServer | None = None
        self._stop = threading.Event()
        self._config_thread: threading.Thread | None = None
        self._config_mtime: int | None = None

    @property
    def manager(self) -> ModelManager | None:
        """The first configured model's manager (the one model of --model_base_path)."""
        return self.core.managers.get(self.model_name) if self.model_name else None

    def start(self) -> ModelServer:
        """Loads the configured versions (blocking), then opens the ports."""
        try:
            self.core.start()
        except Exception:
            self.core.stop()
            raise
        try:
            if self._rest_port is not None:
                self._rest = RestServer(
                    self.service, self.host, self._rest_port, **self._rest_options
                )
                self._rest.start()
            if self._grpc_port is not None or self._grpc_options["socket_path"]:
                self._grpc = GrpcServer(
                    self.service, self.host, self._grpc_port, **self._grpc_options
                )
                self._grpc.start()
        except Exception:
            self.stop()
            raise
        if self.model_config_file and self._config_poll_seconds > 0:
            self._config_mtime = _mtime(self.model_config_file)
            self._config_thread = threading.Thread(
                target=self._poll_config, name="model-config-poller", daemon=True
            )
            self._config_thread.start()
        for name, manager in self.core.managers.items():
            logger.info(
                "Serving %s (versions %s) from %s", name, manager.loaded_versions or "none yet",
                manager.base_path,
            )  # fmt: skip
        logger.info("REST %s, gRPC %s", self.rest_url or "off", self.grpc_target or "off")
        return self

    def _poll_config(self) -> None:
        """server.cc PollFilesystemAndReloadConfig: re-read the file and reload; a file that
        does not parse or a reload that fails is logged and the running config stays."""
        while not self._stop.wait(self._config_poll_seconds):
            try:
                self.reload_config_file()
            except Exception:  # noqa: BLE001  (the poller must survive a bad file)
                logger.exception("Reloading %s failed", self.model_config_file)

    def reload_config_file(self) -> bool:
        """Re-reads the model config file and applies it if it changed; True if applied."""
        mtime = _mtime(self.model_config_file)
        config = server_config.read_model_server_config(self.model_config_file)
        if config == self.core.config and mtime == self._config_mtime:
            return False
        try:
            self.core.reload(config)
        except ServingError as e:
            logger.error("Failed to reload %s: %s", self.model_config_file, e.message)
            return False
        finally:
            self._config_mtime = mtime
        logger.info("Reloaded model config %s", self.model_config_file)
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._config_thread is not None:
            self._config_thread.join(timeout=60)
        if self._rest is not None:
            self._rest.stop()
        if self._grpc is not None:
            self._grpc.stop()
        self.core.stop()
        self.service.close()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def rest_url(self) -> str | None:
        return f"http://{self._client_host}:{self._rest.port}" if self._rest else None

    @property
    def grpc_target(self) -> str | None:
        """host:port, or unix:PATH when gRPC listens on a unix socket only."""
        if self._grpc is None:
            return None
        if self._grpc.port is None:
            return f"unix:{self._grpc.socket_path}"
        return f"{self._client_host}:{self._grpc.port}"

    def stats(self) -> dict:
        """Model-call counters (also at GET /bertpipe/stats)."""
        return self.service.stats.as_dict()


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None
