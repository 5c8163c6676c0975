"""pipeline.modules.progress: the live training line (terminal and not), TensorBoard logs,
and both in `compile_and_fit`; driven by real fits of a tiny Keras model."""

from __future__ import annotations

import doctest
import glob
import io
import os
import re
import select
import tty
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipeline.modules import progress
from pipeline.modules.progress import TensorBoardLogs, TrainingProgress

ROWS, BATCH, EPOCHS = 16, 4, 2
STEPS = ROWS // BATCH * EPOCHS  # 8
LIVE = re.compile(
    r"training  \[[#.]{20}\]  step (\d+)/8(  loss \d+\.\d{4})?(  [\d.]+ ex/s  ETA \S+)?"
    r"(  evaluating)? *"
)
PLAIN = re.compile(
    r"training: step (\d+)/8 \((\d+)%\)(, loss \d+\.\d{4})?(, [\d.]+ examples/s, ETA [\w ]+)?"
)
EPOCH = re.compile(
    r"training: epoch (\d)/2: loss \d+\.\d{4}, accuracy \d\.\d{4}; "
    r"eval: loss \d+\.\d{4}, accuracy \d\.\d{4}"
)


class FakeClock(keras.callbacks.Callback):
    """A clock that advances `seconds_per_step` at each training step (it must come before
    the callback that reads it), so periodic output is tested without sleeping."""

    def __init__(self, seconds_per_step: float):
        super().__init__()
        self.now = 1000.0
        self.seconds_per_step = seconds_per_step

    def __call__(self) -> float:
        return self.now

    def on_train_batch_end(self, batch, logs=None):
        self.now += self.seconds_per_step


class TtyStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


def _model(jit_compile: bool = False) -> keras.Model:
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=jit_compile)
    return model


def _data(rows: int = ROWS) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((rows, 4), dtype=np.float32), rng.integers(0, 2, rows)


def _fit(callbacks: list, jit_compile: bool = False) -> keras.callbacks.History:
    x, y = _data()
    return _model(jit_compile).fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0,
                                   validation_data=(x, y), shuffle=False, callbacks=callbacks)


def test_the_docstring_examples_hold():
    assert doctest.testmod(progress).failed == 0


def test_on_a_terminal_one_line_is_redrawn_in_place_and_ended_with_a_newline():
    out, clock = TtyStringIO(), FakeClock(1.0)
    _fit([clock, TrainingProgress(STEPS, BATCH, stream=out, clock=clock)])
    text = out.getvalue()
    assert text.endswith("\n")
    live_steps, epochs = [], []
    for segment in text[:-1].split("\n"):
        if segment.startswith("\r"):  # the live line, redrawn: one \r per drawing
            for drawing in segment.split("\r")[1:]:
                match = LIVE.fullmatch(drawing)
                assert match, repr(drawing)
                live_steps.append(int(match.group(1)))
        else:  # an epoch's metrics, on a line of its own
            match = EPOCH.fullmatch(segment)
            assert match, repr(segment)
            epochs.append(int(match.group(1)))
    assert epochs == [1, 2]
    assert live_steps == sorted(live_steps) and live_steps[-1] == STEPS
    assert set(range(1, STEPS + 1)) <= set(live_steps)  # a second per step: every step drawn
    assert "training: step" not in text  # no plain lines on a terminal
    final = text[:-1].split("\n")[-1].split("\r")[-1]
    assert re.fullmatch(r"training  \[#{20}\]  step 8/8  loss \S+  [\d.]+ ex/s  ETA 0s *", final)


def test_a_shorter_redraw_overwrites_the_longer_line_with_spaces():
    out = TtyStringIO()
    line = TrainingProgress(8, 4, stream=out, clock=lambda: 0.0)
    line._draw("x" * 30)
    line._draw("y" * 10)
    assert out.getvalue() == "\r" + "x" * 30 + "\r" + "y" * 10 + " " * 20


def test_a_pseudo_terminal_is_detected_as_a_terminal():
    master, slave = os.openpty()
    tty.setraw(slave)  # no \n -> \r\n translation: read back exactly what was written
    try:
        stream = open(slave, "w", closefd=False)
        clock = FakeClock(1.0)
        _fit([clock, TrainingProgress(STEPS, BATCH, stream=stream, clock=clock)])
        stream.close()
        received = b""
        while select.select([master], [], [], 0.5)[0]:
            received += os.read(master, 65536)
    finally:
        os.close(slave)
        os.close(master)
    text = received.decode()
    assert text.startswith("\rtraining  [") and text.endswith("\n")
    assert "\rtraining  [####################]  step 8/8  loss" in text


def test_without_a_terminal_plain_lines_come_every_period_and_at_the_end():
    out, clock = io.StringIO(), FakeClock(10.0)  # 10 s a step, a line every 30 s
    _fit([clock, TrainingProgress(STEPS, BATCH, stream=out, clock=clock, every_s=30)])
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "training: 8 steps of 4 examples"
    assert lines[-1] == "training: done, 8 steps in 1 min 20 s"
    periodic = [PLAIN.fullmatch(line) for line in lines[1:-1] if not EPOCH.fullmatch(line)]
    assert all(periodic), lines
    # Steps 3 and 6 (30 s apart), then the final line at step 8.
    assert [int(m.group(1)) for m in periodic] == [3, 6, 8]
    assert [int(m.group(2)) for m in periodic] == [37, 75, 100]
    assert all(m.group(3) and m.group(4) for m in periodic)  # loss, speed and ETA known
    # Speed is measured from the end of the first step: 4 examples per 10 s.
    assert periodic[-1].group(0).endswith(", 0.4 examples/s, ETA 0 s")
    epochs = [index for index, line in enumerate(lines) if line.startswith("training: epoch")]
    assert len(epochs) == 2 and all(EPOCH.fullmatch(lines[index]) for index in epochs)
    # Epoch 1's line comes between the lines of steps 3 and 6.
    assert lines.index(periodic[0].group(0)) < epochs[0] < lines.index(periodic[1].group(0))


def test_messages_keep_the_live_line_whole():
    out = TtyStringIO()
    line = TrainingProgress(8, 4, label="pretraining", stream=out, clock=lambda: 0.0)
    line._draw(line.live_line(2, 7.0, None))
    line.step = 2
    line.message("pretraining: checkpoint saved at step 2: loss=7.0000")
    assert out.getvalue().split("\n") == [
        "\rpretraining  [#####...............]  step 2/8  loss 7.0000",
        "pretraining: checkpoint saved at step 2: loss=7.0000",
        "\rpretraining  [#####...............]  step 2/8",  # loss is shown once fit reports it
    ]


def _scalars(path: str) -> tuple[dict[str, list[int]], set[str]]:
    """{tag: [steps]} of an event directory's scalars, and its graph tags."""
    steps: dict[str, list[int]] = {}
    graphs = set()
    for events in sorted(glob.glob(os.path.join(path, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(events):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "graph_run_metadata_graph":
                    graphs.add(value.tag)
                elif value.metadata.plugin_data.plugin_name == "scalars":
                    steps.setdefault(value.tag, []).append(event.step)
    return steps, graphs


@pytest.mark.parametrize("jit_compile", [False, True])
def test_tensorboard_logs_hold_per_step_scalars_epoch_scalars_and_the_graph(tmp_path,
                                                                           jit_compile):
    _fit([TensorBoardLogs(str(tmp_path), every_steps=2)], jit_compile)
    train, graphs = _scalars(str(tmp_path / "train"))
    assert train["batch_loss"] == train["batch_accuracy"] == [2, 4, 6, 8]
    assert train["learning_rate"] == [2, 4, 6, 8]
    assert train["epoch_loss"] == train["epoch_accuracy"] == [4, 8]
    assert graphs == {progress.GRAPH_TAG}
    validation, _ = _scalars(str(tmp_path / "validation"))
    assert validation == {"epoch_loss": [4, 8], "epoch_accuracy": [4, 8]}


def test_the_loss_logged_per_step_is_the_loss_keras_reports(tmp_path):
    history = _fit([TensorBoardLogs(str(tmp_path), every_steps=4)])
    (events,) = glob.glob(str(tmp_path / "train" / "events.out.tfevents.*"))
    losses = {event.step: float(tf.make_ndarray(value.tensor))
              for event in tf.compat.v1.train.summary_iterator(events)
              for value in event.summary.value if value.tag == "batch_loss"}
    # At an epoch's last step Keras's running loss is the epoch's loss.
    np.testing.assert_allclose([losses[4], losses[8]], history.history["loss"], rtol=1e-5)


def test_a_resumed_run_logs_optimizer_steps(tmp_path):
    _fit([TensorBoardLogs(str(tmp_path), every_steps=4, initial_step=100, write_graph=False)])
    train, graphs = _scalars(str(tmp_path / "train"))
    assert train["batch_loss"] == [104, 108] and not graphs


def test_compile_and_fit_shows_our_progress_not_keras_and_writes_tensorboard_logs(
        tmp_path, capsys):
    from pipeline.modules import common

    x, y = _data()

    def make_dataset(files, batch_size, shuffle):
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(8)(inputs)))
    config = {"batch_size": BATCH, "eval_batch_size": 8, "epochs": EPOCHS, "learning_rate": 1e-3,
              "warmup_fraction": 0.1, "weight_decay": 0.01, "checkpoint_dir": "unused"}
    fn_args = types.SimpleNamespace(custom_config=config, train_files=[], eval_files=[],
                                    model_run_dir=str(tmp_path / "model_run"),
                                    serving_model_dir=str(tmp_path / "model" / "Format-Serving"))
    history = common.compile_and_fit(
        model, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        {"metrics": ["accuracy"]}, make_dataset, fn_args, STEPS)
    out = capsys.readouterr().out  # not a terminal here: plain lines
    lines = out.splitlines()
    assert lines[0] == "training: 8 steps of 4 examples"
    assert lines[-1].startswith("training: done, 8 steps in ")
    assert len([line for line in lines if EPOCH.fullmatch(line)]) == 2
    assert "Epoch 1/2" not in out and "━" not in out and "\r" not in out  # no Keras progbar
    assert len(history["loss"]) == EPOCHS
    assert os.path.isfile(tmp_path / "model_run" / "history.json")
    train, graphs = _scalars(str(tmp_path / "model_run" / "train"))
    assert train["batch_loss"] == list(range(1, STEPS + 1)) and graphs
    assert _scalars(str(tmp_path / "model_run" / "validation"))[0]["epoch_loss"] == [4, 8]
