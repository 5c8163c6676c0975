"""One request must not take the server down (issue 12, item 6), over HTTP on 127.0.0.1.

* A request body over the server's limit (`rest_api_max_body_bytes`) is a 400 naming the
  limit, refused before it is read or parsed. TF Serving has no such limit.
* With batching, a request with more rows than max_batch_size is split into batches
  (`enable_large_batch_splitting`, the built-in default) as long as it fits the queue
  (max_enqueued_batches x max_batch_size rows); a larger one, or any request over
  max_batch_size with splitting off, is a 400 with TF's "Task size N is larger than maximum
  input batch size M".
* Without batching, a request runs as session runs of at most Servable.MAX_ROWS_PER_RUN rows.
* The memory test sends one request of 200,000 short instances to a server in its own
  process and bounds that process's peak RSS (VmHWM).

These tests control the server's options, so they run against the built-in server only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from serving_test_support import REPO, SENTENCES

TESTDATA = Path(__file__).parent / "testdata"
HALF_PLUS_TWO = str(TESTDATA / "saved_model_half_plus_two_cpu")


def post(url: str, body: bytes | dict, timeout: float = 120) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def start_server(base_path: str = HALF_PLUS_TWO, **options):
    from serving.model_server import ModelServer

    return ModelServer(
        "m",
        base_path,
        rest_port=0,
        grpc_port=None,
        host="127.0.0.1",
        file_system_poll_wait_seconds=-1,
        **options,
    ).start()


def test_a_body_over_the_limit_is_refused_before_parsing(needs_own_server):
    server = start_server(rest_api_max_body_bytes=1000)
    try:
        url = f"{server.rest_url}/v1/models/m:predict"
        small = {"instances": [1.0] * 100}  # 500 bytes
        assert post(url, small) == (200, {"predictions": [2.5] * 100})
        # Not even JSON: refused on its Content-Length alone.
        status, body = post(url, b"x" * 1001)
        assert status == 400
        assert "1001 bytes is larger than this server's limit of 1000 bytes" in body["error"]
        status, body = post(url, {"instances": [1.0] * 1000})
        assert status == 400 and "limit of 1000 bytes" in body["error"]
        # The server is fine afterwards.
        assert post(url, small)[0] == 200
    finally:
        server.stop()


def test_batching_splits_large_requests_up_to_the_queue_and_refuses_larger(needs_own_server):
    from serving.batching import BatchingOptions

    options = BatchingOptions(
        max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1, max_enqueued_batches=2
    )
    server = start_server(batching=options)
    try:
        url = f"{server.rest_url}/v1/models/m:predict"
        values = [float(i) for i in range(8)]
        status, body = post(url, {"instances": [[v] for v in values]})
        assert (status, body) == (200, {"predictions": [[0.5 * v + 2] for v in values]})
        assert server.stats()["model_calls_by_batch_rows"] == {"4": 2}
        status, body = post(url, {"instances": [[v] for v in values + [8.0]]})
        assert status == 400
        assert body["error"].startswith("Task size 9 is larger than maximum input batch size 8")
    finally:
        server.stop()


def test_without_large_batch_splitting_a_request_over_max_batch_size_is_refused(
    needs_own_server,
):
    from serving.batching import BatchingOptions

    options = BatchingOptions(
        max_batch_size=4, batch_timeout_micros=0, enable_large_batch_splitting=False
    )
    assert "enable_large_batch_splitting { value: false }" in options.to_text_proto()
    server = start_server(batching=options)
    try:
        url = f"{server.rest_url}/v1/models/m:predict"
        assert post(url, {"instances": [[1.0]] * 4})[0] == 200
        assert post(url, {"instances": [[1.0]] * 5}) == (
            400,
            {"error": "Task size 5 is larger than maximum input batch size 4"},
        )
    finally:
        server.stop()


def test_an_unbatched_request_larger_than_one_session_run_is_answered_whole(needs_own_server):
    from serving.servable import Servable

    rows = 2 * Servable.MAX_ROWS_PER_RUN + 3
    server = start_server()
    try:
        status, body = post(
            f"{server.rest_url}/v1/models/m:predict", {"inputs": [[float(i)] for i in range(rows)]}
        )
        assert (status, body) == (200, {"outputs": [[0.5 * i + 2] for i in range(rows)]})
    finally:
        server.stop()


# --- memory: one request of 200,000 instances ------------------------------------------------

# The built-in server in its own process: the sst2 export without batching (as `bertpipe
# serve` starts by default) and with batching (max_batch_size 32, 100 batches queued), and a
# model whose activations are wide (8 KB a row: 1.6 GB for 200,000 rows in one session run).
SERVER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from serving.batching import BatchingOptions
    from serving.model_server import ModelServer

    kwargs = dict(rest_port=0, grpc_port=None, host="127.0.0.1", file_system_poll_wait_seconds=-1)
    plain = ModelServer("sst2", sys.argv[1], **kwargs).start()
    batched = ModelServer("sst2", sys.argv[1], batching=BatchingOptions(), **kwargs).start()
    wide = ModelServer("wide", sys.argv[2], **kwargs).start()
    urls = {"plain": plain.rest_url, "batched": batched.rest_url, "wide": wide.rest_url}
    print(json.dumps(urls), flush=True)
    sys.stdin.read()  # until the test closes our stdin
    """
)


def export_wide_model(export_dir: str) -> None:
    import tensorflow as tf

    class Wide(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def serve(self, x):
            wide = tf.tile(x, [1, 2048])  # 8 KB a row, freed after the sum
            return {"y": tf.reduce_sum(wide, axis=1, keepdims=True)}

    module = Wide()
    tf.saved_model.save(module, export_dir, signatures={"serving_default": module.serve})


INSTANCES = 200_000
# Peak RSS the server process may reach over its RSS before the big requests.
PEAK_GROWTH_BOUND_MB = 1000


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set size) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


@pytest.mark.slow  # about 100 s on 2 cores: a server process and 600,000 rows
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_one_request_of_200000_instances_keeps_memory_bounded(exports, tmp_path, needs_own_server):
    base_path = tmp_path / "sst2"
    exports.copy_version(1, base_path)
    export_wide_model(str(tmp_path / "wide" / "1"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, str(base_path), str(tmp_path / "wide")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        cwd=REPO,
        text=True,
    )
    try:
        urls = json.loads(process.stdout.readline())
        plain = f"{urls['plain']}/v1/models/sst2:predict"
        batched = f"{urls['batched']}/v1/models/sst2:predict"
        wide = f"{urls['wide']}/v1/models/wide:predict"
        # Warm: both servers have answered once, so the baseline includes TF's set-up.
        assert post(plain, {"instances": SENTENCES})[0] == 200
        assert post(batched, {"instances": SENTENCES})[0] == 200
        assert post(wide, {"instances": [[1.0]]}) == (200, {"predictions": [[2048.0]]})
        baseline = peak_rss_mb(process.pid)

        texts = [SENTENCES[i % len(SENTENCES)] for i in range(INSTANCES)]
        started = time.monotonic()
        status, body = post(plain, {"instances": texts}, timeout=600)
        seconds = time.monotonic() - started
        assert status == 200, body
        predictions = body["predictions"]
        assert len(predictions) == INSTANCES
        # Split into session runs, the rows still line up with the texts.
        _, small = post(plain, {"instances": SENTENCES})
        for i in (0, 1, 2, INSTANCES - 1):
            assert predictions[i]["label"] == small["predictions"][i % len(SENTENCES)]["label"]

        # With batching, the request is more than the queue holds: a clear 400.
        status, body = post(batched, {"instances": texts}, timeout=600)
        assert status == 400
        assert "Task size 200000 is larger than maximum input batch size 3200" in body["error"]

        # 200,000 rows of 8 KB activations: 256 rows (2 MB) per session run.
        status, body = post(wide, {"instances": [[1.0]] * INSTANCES}, timeout=600)
        assert (status, len(body["predictions"])) == (200, INSTANCES)
        assert body["predictions"][-1] == [2048.0]

        peak = peak_rss_mb(process.pid)
        print(
            f"server RSS: {baseline:.0f} MB before, peak {peak:.0f} MB after {INSTANCES} "
            f"instances ({seconds:.1f} s)"
        )
        assert peak - baseline < PEAK_GROWTH_BOUND_MB
        assert process.poll() is None  # still up
    finally:
        process.stdin.close()
        process.terminate()
        process.wait(timeout=60)
