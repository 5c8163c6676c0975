"""Version handling: hot loading under traffic, half-written and broken versions, temp dirs.

These control the server's files, so they always use the built-in server.
"""

from __future__ import annotations

import os
import shutil
import threading
import time

import numpy as np
import pytest
from serving_test_support import MODEL_NAME, SENTENCES

from serving.batching import BatchingOptions
from serving.client import GrpcClient, RestClient
from serving.model_server import ModelServer

pytestmark = pytest.mark.usefixtures("needs_own_server")
POLL_SECONDS = 0.2


def start_server(
    base_path, batching: BatchingOptions | None = None, poll_seconds: float = POLL_SECONDS
) -> ModelServer:
    """A server over `base_path`; `poll_seconds=-1`: no poller, the test calls `poll()`."""
    server = ModelServer(
        MODEL_NAME,
        str(base_path),
        rest_port=0,
        grpc_port=0,
        host="127.0.0.1",
        batching=batching,
        file_system_poll_wait_seconds=poll_seconds,
    )
    return server.start()


def poll(server: ModelServer) -> None:
    """Two polls: enough for the manager to load any version on disk now, since a version
    is loaded once it is unchanged between two consecutive polls."""
    server.manager.poll_once()
    server.manager.poll_once()


def served_version(rest: RestClient, exports, texts=SENTENCES[:2]) -> int:
    """Which export produced the current predictions (1 or 2); fails for anything else."""
    probabilities = [p.probabilities for p in rest.predict(texts)]
    matches = [
        v
        for v in (1, 2)
        if np.allclose(probabilities, exports.reference(v, texts)["probabilities"], atol=1e-5)
    ]
    assert len(matches) == 1, probabilities
    return matches[0]


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def statuses(rest: RestClient) -> dict[str, dict]:
    return {s["version"]: s for s in rest.status()["model_version_status"]}


def states(rest: RestClient) -> dict[str, str]:
    return {version: s["state"] for version, s in statuses(rest).items()}


def test_new_version_is_hot_loaded_while_clients_are_calling(exports, tmp_path):
    base_path = tmp_path / MODEL_NAME
    exports.copy_version(1, base_path)
    server = start_server(base_path, BatchingOptions(max_batch_size=8, batch_timeout_micros=2000))
    texts = SENTENCES[:2]
    expected = {v: exports.reference(v, texts)["probabilities"] for v in (1, 2)}
    observed: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def call(index: int) -> None:
        client = RestClient(server.rest_url, MODEL_NAME)
        while not stop.is_set():
            try:
                probabilities = [p.probabilities for p in client.predict(texts)]
            except BaseException as e:  # noqa: BLE001  (every failure is a test failure)
                errors.append(e)
                continue
            versions = [v for v in (1, 2) if np.allclose(probabilities, expected[v], atol=1e-5)]
            if len(versions) != 1:
                errors.append(AssertionError(f"unexpected outputs {probabilities}"))
            else:
                observed[index].append(versions[0])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: all(len(o) >= 3 for o in observed))
        exports.copy_version(2, base_path)  # the pusher's way: temp dir, then rename
        wait_for(lambda: all(o and o[-1] == 2 for o in observed))
        # A few more calls per client after the switch, to see that none goes back.
        seen = [len(o) for o in observed]
        wait_for(lambda: all(len(o) >= n + 3 for o, n in zip(observed, seen, strict=True)))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    try:
        assert not errors, errors[:3]
        for versions in observed:
            # Every client saw version 1, then version 2, and never went back.
            assert versions[0] == 1 and versions[-1] == 2
            switch = versions.index(2)
            assert set(versions[switch:]) == {2}
        rest = RestClient(server.rest_url, MODEL_NAME)
        assert states(rest) == {"2": "AVAILABLE", "1": "END"}
        grpc_client = GrpcClient(server.grpc_target, MODEL_NAME)
        assert grpc_client.predict_response(texts).model_spec.version.value == 2
        grpc_client.close()
    finally:
        server.stop()


def test_half_written_version_is_ignored_until_complete(exports, tmp_path):
    base_path = tmp_path / MODEL_NAME
    exports.copy_version(1, base_path)
    server = start_server(base_path, poll_seconds=-1)  # each check follows an explicit poll
    rest = RestClient(server.rest_url, MODEL_NAME)
    try:
        # A non-atomic copy of version 2 in progress: half the graph, no variables yet.
        source = exports.paths[2]
        partial = base_path / "2"
        partial.mkdir()
        graph = (source / "saved_model.pb").read_bytes()
        (partial / "saved_model.pb").write_bytes(graph[: len(graph) // 2])
        poll(server)
        assert served_version(rest, exports) == 1
        assert states(rest) == {"1": "AVAILABLE"}

        # The graph is complete but the variables are still being copied.
        (partial / "saved_model.pb").write_bytes(graph)
        (partial / "variables").mkdir()
        shutil.copy(source / "variables" / "variables.index", partial / "variables")
        poll(server)
        assert served_version(rest, exports) == 1
        assert states(rest) == {"1": "AVAILABLE"}

        # Graph, index and assets are complete, the data shard is cut short (a stalled copy).
        shutil.copytree(source / "assets", partial / "assets", dirs_exist_ok=True)
        shards = [n for n in os.listdir(source / "variables") if n.startswith("variables.data-")]
        assert shards
        for name in shards:
            data = (source / "variables" / name).read_bytes()
            (partial / "variables" / name).write_bytes(data[: len(data) // 2])
        poll(server)
        assert served_version(rest, exports) == 1
        status = statuses(rest)
        assert status["1"]["state"] == "AVAILABLE"
        # Ignored as incomplete, or reported as a failed load; never served.
        assert "2" not in status or (
            status["2"]["state"] == "END" and status["2"]["status"]["error_code"] != "OK"
        ), status["2"]

        # The copy finishes: version 2 is loaded (a failed load is retried once files change).
        for name in shards:
            shutil.copy(source / "variables" / name, partial / "variables")
        poll(server)
        assert states(rest) == {"2": "AVAILABLE", "1": "END"}
        assert served_version(rest, exports) == 2
    finally:
        server.stop()


def test_half_written_newer_version_neither_stops_start_up_nor_blocks_older_ones(exports, tmp_path):
    base_path = tmp_path / MODEL_NAME
    exports.copy_version(1, base_path)
    # Version 3's graph is still being written when the server starts.
    (base_path / "3").mkdir()
    graph = (exports.paths[2] / "saved_model.pb").read_bytes()
    (base_path / "3" / "saved_model.pb").write_bytes(graph[: len(graph) // 2])
    server = start_server(base_path, poll_seconds=-1)
    rest = RestClient(server.rest_url, MODEL_NAME)
    try:
        assert states(rest) == {"1": "AVAILABLE"}
        exports.copy_version(2, base_path)
        poll(server)
        assert states(rest) == {"2": "AVAILABLE", "1": "END"}
        assert served_version(rest, exports) == 2
    finally:
        server.stop()


def test_broken_version_is_reported_and_skipped(exports, tmp_path):
    base_path = tmp_path / MODEL_NAME
    exports.copy_version(1, base_path)
    server = start_server(base_path)
    rest = RestClient(server.rest_url, MODEL_NAME)
    try:
        broken = base_path / ".tmp-3"
        shutil.copytree(exports.paths[2], broken)
        for name in os.listdir(broken / "variables"):
            if name.startswith("variables.data"):
                (broken / "variables" / name).write_bytes(b"not a tensor bundle")
        os.rename(broken, base_path / "3")
        wait_for(lambda: states(rest).get("3") == "END")
        status = {s["version"]: s for s in rest.status()["model_version_status"]}
        assert status["3"]["state"] == "END"
        assert status["3"]["status"]["error_code"] != "OK"
        assert "failed" in status["3"]["status"]["error_message"]
        assert status["1"]["state"] == "AVAILABLE"
        assert served_version(rest, exports) == 1
        # Still polling and healthy: a good version after the broken one is loaded.
        exports.copy_version(2, base_path, as_version=4)
        wait_for(lambda: states(rest).get("4") == "AVAILABLE")
        assert served_version(rest, exports) == 2
    finally:
        server.stop()


def test_temporary_and_hidden_directories_are_never_loaded(exports, tmp_path):
    base_path = tmp_path / MODEL_NAME
    exports.copy_version(1, base_path)
    for name in (".tmp-5", "5.partial", "tmp", "-7", "+8"):
        shutil.copytree(exports.paths[2], base_path / name)
    (base_path / "9").write_text("a file, not a directory")
    server = start_server(base_path, poll_seconds=-1)
    rest = RestClient(server.rest_url, MODEL_NAME)
    try:
        poll(server)
        assert states(rest) == {"1": "AVAILABLE"}
        assert served_version(rest, exports) == 1
    finally:
        server.stop()


def test_no_version_yet_answers_404_then_serves_the_first_push(exports, tmp_path):
    base_path = tmp_path / MODEL_NAME  # does not exist yet
    server = start_server(base_path)
    rest = RestClient(server.rest_url, MODEL_NAME)
    try:
        status, body = rest.request(
            "POST", f"/v1/models/{MODEL_NAME}:predict", {"instances": ["a"]}
        )
        assert status == 404 and "Servable not found" in body["error"]
        status, body = rest.request("GET", f"/v1/models/{MODEL_NAME}")
        assert status == 404 and "Could not find any versions" in body["error"]
        exports.copy_version(1, base_path)
        wait_for(lambda: server.manager.current is not None)
        assert served_version(rest, exports) == 1
    finally:
        server.stop()
