"""pipeline.beam_progress: periodic per-process lines, and the exact total from Beam's
metrics however the DirectRunner spreads the rows over workers."""

from __future__ import annotations

import doctest
import re

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import beam_progress
from pipeline.beam_progress import CountRows, rows_counted


class Clock:
    def __init__(self, seconds_per_call: float):
        self.now, self.step = 100.0, seconds_per_call

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_the_docstring_examples_hold():
    assert doctest.testmod(beam_progress).failed == 0


def test_a_line_every_period_with_the_rows_so_far_and_their_rate(capsys):
    count = CountRows("scoring", "rows", every_s=10, clock=Clock(4.0))  # a row every 4 s
    for row in range(10):
        assert list(count.process(row)) == [row]  # passed through unchanged
    err = capsys.readouterr().err
    assert "\r" not in err
    # Rows 1..10 at 104, 108, ... s: lines 10+ s after the first row, then 10+ s apart.
    assert err.splitlines() == [
        "scoring: 4 rows so far (0.3 rows/s)",   # 12 s after the first row
        "scoring: 7 rows so far (0.3 rows/s)",   # 24 s
        "scoring: 10 rows so far (0.3 rows/s)",  # 36 s
    ]


def test_rows_counted_in_batches_add_up_as_single_rows(capsys):
    count = CountRows("pretraining examples", "examples", every_s=10, clock=Clock(4.0))
    for rows in (64, 64, 7, 100):  # a call every 4 s, as a batched DoFn counts
        count.count(rows)
    assert capsys.readouterr().err.splitlines() == [
        "pretraining examples: 235 examples so far (20 examples/s)",  # 12 s after the first
    ]


def test_lines_go_to_the_console_when_asked(monkeypatch, capsys):
    count = CountRows("pretraining examples (train)", "documents", every_s=0,
                      stream="console", clock=Clock(1.0))
    list(count.process("document"))
    list(count.process("document"))
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == (
        "pretraining examples (train): 2 documents so far (2.0 documents/s)")
    assert captured.err == ""
    with pytest.raises(ValueError, match="stream must be one of"):
        CountRows("x", stream="stdout")


def test_each_pipeline_counts_from_zero(capsys):
    for _ in range(2):
        count = CountRows("scoring", every_s=0, clock=Clock(1.0))
        list(count.process("row"))
        assert capsys.readouterr().err.startswith("scoring: 1 rows so far")


@pytest.mark.parametrize("options", [
    {"direct_num_workers": 2, "direct_running_mode": "multi_threading"},
    {"direct_num_workers": 2, "direct_running_mode": "multi_processing"},
])
def test_the_total_is_summed_over_all_workers(options, capsys):
    with beam.Pipeline(options=PipelineOptions(**options)) as pipeline:
        _ = (pipeline
             | beam.Create(range(1000))
             | beam.Reshuffle()
             | beam.ParDo(CountRows("counted", every_s=0.0)))
    assert rows_counted(pipeline.result, "counted") == 1000
    assert rows_counted(pipeline.result, "never counted") == 0
    lines = capsys.readouterr().err.splitlines()
    if options["direct_running_mode"] == "multi_threading":  # in this process: captured
        shown = [int(m.group(1).replace(",", "")) for m in
                 map(re.compile(r"counted: ([\d,]+) rows so far").match, lines) if m]
        assert max(shown) == 1000  # the process's threads share one count
