"""Server-side request batching, modelled on TF Serving's BasicBatchScheduler.

Concurrent requests for the same model version and signature (and compatible input shapes)
are appended to one *open batch*; a batch closes when it reaches `max_batch_size` rows or when
`batch_timeout_micros` has passed since its first request, and one of `num_batch_threads`
threads then runs it as a single model call and splits the outputs back per request. With a
timeout of 0 batching is purely opportunistic: requests that arrive while every batch thread
is busy are merged, none waits for company.

The same parameters are read from and written to TF Serving's `--batching_parameters_file`
text format, so one file configures both servers:

    max_batch_size { value: 32 }
    batch_timeout_micros { value: 1000 }
    num_batch_threads { value: 2 }
    max_enqueued_batches { value: 100 }
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future

import numpy as np

from serving.errors import Code, ServingError, invalid_argument

logger = logging.getLogger(__name__)

RunBatch = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclasses.dataclass
class BatchingOptions:
    """Batching parameters (names and meaning as TF Serving's BatchingParameters)."""

    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    num_batch_threads: int = dataclasses.field(default_factory=lambda: min(4, os.cpu_count() or 1))
    max_enqueued_batches: int = 100
    # Batches are padded up to the next allowed size (the last must equal max_batch_size).
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    # True: a request with more rows than max_batch_size is split into batches of at most
    # max_batch_size rows (up to the queue's capacity, max_enqueued_batches batches).
    # False: such a request is refused (INVALID_ARGUMENT), as TF Serving refuses any request
    # over max_batch_size; TF Serving splits only down to max_execution_batch_size.
    enable_large_batch_splitting: bool = True

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}")
        if self.num_batch_threads < 1:
            raise ValueError(f"num_batch_threads must be >= 1, got {self.num_batch_threads}")
        if self.max_enqueued_batches < 1:
            raise ValueError(f"max_enqueued_batches must be >= 1, got {self.max_enqueued_batches}")
        sizes = tuple(int(s) for s in self.allowed_batch_sizes)
        if sizes and (list(sizes) != sorted(set(sizes)) or sizes[-1] != self.max_batch_size):
            raise ValueError(
                "allowed_batch_sizes must increase and end with max_batch_size "
                f"({self.max_batch_size}), got {list(sizes)}"
            )
        self.allowed_batch_sizes = sizes

    @classmethod
    def from_text_proto(cls, text: str) -> BatchingOptions:
        """Parses TF Serving's batching parameters file (text BatchingParameters)."""
        values: dict[str, object] = {}
        allowed: list[int] = []
        text = re.sub(r"#[^\n]*", "", text)
        pattern = re.compile(r"(\w+)\s*(?:\{\s*value\s*:\s*([^}\s]+)\s*\}|:\s*([^\s{}]+))")
        position = 0
        for match in pattern.finditer(text):
            if text[position : match.start()].strip():
                raise ValueError(
                    f"cannot parse batching parameters near: {text[position : match.start()].strip()!r}"
                )
            position = match.end()
            key, value = match.group(1), (match.group(2) or match.group(3)).strip('"')
            if key == "allowed_batch_sizes":
                allowed.append(int(value))
            elif key in (
                "max_batch_size",
                "batch_timeout_micros",
                "num_batch_threads",
                "max_enqueued_batches",
            ):
                values[key] = int(value)
            elif key in ("pad_variable_length_inputs", "enable_large_batch_splitting"):
                values[key] = value.lower() == "true"
            else:
                # thread_pool_name, max_execution_batch_size, ...: TF Serving only.
                logger.info("Batching parameter %s is not used by the built-in server", key)
        if text[position:].strip():
            raise ValueError(f"cannot parse batching parameters near: {text[position:].strip()!r}")
        return cls(allowed_batch_sizes=tuple(allowed), **values)  # type: ignore[arg-type]

    def to_text_proto(self) -> str:
        lines = [
            f"max_batch_size {{ value: {self.max_batch_size} }}",
            f"batch_timeout_micros {{ value: {self.batch_timeout_micros} }}",
            f"num_batch_threads {{ value: {self.num_batch_threads} }}",
            f"max_enqueued_batches {{ value: {self.max_enqueued_batches} }}",
        ]
        lines += [f"allowed_batch_sizes: {size}" for size in self.allowed_batch_sizes]
        if self.pad_variable_length_inputs:
            lines.append("pad_variable_length_inputs: true")
        if not self.enable_large_batch_splitting:
            lines.append("enable_large_batch_splitting { value: false }")
        return "\n".join(lines) + "\n"


class BatchStats:
    """Counters of model calls, shared by the batched and unbatched paths."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.model_calls = 0
        self.requests = 0
        self.rows = 0
        self.max_requests_per_call = 0
        self.calls_by_size: collections.Counter[int] = collections.Counter()

    def record(self, num_requests: int, num_rows: int) -> None:
        with self._lock:
            self.model_calls += 1
            self.requests += num_requests
            self.rows += num_rows
            self.max_requests_per_call = max(self.max_requests_per_call, num_requests)
            self.calls_by_size[num_rows] += 1

    def as_dict(self) -> dict:
        with self._lock:
            return {
                "model_calls": self.model_calls,
                "requests": self.requests,
                "rows": self.rows,
                "max_requests_per_call": self.max_requests_per_call,
                "model_calls_by_batch_rows": {
                    str(k): v for k, v in sorted(self.calls_by_size.items())
                },
            }


@dataclasses.dataclass
class _Task:
    inputs: dict[str, np.ndarray]
    size: int
    future: Future


@dataclasses.dataclass
class _Batch:
    key: Hashable
    run: RunBatch
    opened_at: float
    tasks: list[_Task] = dataclasses.field(default_factory=list)
    size: int = 0


# What a variable-width output is padded with when the parts of a split request came back with
# different widths: the padding the exports in serving/ use beyond each row's count.
_PADDING_BY_KIND = {"O": b"", "S": b"", "U": "", "f": 0.0, "i": -1, "u": 0, "b": False}


def concatenate_parts(parts: list[np.ndarray]) -> np.ndarray:
    """Joins the outputs of one request that was split across batches, along dim 0.

    A variable-width output (NER's entities, one tag per word) is as wide as the widest row of
    its batch, so the parts of a split request can differ in width. They are padded to the
    widest part with the exports' padding ("" for strings, 0 for floats, -1 for integers), so
    the caller gets the answer an unsplit request would have given.

    >>> concatenate_parts([np.array([[1, 2]]), np.array([[3, 4, 5]])]).tolist()
    [[1, 2, -1], [3, 4, 5]]
    """
    shapes = {part.shape[1:] for part in parts}
    if len(shapes) == 1:
        return np.concatenate(parts)
    if len({len(shape) for shape in shapes}) != 1:
        raise invalid_argument(
            "Batched output tensors must have the same rank, got shapes "
            + ", ".join(str(part.shape) for part in parts)
        )
    widest = tuple(max(sizes) for sizes in zip(*shapes, strict=True))
    padded = []
    for part in parts:
        pad = [(0, 0)] + [(0, full - size) for full, size in zip(widest, part.shape[1:], strict=True)]
        value = _PADDING_BY_KIND.get(part.dtype.kind, 0)
        padded.append(np.pad(part, pad, constant_values=value))
    return np.concatenate(padded)


class BatchScheduler:
    """Merges concurrent `submit` calls with the same key into single `run` calls."""

    def __init__(self, options: BatchingOptions, stats: BatchStats | None = None):
        self.options = options
        self.stats = stats or BatchStats()
        self._cond = threading.Condition()
        self._open: dict[Hashable, _Batch] = {}
        self._ready: collections.deque[_Batch] = collections.deque()
        self._enqueued_rows = 0
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"batch-thread-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def enqueued_rows(self) -> int:
        """Rows submitted but not yet taken by a batch thread (what the queue capacity bounds)."""
        with self._cond:
            return self._enqueued_rows

    def stop(self) -> None:
        """Runs what is queued, then stops the batch threads."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)

    def submit(
        self, key: Hashable, run: RunBatch, inputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Runs `inputs` (a request; all arrays share dim 0) as part of a batch and returns
        this request's rows of the outputs. Blocks until done. `run` must be the same for
        equal keys. Requests larger than max_batch_size are split across batches.
        """
        sizes = {int(np.shape(array)[0]) if np.ndim(array) else -1 for array in inputs.values()}
        if len(sizes) != 1 or -1 in sizes:
            raise invalid_argument(
                "Batching Run() input tensors must have equal 0th-dimension size"
            )
        total = sizes.pop()
        if total == 0:
            return run(inputs)
        limit = self.options.max_batch_size
        capacity = self.options.max_enqueued_batches * limit
        # One request may never exceed what the queue holds: refused before anything runs
        # (a 400 that says so, not a queue-full 503 the client would retry forever).
        input_limit = capacity if self.options.enable_large_batch_splitting else limit
        if total > input_limit:
            detail = (
                f" (max_enqueued_batches {self.options.max_enqueued_batches} x max_batch_size "
                f"{limit}: larger requests are split into batches up to that)"
                if self.options.enable_large_batch_splitting
                else ""
            )
            raise invalid_argument(
                f"Task size {total} is larger than maximum input batch size {input_limit}{detail}"
            )
        futures = []
        with self._cond:
            if self._stopped:
                raise ServingError(Code.UNAVAILABLE, "The batch scheduler is shutting down")
            if self._enqueued_rows + total > capacity:
                raise ServingError(
                    Code.UNAVAILABLE,
                    "The batch scheduling queue to which this task was submitted is full",
                )
            for start in range(0, total, limit):
                chunk = {name: array[start : start + limit] for name, array in inputs.items()}
                task = _Task(chunk, min(limit, total - start), Future())
                self._enqueue(key, run, task)
                futures.append(task.future)
            self._cond.notify_all()
        results = [future.result() for future in futures]
        if len(results) == 1:
            return results[0]
        return {name: concatenate_parts([r[name] for r in results]) for name in results[0]}

    def _enqueue(self, key: Hashable, run: RunBatch, task: _Task) -> None:
        batch = self._open.get(key)
        if batch is not None and batch.size + task.size > self.options.max_batch_size:
            self._close(batch)
            batch = None
        if batch is None:
            batch = _Batch(key, run, time.monotonic())
            self._open[key] = batch
        batch.tasks.append(task)
        batch.size += task.size
        self._enqueued_rows += task.size
        if batch.size >= self.options.max_batch_size:
            self._close(batch)

    def _close(self, batch: _Batch) -> None:
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]
        self._ready.append(batch)

    def _next_batch(self) -> _Batch | None:
        timeout = self.options.batch_timeout_micros / 1e6
        with self._cond:
            while True:
                if self._ready:
                    batch = self._ready.popleft()
                    self._enqueued_rows -= batch.size
                    return batch
                now = time.monotonic()
                next_deadline = None
                for batch in list(self._open.values()):
                    deadline = batch.opened_at + timeout
                    if now >= deadline or self._stopped:
                        self._close(batch)
                    else:
                        next_deadline = (
                            deadline if next_deadline is None else min(next_deadline, deadline)
                        )
                if self._ready:
                    continue
                if self._stopped:
                    return None
                self._cond.wait(None if next_deadline is None else next_deadline - now)

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._run(batch)

    def _run(self, batch: _Batch) -> None:
        tasks = batch.tasks
        try:
            names = list(tasks[0].inputs)
            merged = {name: np.concatenate([t.inputs[name] for t in tasks]) for name in names}
            padded_size = next(
                (s for s in self.options.allowed_batch_sizes if s >= batch.size), batch.size
            )
            if padded_size > batch.size:
                # Pad with copies of the first row, as TF Serving does; discarded below.
                pad = padded_size - batch.size
                merged = {
                    name: np.concatenate([array, np.repeat(array[:1], pad, axis=0)])
                    for name, array in merged.items()
                }
            self.stats.record(len(tasks), batch.size)
            outputs = batch.run(merged)
            offset = 0
            for task in tasks:
                rows = {}
                for name, array in outputs.items():
                    if np.ndim(array) == 0 or np.shape(array)[0] != padded_size:
                        raise ServingError(
                            Code.FAILED_PRECONDITION,
                            "Batched output tensor's 0th dimension does not equal the sum of "
                            "the 0th dimension sizes of the input tensors",
                        )
                    rows[name] = array[offset : offset + task.size]
                task.future.set_result(rows)
                offset += task.size
        except BaseException as e:  # noqa: BLE001  (every waiting request must be released)
            for task in tasks:
                if not task.future.done():
                    task.future.set_exception(e)
