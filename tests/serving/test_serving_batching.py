"""Server-side batching: concurrent requests are merged into single model calls."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from serving_test_support import SENTENCES

from serving.batching import BatchingOptions, BatchScheduler
from serving.errors import Code, ServingError
from serving.rest_api import STATS_PATH


class RecordingModel:
    """A real (tiny) model function: doubles its input, remembering each call's batch size."""

    def __init__(self):
        self.batch_sizes: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.entered.set()
        assert self.release.wait(timeout=30), "the test never released the model"
        self.batch_sizes.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2, "first": inputs["x"][:, :1]}


def wait_for_queued_rows(scheduler, rows: int, timeout: float = 30.0) -> None:
    """Waits until exactly `rows` rows wait in the scheduler's queue."""
    deadline = time.monotonic() + timeout
    while scheduler.enqueued_rows != rows:
        assert time.monotonic() < deadline, f"{scheduler.enqueued_rows} rows queued, not {rows}"
        time.sleep(0.005)


def submit_concurrently(
    scheduler, model, requests: list[np.ndarray], release_when_queued: int | None = None
) -> list[dict]:
    """Submits each request from its own thread; returns results (or exceptions) in order.

    With `release_when_queued`, `model` is released once that many rows are queued.
    """
    results: list[dict | BaseException] = [None] * len(requests)  # type: ignore[list-item]
    start = threading.Barrier(len(requests))

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = scheduler.submit("key", model, {"x": requests[index]})
        except BaseException as e:  # noqa: BLE001
            results[index] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    try:
        if release_when_queued is not None:
            wait_for_queued_rows(scheduler, release_when_queued)
    finally:
        if release_when_queued is not None:
            model.release.set()
        for thread in threads:
            thread.join()
    return results


def test_concurrent_requests_are_merged_and_split_back():
    model = RecordingModel()
    model.release.clear()
    scheduler = BatchScheduler(
        BatchingOptions(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1)
    )
    requests = [np.full((1, 3), i, dtype=np.float32) for i in range(8)]
    first = np.full((1, 3), -1, dtype=np.float32)
    try:
        # A first request holds the only batch thread, so all 8 are queued before any runs.
        running = threading.Thread(target=scheduler.submit, args=("key", model, {"x": first}))
        running.start()
        assert model.entered.wait(timeout=30)
        results = submit_concurrently(scheduler, model, requests, release_when_queued=8)
        running.join(timeout=30)
    finally:
        model.release.set()
        scheduler.stop()
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], request * 2)  # each caller gets its own rows
        np.testing.assert_array_equal(result["first"], request[:, :1])
    assert model.batch_sizes == [1, 8]  # the 8 concurrent requests took one model call
    assert scheduler.stats.as_dict()["max_requests_per_call"] == 8


def test_requests_wait_at_most_the_batch_timeout_and_never_exceed_max_batch_size():
    model = RecordingModel()
    scheduler = BatchScheduler(
        BatchingOptions(max_batch_size=4, batch_timeout_micros=50_000, num_batch_threads=1)
    )
    try:
        started = time.monotonic()
        result = scheduler.submit("key", model, {"x": np.ones((1, 2), dtype=np.float32)})
        elapsed = time.monotonic() - started
        results = submit_concurrently(scheduler, model, [np.full((1, 1), i) for i in range(10)])
    finally:
        scheduler.stop()
    np.testing.assert_array_equal(result["y"], [[2, 2]])
    assert 0.04 <= elapsed < 2.0  # a lone request waits for the timeout, then runs alone
    assert max(model.batch_sizes) <= 4
    assert [r["y"][0, 0] for r in results] == [2 * i for i in range(10)]


def test_a_request_larger_than_max_batch_size_is_split():
    model = RecordingModel()
    scheduler = BatchScheduler(
        BatchingOptions(max_batch_size=8, batch_timeout_micros=0, num_batch_threads=1)
    )
    try:
        x = np.arange(20, dtype=np.float32).reshape(20, 1)
        result = scheduler.submit("key", model, {"x": x})
    finally:
        scheduler.stop()
    np.testing.assert_array_equal(result["y"], x * 2)
    assert model.batch_sizes == [8, 8, 4]


def test_batches_are_padded_to_allowed_sizes():
    model = RecordingModel()
    options = BatchingOptions(
        max_batch_size=8, batch_timeout_micros=0, num_batch_threads=1, allowed_batch_sizes=(4, 8)
    )
    scheduler = BatchScheduler(options)
    try:
        result = scheduler.submit("key", model, {"x": np.arange(3, dtype=np.float32).reshape(3, 1)})
    finally:
        scheduler.stop()
    assert model.batch_sizes == [4]
    np.testing.assert_array_equal(result["y"][:, 0], [0, 2, 4])


def test_full_queue_fails_fast_and_model_errors_reach_every_caller():
    model = RecordingModel()
    model.release.clear()  # the model blocks, so requests pile up in the queue
    scheduler = BatchScheduler(
        BatchingOptions(
            max_batch_size=2, batch_timeout_micros=0, num_batch_threads=1, max_enqueued_batches=1
        )
    )
    rows = {"x": np.ones((2, 1))}
    running = threading.Thread(target=scheduler.submit, args=("key", model, rows))
    running.start()
    assert model.entered.wait(timeout=10)
    queued = threading.Thread(target=scheduler.submit, args=("key", model, rows))
    queued.start()
    extra = ThreadPoolExecutor(1)
    try:
        wait_for_queued_rows(scheduler, 2)  # one full batch waits in the queue: its capacity
        # From another thread, so that a request wrongly queued fails the test, not hangs it.
        rejected = extra.submit(scheduler.submit, "key", model, rows)
        with pytest.raises(ServingError) as error:
            rejected.result(timeout=30)
        assert error.value.code == Code.UNAVAILABLE
        assert scheduler.enqueued_rows == 2  # the rejected request left nothing behind
    finally:
        model.release.set()
        extra.shutdown()
    running.join(timeout=30)
    queued.join(timeout=30)
    assert model.batch_sizes == [2, 2]
    scheduler.stop()

    def broken(inputs):
        raise ServingError(Code.INVALID_ARGUMENT, "bad batch")

    scheduler = BatchScheduler(BatchingOptions(max_batch_size=4, batch_timeout_micros=100_000))
    results = submit_concurrently(scheduler, broken, [np.ones((1, 1))] * 3)
    scheduler.stop()
    assert all(isinstance(r, ServingError) and r.message == "bad batch" for r in results)


def test_batching_parameters_file_round_trip():
    text = """
        # TF Serving's format; unknown keys are ignored by the built-in server.
        max_batch_size { value: 64 }
        batch_timeout_micros { value: 500 }
        num_batch_threads { value: 3 }
        max_enqueued_batches { value: 7 }
        thread_pool_name { value: "model_server_batch_threads" }
        allowed_batch_sizes: 16
        allowed_batch_sizes: 64
    """
    options = BatchingOptions.from_text_proto(text)
    assert (options.max_batch_size, options.batch_timeout_micros, options.num_batch_threads) == (
        64,
        500,
        3,
    )
    assert options.max_enqueued_batches == 7 and options.allowed_batch_sizes == (16, 64)
    assert BatchingOptions.from_text_proto(options.to_text_proto()) == options
    with pytest.raises(ValueError):
        BatchingOptions.from_text_proto("max_batch_size { value: 8 } garbage")
    with pytest.raises(ValueError):
        BatchingOptions(max_batch_size=8, allowed_batch_sizes=(4, 6))


def test_server_merges_concurrent_http_requests(target, rest, exports, needs_own_server):
    """The session server batches (max 16 rows, one batch thread): 12 concurrent single-text
    requests are answered by one model call, visible at /bertpipe/stats."""
    batcher = target.builtin.service.batcher
    assert batcher.options.num_batch_threads == 1 and batcher.options.max_batch_size >= 12
    # A blocking call holds the only batch thread, so all 12 requests are queued before any
    # model call (no timing window to hit).
    blocker = RecordingModel()
    blocker.release.clear()
    blocking = threading.Thread(
        target=batcher.submit, args=("blocker", blocker, {"x": np.ones((1, 1))})
    )
    blocking.start()
    texts = (SENTENCES * 2)[:12]
    results: dict[int, object] = {}

    def call(index: int) -> None:
        from serving.client import RestClient

        client = RestClient(target.rest_url, target.model)
        results[index] = client.predict([texts[index]])[0]
        client.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
    try:
        assert blocker.entered.wait(timeout=30)
        before = rest.request("GET", STATS_PATH)[1]  # after the blocker's call was counted
        for thread in threads:
            thread.start()
        wait_for_queued_rows(batcher, len(texts))
    finally:
        blocker.release.set()
        blocking.join(timeout=30)
        for thread in threads:
            if thread.ident is not None:  # started
                thread.join()
    after = rest.request("GET", STATS_PATH)[1]
    requests = after["requests"] - before["requests"]
    calls = after["model_calls"] - before["model_calls"]
    assert requests == len(texts)
    assert calls == 1, (before, after)
    merged = after["model_calls_by_batch_rows"].get("12", 0)
    assert merged - before["model_calls_by_batch_rows"].get("12", 0) == 1, (before, after)
    assert after["max_requests_per_call"] >= len(texts)
    reference = exports.reference(2, texts)
    np.testing.assert_allclose(
        [results[i].probabilities for i in range(len(texts))], reference["probabilities"], atol=1e-5
    )
