"""bertpipe's built-in model server: TF Serving's REST and gRPC APIs for one model.

Used by `bertpipe serve` when no `tensorflow_model_server` binary is installed, and directly
in tests and benchmarks:

>>> with ModelServer("sst2", "serving_models/sst2", rest_port=0, grpc_port=0,
...                  host="127.0.0.1") as server:  # doctest: +SKIP
...     print(server.rest_url, server.grpc_target)
"""

from __future__ import annotations

import logging

from serving.batching import BatchingOptions
from serving.grpc_api import GrpcServer
from serving.model_manager import ModelManager
from serving.prediction_service import PredictionService
from serving.rest_api import RestServer

logger = logging.getLogger(__name__)


class ModelServer:
    """Serves the newest version under `model_base_path` as `model_name`.

    Args:
        rest_port / grpc_port: ports to listen on; 0 picks a free port, None disables that API.
        host: interface to bind (TF Serving binds all interfaces: "0.0.0.0").
        batching: merge concurrent requests into model calls (None: one call per request).
        file_system_poll_wait_seconds: how often to look for new versions (<= 0: never after
            start-up).
        version_labels: label -> version, for `/labels/{label}` requests.
    """

    def __init__(
        self,
        model_name: str,
        model_base_path: str,
        rest_port: int | None = 8501,
        grpc_port: int | None = 8500,
        host: str = "0.0.0.0",
        batching: BatchingOptions | None = None,
        file_system_poll_wait_seconds: float = 1.0,
        version_labels: dict[str, int] | None = None,
    ):
        if rest_port is None and grpc_port is None:
            raise ValueError("enable at least one of the REST and gRPC APIs")
        self.model_name = model_name
        self.host = host
        self.manager = ModelManager(
            model_name,
            model_base_path,
            poll_wait_seconds=file_system_poll_wait_seconds,
            version_labels=version_labels,
        )
        self.service = PredictionService(self.manager, batching)
        self._rest_port, self._grpc_port = rest_port, grpc_port
        self._rest: RestServer | None = None
        self._grpc: GrpcServer | None = None

    def start(self) -> ModelServer:
        """Loads the newest version (blocking), then opens the ports."""
        self.manager.start()
        try:
            if self._rest_port is not None:
                self._rest = RestServer(self.service, self.host, self._rest_port)
                self._rest.start()
            if self._grpc_port is not None:
                self._grpc = GrpcServer(self.service, self.host, self._grpc_port)
                self._grpc.start()
        except Exception:
            self.stop()
            raise
        logger.info(
            "Serving %s (version %s) from %s: REST %s, gRPC %s",
            self.model_name,
            self.manager.current.version if self.manager.current else "none yet",
            self.manager.base_path,
            self.rest_url or "off",
            self.grpc_target or "off",
        )
        return self

    def stop(self) -> None:
        if self._rest is not None:
            self._rest.stop()
        if self._grpc is not None:
            self._grpc.stop()
        self.manager.stop()
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
        return f"{self._client_host}:{self._grpc.port}" if self._grpc else None

    def stats(self) -> dict:
        """Model-call counters (also at GET /bertpipe/stats)."""
        return self.service.stats.as_dict()
