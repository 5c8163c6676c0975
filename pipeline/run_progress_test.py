"""ComponentProgress: the component lines from the log records TFX's LocalDagRunner and
launcher emit (their templates; tests/test_finetune_pipeline.py sees them in a real run)."""

from __future__ import annotations

import io
import logging

from pipeline.run_progress import (
    CACHED_EXECUTION_USED,
    COMPONENT_FINISHED,
    COMPONENT_RUNNING,
    EXECUTION_SKIPPED,
    ComponentProgress,
)

NODES = ["CsvExampleGen", "latest_blessed_model_resolver", "Trainer"]


def _progress(times: list[float]) -> tuple[ComponentProgress, io.StringIO, logging.Logger]:
    out = io.StringIO()
    progress = ComponentProgress(NODES, stream=out, clock=iter(times).__next__)
    logger = logging.getLogger("absl.run_progress_test")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.handlers = [progress]
    return progress, out, logger


def test_each_component_gets_a_start_and_an_end_line_with_position_and_outcome():
    progress, out, log = _progress([0, 3.2, 10, 10.4, 20, 212])
    log.info(COMPONENT_RUNNING, "CsvExampleGen")
    log.info("Going to run a new execution %d", 1)
    log.info(COMPONENT_FINISHED, "CsvExampleGen")
    log.info(COMPONENT_RUNNING, "latest_blessed_model_resolver")
    log.info(EXECUTION_SKIPPED, "latest_blessed_model_resolver")
    log.info(COMPONENT_FINISHED, "latest_blessed_model_resolver")
    log.info(COMPONENT_RUNNING, "Trainer")
    log.info(CACHED_EXECUTION_USED, 7)
    log.info(COMPONENT_FINISHED, "Trainer")
    assert out.getvalue().splitlines() == [
        "[1/3] CsvExampleGen ...",
        "[1/3] CsvExampleGen done in 3 s",
        "[2/3] latest_blessed_model_resolver ...",
        "[2/3] latest_blessed_model_resolver skipped: nothing to resolve yet (0 s)",
        "[3/3] Trainer ...",
        "[3/3] Trainer reused from the cache (3 min 12 s)",
    ]
    assert progress.finished == {"CsvExampleGen": "done",
                                 "latest_blessed_model_resolver": "skipped",
                                 "Trainer": "cached"}


def test_a_component_that_raises_is_named_once():
    progress, out, log = _progress([0, 41])
    log.info(COMPONENT_RUNNING, "Trainer")
    progress.component_failed()
    progress.component_failed()  # nothing running any more: no second line
    assert out.getvalue().splitlines() == ["[3/3] Trainer ...", "[3/3] Trainer failed after 41 s"]
