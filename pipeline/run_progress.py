"""One line when each pipeline component starts and one when it ends (`bertpipe run`).

    [5/9] Transform ...
    [5/9] Transform done in 41 s
    [6/9] Trainer ...
    [6/9] Trainer reused from the cache (0 s)

TFX's LocalDagRunner runs the nodes of the compiled pipeline one after another, in
topological order, and logs through absl when each starts and finishes and when the launcher
publishes a cached execution instead of running the executor. `ComponentProgress` is a
logging handler on absl's logger that turns those records (their message templates, pinned
to TFX 1.16 below) into the lines above, with the node's position among all the pipeline's
nodes, on the person's terminal (`pipeline.console`).

Example:

>>> import io
>>> out = io.StringIO()
>>> progress = ComponentProgress(["CsvExampleGen", "Trainer"], stream=out, clock=iter([0, 41]).__next__)
>>> progress.component_started("Trainer"); progress.component_finished("Trainer")
>>> print(out.getvalue(), end="")
[2/2] Trainer ...
[2/2] Trainer done in 41 s
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from pipeline.console import console

# The absl log records of TFX 1.16's LocalDagRunner and portable launcher that say where a
# run is (tfx/orchestration/local/local_dag_runner.py, tfx/orchestration/portable/launcher.py).
COMPONENT_RUNNING = "Component %s is running."
COMPONENT_FINISHED = "Component %s is finished."
COMPONENT_SKIPPED = "Skipping component %s."
CACHED_EXECUTION_USED = "A cached execution %d is used."
EXECUTION_SKIPPED = "Skipping execution for %s"  # a resolver found no inputs


def format_duration(seconds: float) -> str:
    """'41 s', '3 min 12 s', '1 h 05 min'.

    >>> [format_duration(s) for s in (0.4, 41, 192, 3900)]
    ['0 s', '41 s', '3 min 12 s', '1 h 05 min']
    """
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class ComponentProgress(logging.Handler):
    """Prints a pipeline's component start and end lines (see the module docstring).

    Args:
        node_ids: the compiled pipeline's nodes, in the order they run.
        stream: where the lines go (default: `pipeline.console.console()`, looked up per line).
        clock: seconds, for durations (injectable for tests).
    """

    def __init__(self, node_ids: Sequence[str], stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(level=logging.INFO)
        self.node_ids = list(node_ids)
        self._stream = stream
        self._clock = clock
        self._current: str | None = None
        self._started = 0.0
        self._cached = False
        self._skipped = False
        self.finished: dict[str, str] = {}  # node id -> "done" | "cached" | "skipped" | "failed"

    def _write(self, line: str) -> None:
        stream = self._stream or console()
        stream.write(line + "\n")
        stream.flush()

    def _position(self, node_id: str) -> str:
        total = len(self.node_ids)
        index = self.node_ids.index(node_id) + 1 if node_id in self.node_ids else "?"
        return f"[{index}/{total}] {node_id}"

    def component_started(self, node_id: str) -> None:
        self._current, self._started = node_id, self._clock()
        self._cached = self._skipped = False
        self._write(f"{self._position(node_id)} ...")

    def component_finished(self, node_id: str) -> None:
        took = format_duration(self._clock() - self._started)
        if self._cached:
            outcome, text = "cached", f"reused from the cache ({took})"
        elif self._skipped:
            outcome, text = "skipped", f"skipped: nothing to resolve yet ({took})"
        else:
            outcome, text = "done", f"done in {took}"
        self.finished[node_id] = outcome
        self._current = None
        self._write(f"{self._position(node_id)} {text}")

    def component_failed(self) -> None:
        """The running component raised (LocalDagRunner logs nothing then): say so."""
        if self._current is None:
            return
        node_id = self._current
        self.finished[node_id] = "failed"
        self._current = None
        took = format_duration(self._clock() - self._started)
        self._write(f"{self._position(node_id)} failed after {took}")

    def emit(self, record: logging.LogRecord) -> None:
        template, args = record.msg, record.args
        if not isinstance(template, str):
            return
        try:
            if template == COMPONENT_RUNNING and args:
                self.component_started(str(args[0]))
            elif template == COMPONENT_FINISHED and args:
                self.component_finished(str(args[0]))
            elif template == CACHED_EXECUTION_USED:
                self._cached = True
            elif template == EXECUTION_SKIPPED:
                self._skipped = True
            elif template == COMPONENT_SKIPPED and args:
                self.finished[str(args[0])] = "skipped"
                self._write(f"{self._position(str(args[0]))} skipped (partial run)")
        except Exception:  # a progress line must never stop a run
            self.handleError(record)
