"""Fixtures for the serving tests: two real exported model versions and real servers.

Tests talk to servers over real sockets on 127.0.0.1. When `TF_SERVING_REST` and/or
`TF_SERVING_GRPC` point at a running TF Serving (model `TF_SERVING_MODEL`, default "sst2",
exported with `serving.export`), the API tests run against it instead; tests that must
control the server's files or compare with the locally exported models are skipped then.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from serving_test_support import MODEL_NAME, Exports, export_version, real_tf_serving


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> Exports:
    root = tmp_path_factory.mktemp("exports")
    paths = {}
    for version in (1, 2):
        paths[version] = root / str(version)
        export_version(version, str(paths[version]))
    return Exports(root, paths)


@pytest.fixture
def needs_own_server():
    """Skips a test that controls the server's files or compares with the local exports."""
    if real_tf_serving():
        pytest.skip("runs only against the built-in server (TF_SERVING_REST/GRPC is set)")


@pytest.fixture(scope="session")
def builtin_server(exports, tmp_path_factory):
    """A built-in server (batching on) over a base path holding versions 1 and 2."""
    from serving.batching import BatchingOptions
    from serving.model_server import ModelServer

    base_path = tmp_path_factory.mktemp("serving_models") / MODEL_NAME
    exports.copy_version(1, base_path)
    exports.copy_version(2, base_path)
    server = ModelServer(
        MODEL_NAME,
        str(base_path),
        rest_port=0,
        grpc_port=0,
        host="127.0.0.1",
        batching=BatchingOptions(
            max_batch_size=16, batch_timeout_micros=20_000, num_batch_threads=1
        ),
        file_system_poll_wait_seconds=-1,
    )
    server.start()
    yield server
    server.stop()


@dataclass
class Target:
    """Where the API tests send requests."""

    rest_url: str | None
    grpc_target: str | None
    model: str
    builtin: object | None  # the ModelServer, when it is ours


@pytest.fixture(scope="session")
def target(request) -> Target:
    if real_tf_serving():
        return Target(
            os.environ.get("TF_SERVING_REST"),
            os.environ.get("TF_SERVING_GRPC"),
            os.environ.get("TF_SERVING_MODEL", MODEL_NAME),
            None,
        )
    server = request.getfixturevalue("builtin_server")
    return Target(server.rest_url, server.grpc_target, MODEL_NAME, server)


@pytest.fixture
def rest(target):
    from serving.client import RestClient

    if not target.rest_url:
        pytest.skip("no REST API to test (TF_SERVING_GRPC only)")
    client = RestClient(target.rest_url, target.model)
    yield client
    client.close()


@pytest.fixture
def grpc_client(target):
    from serving.client import GrpcClient

    if not target.grpc_target:
        pytest.skip("no gRPC API to test (TF_SERVING_REST only)")
    client = GrpcClient(target.grpc_target, target.model)
    yield client
    client.close()
