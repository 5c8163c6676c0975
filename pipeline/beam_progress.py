"""Rows processed by a Beam pipeline, shown while it runs and counted exactly at the end.

Used by `bertpipe score` (serving/batch_score.py) and PretrainingExampleGen
(components/pretraining_examples). `CountRows` is a pass-through step:

* while the pipeline runs, each worker process prints a line every `every_s` seconds with
  the rows it has processed so far and its rate. Beam's DirectRunner may run its workers in
  other processes (`--direct_running_mode=multi_processing`); their lines then say which
  process they count (`in worker process <pid>`), since no process sees the others' rows.
  Those workers do not inherit the console's file descriptor, so under `bertpipe run` their
  lines go to the run's log instead;
* it also increments a Beam counter (`Metrics.counter(NAMESPACE, label)`), which the runner
  sums over all workers: `rows_counted(result, label)` is the exact total once the pipeline
  has finished, for the final line printed by the process that ran it.

Example:

>>> import apache_beam as beam
>>> with beam.Pipeline() as pipeline:  # doctest: +SKIP
...     _ = pipeline | beam.Create(["a", "b"]) | beam.ParDo(CountRows("scoring", "rows"))
>>> rows_counted(pipeline.result, "scoring")  # doctest: +SKIP
2
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import apache_beam as beam
from apache_beam.metrics.metric import Metrics, MetricsFilter

NAMESPACE = "bertpipe"
PERIOD_S = 10.0
STREAMS = ("stderr", "console")

# Per process: (run, label) -> [rows, first row's time, last line's time]. Shared by the
# DoFn instances of a process's threads, so its lines count the whole process.
_counts: dict[tuple[str, str], list[float]] = {}
_lock = threading.Lock()


def rate(rows: float, seconds: float) -> str:
    """`85` rows per second (a decimal below 10).

    >>> rate(170, 2), rate(3, 2), rate(5, 0)
    ('85', '1.5', '?')
    """
    if seconds <= 0:
        return "?"
    per_s = rows / seconds
    return f"{per_s:.0f}" if per_s >= 10 else f"{per_s:.1f}"


def _stream(name: str) -> TextIO:
    if name == "console":
        from pipeline.console import console

        return console()
    return sys.stderr


class CountRows(beam.DoFn):
    """Passes elements through, counting them (see the module docstring).

    Args:
        label: the lines' first words and the counter's name, e.g. "scoring".
        noun: what a row is, e.g. "rows", "documents".
        every_s: seconds between a process's progress lines.
        stream: "stderr" or "console" (`pipeline.console.console()`), looked up per line.
        clock: seconds, monotonic; injectable so tests need not sleep.
    """

    def __init__(self, label: str, noun: str = "rows", every_s: float = PERIOD_S,
                 stream: str = "stderr", clock: Callable[[], float] = time.monotonic):
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, not {stream!r}")
        self.label = label
        self.noun = noun
        self.every_s = every_s
        self.stream = stream
        self.clock = clock
        self._run = uuid.uuid4().hex  # one pipeline: a later run starts from zero
        self._origin_pid = os.getpid()  # where the pipeline was built
        self._counter = Metrics.counter(NAMESPACE, label)

    def process(self, element: Any) -> Iterator[Any]:
        self.count(1)
        yield element

    def count(self, rows: int) -> None:
        """Counts `rows` at once (for a DoFn that handles rows in batches), printing a
        progress line when one is due."""
        self._counter.inc(rows)
        line = None
        with _lock:
            now = self.clock()  # in the lock: another thread's line is never in its future
            state = _counts.setdefault((self._run, self.label), [0, now, now])
            state[0] += rows
            if now - state[2] >= self.every_s:
                state[2] = now
                line = self.line(int(state[0]), now - state[1])
        if line is not None:
            print(line, file=_stream(self.stream), flush=True)

    def line(self, rows: int, seconds: float) -> str:
        """`scoring: 1,200 rows so far (85 rows/s)`, naming the worker process if it is not
        the one that built the pipeline."""
        where = "" if os.getpid() == self._origin_pid else f" in worker process {os.getpid()}"
        return (f"{self.label}: {rows:,} {self.noun} so far{where} "
                f"({rate(rows, seconds)} {self.noun}/s)")


def rows_counted(result: Any, label: str) -> int:
    """The rows `CountRows(label)` passed, summed over all workers, from a finished
    pipeline's metrics (committed where the runner keeps them, else attempted)."""
    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE).with_name(label))
    total = 0
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        total += int(value or 0)
    return total
