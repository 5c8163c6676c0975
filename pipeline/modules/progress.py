"""What a person sees while the Trainer trains, and the TensorBoard logs it leaves behind.

Two Keras 3 callbacks, used by `common.compile_and_fit` (fine-tuning: every task) and by
`pretraining.run_fn`:

* `TrainingProgress` replaces Keras's own progress bar (fit runs with `verbose=0`, so nothing
  is printed twice). It writes to `pipeline.console.console()`, the person's terminal even
  when `bertpipe run` sends the libraries' output to the run's log file. On a terminal it
  redraws one live line in place::

      training  [########............]  step 120/300  loss 0.4120  30 ex/s  ETA 3m12s

  and when the console is not a terminal (a scheduler, a CI log, a pipe) it prints a plain
  line every `every_s` seconds (30 by default) and at the end, so a log is not flooded::

      training: step 120/300 (40%), loss 0.4120, 30 examples/s, ETA 3 min 12 s

  At each epoch's end it prints the epoch's metrics and the eval split's. The total number of
  steps is what the caller expects (for fine-tuning without `max_steps` an upper bound:
  length bucketing can leave one partial batch per bucket), so the last line may stop short of
  it. Speed and ETA are measured from the end of the first step, which includes tracing and
  XLA compilation.

* `TensorBoardLogs` writes TensorBoard event files. Keras 3's own `TensorBoard` callback was
  checked in this environment (Keras 3.15, TensorFlow backend) and does not do the job: with
  `update_freq=N` it writes the per-step scalars but drops the epoch and validation scalars
  (its `record_if` for step N still applies at epoch end), and `write_graph` writes nothing
  (its `train_function` is no longer a `tf.function`). This one writes, under `log_dir`
  (the Trainer's `model_run` artifact directory, TFX's place for TensorBoard logs)::

      <model_run>/train/events.out.tfevents.*       batch_<metric> (loss, ...) and
                                                    learning_rate every `every_steps` steps;
                                                    epoch_<metric> at each epoch's end; the
                                                    graph of the first training step
      <model_run>/validation/events.out.tfevents.*  epoch_<metric> of the eval split

  All steps are optimizer steps (a resumed pretraining run goes on from its checkpoint's
  step), so train and eval curves share their x axis. The graph is the traced training step
  (`tf.summary.trace_on` around the first step only: it costs nothing afterwards and works
  with `jit_compile`); it shows in TensorBoard's Graphs tab as `train_step`.

    tensorboard --logdir <pipeline root>/Trainer/model_run

Example (a plain, non-terminal stream):

>>> import io
>>> out = io.StringIO()
>>> progress = TrainingProgress(300, 32, stream=out, clock=lambda: 0.0)
>>> print(progress.plain_line(120, 0.412, 30.0))
training: step 120/300 (40%), loss 0.4120, 30 examples/s, ETA 3 min 12 s
>>> print(progress.live_line(120, 0.412, 30.0))
training  [########............]  step 120/300  loss 0.4120  30 ex/s  ETA 3m12s
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any, TextIO

import keras
import tensorflow as tf

from pipeline.console import console

PERIOD_S = 30.0  # plain lines when the console is not a terminal
REDRAW_S = 0.2  # at most this often on a terminal
BAR_WIDTH = 20
GRAPH_TAG = "train_step"


def duration(seconds: float, compact: bool = False) -> str:
    """`3 min 12 s` (plain lines), or `3m12s` (the live line, where space is short).

    >>> duration(192), duration(192, compact=True), duration(7, True), duration(3725)
    ('3 min 12 s', '3m12s', '7s', '1 h 2 min')
    """
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        parts = [(hours, "h"), (minutes, "min" if not compact else "m")]
    elif minutes:
        parts = [(minutes, "min" if not compact else "m"), (secs, "s")]
    else:
        parts = [(secs, "s")]
    if compact:
        return "".join(f"{value:02d}{unit}" if i else f"{value}{unit}"
                       for i, (value, unit) in enumerate(parts))
    return " ".join(f"{value} {unit}" for value, unit in parts)


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """`[#####...............]` for `fraction` (clamped to 0..1).

    >>> bar(0.25, 8)
    '[##......]'
    """
    filled = int(width * min(max(fraction, 0.0), 1.0))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def summary_every(total_steps: int, points: int = 200) -> int:
    """Steps between TensorBoard scalar writes: about `points` points per run.

    >>> summary_every(625), summary_every(10), summary_every(1_000_000)
    (3, 1, 5000)
    """
    return max(1, total_steps // points)


def speed(examples_per_s: float) -> str:
    """Examples per second, with a decimal only where it matters.

    >>> speed(87.3), speed(0.42)
    ('87', '0.4')
    """
    return f"{examples_per_s:.0f}" if examples_per_s >= 10 else f"{examples_per_s:.1f}"


def _metrics_text(logs: dict[str, Any]) -> str:
    """`loss 0.4120, accuracy 0.8700`: the loss first, then the metrics as Keras lists them."""
    names = sorted(logs, key=lambda name: name != "loss")
    return ", ".join(f"{name} {float(logs[name]):.4f}" for name in names)


class TrainingProgress(keras.callbacks.Callback):
    """The live training progress on the console: a redrawn line on a terminal, periodic
    plain lines elsewhere (see the module docstring for both shapes).

    Args:
        total_steps: optimizer steps the run is expected to take (all epochs).
        batch_size: examples per step, for examples/s.
        label: the line's first word ("training", "pretraining").
        stream: where to write; default `console()`, looked up when training begins.
        tty: whether `stream` is a terminal; default `stream.isatty()`.
        every_s: seconds between plain lines (not on a terminal).
        clock: seconds, monotonic; injectable so tests need not sleep.
        initial_step: the optimizer step training starts (resumes) from.
        epoch_lines: print each epoch's train and eval metrics at its end.
    """

    def __init__(
        self,
        total_steps: int,
        batch_size: int,
        label: str = "training",
        stream: TextIO | None = None,
        tty: bool | None = None,
        every_s: float = PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
        initial_step: int = 0,
        epoch_lines: bool = True,
    ):
        super().__init__()
        self.total_steps = total_steps
        self.batch_size = batch_size
        self.label = label
        self._stream = stream
        self._tty = tty
        self.every_s = every_s
        self.clock = clock
        self.step = initial_step
        self.initial_step = initial_step
        self.epoch_lines = epoch_lines
        self._loss: float | None = None
        self._rate_start: tuple[int, float] | None = None  # (step, time) after the 1st step
        self._started = 0.0
        self._last_output = -math.inf
        self._live_width = 0  # characters of the live line on screen, 0: none
        self._epochs = 1

    # -------------------------------------------------------------------- the lines

    def _eta_s(self, step: int, examples_per_s: float) -> float:
        return max(0, self.total_steps - step) * self.batch_size / examples_per_s

    def live_line(self, step: int, loss: float | None, examples_per_s: float | None) -> str:
        """The terminal's line, e.g. `training  [####....]  step 120/300  loss 0.4120  30
        ex/s  ETA 3m12s`; loss, speed and ETA are left out until known."""
        parts = [self.label, bar(step / max(self.total_steps, 1)),
                 f"step {step}/{self.total_steps}"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if examples_per_s:
            parts += [f"{speed(examples_per_s)} ex/s",
                      f"ETA {duration(self._eta_s(step, examples_per_s), compact=True)}"]
        return "  ".join(parts)

    def plain_line(self, step: int, loss: float | None, examples_per_s: float | None) -> str:
        """A log's line, e.g. `training: step 120/300 (40%), loss 0.4120, 30 examples/s,
        ETA 3 min 12 s`; loss, speed and ETA are left out until known."""
        percent = int(100 * min(step / max(self.total_steps, 1), 1.0))
        parts = [f"step {step}/{self.total_steps} ({percent}%)"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if examples_per_s:
            parts += [f"{speed(examples_per_s)} examples/s",
                      f"ETA {duration(self._eta_s(step, examples_per_s))}"]
        return f"{self.label}: " + ", ".join(parts)

    # -------------------------------------------------------------------- output

    @property
    def stream(self) -> TextIO:
        if self._stream is None:
            self._stream = console()
        return self._stream

    @property
    def tty(self) -> bool:
        if self._tty is None:
            try:
                self._tty = bool(self.stream.isatty())
            except (ValueError, OSError):
                self._tty = False
        return self._tty

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _draw(self, line: str) -> None:
        """Redraws the live line: `\\r`, the line, spaces over what is left of a longer one."""
        self._write("\r" + line + " " * max(0, self._live_width - len(line)))
        self._live_width = len(line)

    def _end_live_line(self) -> None:
        if self._live_width:
            self._write("\n")
            self._live_width = 0

    def message(self, text: str) -> None:
        """Prints a line of its own (e.g. a checkpoint saved) without garbling the live line:
        on a terminal the live line is finished first and drawn again below it."""
        if self.tty and self._live_width:
            self._end_live_line()
            self._write(text + "\n")
            self._draw(self.live_line(self.step, self._loss, self._examples_per_s()))
        else:
            self._write(text + "\n")

    def _examples_per_s(self) -> float | None:
        if self._rate_start is None:
            return None
        step0, time0 = self._rate_start
        elapsed = self.clock() - time0
        if self.step <= step0 or elapsed <= 0:
            return None
        return (self.step - step0) * self.batch_size / elapsed

    def _show(self, final: bool = False) -> None:
        now = self.clock()
        rate = self._examples_per_s()
        if self.tty:
            if final or now - self._last_output >= REDRAW_S:
                self._draw(self.live_line(self.step, self._loss, rate))
                self._last_output = now
        elif final or now - self._last_output >= self.every_s:
            self._write(self.plain_line(self.step, self._loss, rate) + "\n")
            self._last_output = now

    # -------------------------------------------------------------------- Keras hooks

    def on_train_begin(self, logs=None):
        self._started = self.clock()
        self._epochs = int((self.params or {}).get("epochs") or 1)
        if not self.tty:
            self._write(f"{self.label}: {self.total_steps - self.initial_step} steps of "
                        f"{self.batch_size} examples"
                        + (f" from step {self.initial_step}" if self.initial_step else "")
                        + "\n")
            self._last_output = self._started  # the first plain line comes every_s later

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if logs and "loss" in logs:
            self._loss = float(logs["loss"])
        if self._rate_start is None:  # the first step includes tracing and compilation
            self._rate_start = (self.step, self.clock())
        self._show()

    def on_test_begin(self, logs=None):
        if self.tty:
            self._draw(self.live_line(self.step, self._loss, self._examples_per_s())
                       + "  evaluating")

    def on_epoch_end(self, epoch, logs=None):
        if not self.epoch_lines or not logs:
            return
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        evaluation = {k.removeprefix("val_"): v for k, v in logs.items() if k.startswith("val_")}
        text = f"{self.label}: epoch {epoch + 1}/{self._epochs}: {_metrics_text(train)}"
        if evaluation:
            text += f"; eval: {_metrics_text(evaluation)}"
        self.message(text)

    def on_train_end(self, logs=None):
        self._show(final=True)
        self._end_live_line()
        if not self.tty:
            elapsed = self.clock() - self._started
            self._write(f"{self.label}: done, {self.step - self.initial_step} steps in "
                        f"{duration(elapsed)}\n")


class TensorBoardLogs(keras.callbacks.Callback):
    """TensorBoard event files of a training run (layout in the module docstring).

    Args:
        log_dir: the directory for `train/` and `validation/` (the `model_run` artifact).
        every_steps: steps between per-step scalar writes (`summary_every`).
        initial_step: the optimizer step training starts (resumes) from.
        write_graph: trace the first training step and write its graph.
    """

    def __init__(self, log_dir: str, every_steps: int = 1, initial_step: int = 0,
                 write_graph: bool = True):
        super().__init__()
        self.log_dir = log_dir
        self.every_steps = max(1, int(every_steps))
        self.step = initial_step
        self.write_graph = write_graph
        self._writers: dict[str, Any] = {}
        self._tracing = False

    def _writer(self, name: str):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(os.path.join(self.log_dir, name))
        return self._writers[name]

    def _learning_rate(self) -> float | None:
        optimizer = getattr(self.model, "optimizer", None)
        try:
            return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        except (AttributeError, TypeError, ValueError):
            return None

    def on_train_begin(self, logs=None):
        self._writer("train")

    def on_train_batch_begin(self, batch, logs=None):
        if self.write_graph:
            tf.summary.trace_on(graph=True, profiler=False)
            self._tracing = True
            self.write_graph = False

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        with self._writer("train").as_default():
            if self._tracing:
                tf.summary.trace_export(name=GRAPH_TAG, step=self.step)
                self._tracing = False
            if self.step % self.every_steps == 0:
                for name, value in (logs or {}).items():
                    tf.summary.scalar(f"batch_{name}", float(value), step=self.step)
                learning_rate = self._learning_rate()
                if learning_rate is not None:
                    tf.summary.scalar("learning_rate", learning_rate, step=self.step)

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            writer = "validation" if name.startswith("val_") else "train"
            with self._writer(writer).as_default():
                tf.summary.scalar(f"epoch_{name.removeprefix('val_')}", float(value),
                                  step=self.step)

    def on_train_end(self, logs=None):
        if self._tracing:  # training ended before the first step did
            tf.summary.trace_off()
            self._tracing = False
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
