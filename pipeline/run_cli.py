"""`bertpipe run CONFIG.yaml`: validate a config, run its pipeline locally, report.

The exit code says what happened (`pipeline.exit_codes`): 0 pushed or unchanged, 3 ran but
not blessed, 1 failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
import warnings

from pipeline import exit_codes
from pipeline.config import ConfigError, load_config


def quiet_logs(verbose: bool = False, to_log_file: bool = False) -> None:
    """Settings read when TensorFlow is imported: its C++ INFO lines only with --verbose;
    its warnings when they go to a log file (`bertpipe run`), not on a plain terminal."""
    level = "0" if verbose else "1" if to_log_file else "2"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", level)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # Google client libraries warn about Python versions on import, once per module.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def _run_log_path(root: str, run_id: str) -> str:
    """The run's log file: in its run folder, or a local one when the root is a URI (the
    log is written through the file descriptors, which only a local file can be)."""
    from pipeline.run_folder import log_path

    if "://" in root:
        return log_path(os.path.join(tempfile.gettempdir(), "bertpipe-runs"), run_id)
    return log_path(root, run_id)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="bertpipe run", description="Run a pipeline described by a YAML config."
    )
    parser.add_argument("config", help="pipeline config (YAML), e.g. configs/demo_sst2.yaml")
    parser.add_argument("--no-cache", action="store_true",
                        help="re-run every component instead of re-using cached outputs")
    parser.add_argument("--check", action="store_true",
                        help="only validate the config and exit")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show the libraries' logs (TensorFlow, absl, Beam, TFX) on "
                             "the terminal; they always go to the run's log file")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"bertpipe: {error}", file=sys.stderr)
        return exit_codes.FAILED
    if args.check:
        print(f"{args.config}: valid {config.kind} config for pipeline {config.pipeline.name!r}")
        return 0

    from pipeline.run_folder import new_run_id
    from pipeline.run_logs import RunLogs

    quiet_logs(args.verbose, to_log_file=True)
    run_id = new_run_id()
    log_file = _run_log_path(config.pipeline.root, run_id)
    with RunLogs(log_file, verbose=args.verbose) as logs:
        return _run(config, args, run_id, logs)


def _run(config, args, run_id: str, logs) -> int:
    from pipeline.console import console
    from pipeline.run_logs import library_log_levels
    from pipeline.run_progress import ComponentProgress, format_duration

    out = console()
    started = time.monotonic()
    print(f"bertpipe: running pipeline {config.pipeline.name!r} (root {config.pipeline.root})",
          file=out)
    print(f"log: {logs.path}", file=out)
    print("building the pipeline (importing TFX) ...", file=out)
    library_log_levels(args.verbose)
    from pipeline.runners import create_pipeline
    from pipeline.runners.local import run_locally

    enable_cache = False if args.no_cache else None
    try:
        pipeline = create_pipeline(config, enable_cache=enable_cache)
        print(f"built in {format_duration(time.monotonic() - started)}", file=out)
        run_locally(pipeline, run_id=run_id, progress=ComponentProgress)
    except Exception as error:  # the component's own error says what went wrong
        traceback.print_exc()  # to the log file
        print(f"bertpipe: pipeline {config.pipeline.name!r} stopped: "
              f"{type(error).__name__}: {error}", file=logs.errors)
        print(f"bertpipe: full log: {logs.path}", file=logs.errors)
        _write_report(config, run_id, logs.errors)  # what ran: statistics, anomalies...
        return exit_codes.FAILED
    from pipeline.report import summarize_pretraining, summarize_run

    if config.kind == "pretrain":
        report, pushed = summarize_pretraining(config.pipeline.name, config.metadata_path)
        print(report, file=out)
    else:
        from pipeline.history import describe_data, run_history

        summary = summarize_run(config)
        print(summary.render(config.serving.model_name), file=out)
        print(describe_data(run_history(config, read_metrics=False)[-1]), file=out)
        pushed = summary.pushed
    print(f"finished in {format_duration(time.monotonic() - started)}", file=out)
    _write_report(config, run_id, out)
    return exit_codes.PUSHED_OR_UNCHANGED if pushed else exit_codes.NOT_BLESSED


def _write_report(config, run_id: str, stream) -> None:
    """Writes the run's HTML report and prints `report: PATH` as the run's last line; a
    report that cannot be written is said in one line and never fails the run."""
    from pipeline.html_report import write_report

    try:
        path = write_report(config, run_id)
    except Exception as error:  # noqa: BLE001 (the run's outcome stands; the log has why)
        traceback.print_exc()
        print(f"bertpipe: no report: {type(error).__name__}: {error}", file=stream)
        return
    print(f"report: {path}", file=stream)
