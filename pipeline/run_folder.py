"""Where one `bertpipe run` keeps what a person reads: its log and its HTML report.

    <pipeline.root>/runs/<run folder name>/run.log       every log line of the run
    <pipeline.root>/runs/<run folder name>/report.html   the run's report

`bertpipe run` chooses the run id itself (TFX's LocalDagRunner form, an ISO timestamp) and
gives it to TFX, so the ML Metadata `pipeline_run` context, the run folder and
`bertpipe runs` all name the same run.

Example:

>>> run_folder("/pipelines/sst2", "2026-11-25T07:01:02.123456")
'/pipelines/sst2/runs/2026-11-25T07-01-02.123456'
"""

from __future__ import annotations

import datetime
import os

RUNS_DIR = "runs"
LOG_FILE = "run.log"
REPORT_FILE = "report.html"


def new_run_id() -> str:
    """A run id as TFX's LocalDagRunner makes one (the local time, ISO 8601)."""
    return datetime.datetime.now().isoformat()


def run_folder(pipeline_root: str, run_id: str) -> str:
    """The folder of run `run_id` (':' left out of the name: not every filesystem or URL
    takes it)."""
    return os.path.join(pipeline_root, RUNS_DIR, run_id.replace(":", "-"))


def log_path(pipeline_root: str, run_id: str) -> str:
    return os.path.join(run_folder(pipeline_root, run_id), LOG_FILE)


def report_path(pipeline_root: str, run_id: str) -> str:
    return os.path.join(run_folder(pipeline_root, run_id), REPORT_FILE)
