"""`bertpipe run CONFIG.yaml`: validate a config, run its pipeline locally, report.

The exit code says what happened (`pipeline.exit_codes`): 0 pushed or unchanged, 3 ran but
not blessed, 1 failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings

from pipeline import exit_codes
from pipeline.config import ConfigError, load_config


def quiet_logs() -> None:
    """Hides TensorFlow, absl and Beam chatter (set before TensorFlow is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # Google client libraries warn about Python versions on import, once per module.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="bertpipe run", description="Run a pipeline described by a YAML config."
    )
    parser.add_argument("config", help="pipeline config (YAML), e.g. configs/demo_sst2.yaml")
    parser.add_argument("--no-cache", action="store_true",
                        help="re-run every component instead of re-using cached outputs")
    parser.add_argument("--check", action="store_true",
                        help="only validate the config and exit")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"bertpipe: {error}", file=sys.stderr)
        return exit_codes.FAILED
    if args.check:
        print(f"{args.config}: valid {config.kind} config for pipeline {config.pipeline.name!r}")
        return 0

    quiet_logs()
    started = time.time()
    print(f"bertpipe: running pipeline {config.pipeline.name!r} (root {config.pipeline.root})",
          flush=True)
    if config.kind == "pretrain":
        from pipeline.pretrain import create_pipeline
    else:
        from pipeline.finetune import create_pipeline
    from pipeline.report import summarize_pretraining, summarize_run
    from pipeline.runners.local import run_locally

    enable_cache = False if args.no_cache else None
    try:
        run_locally(create_pipeline(config, enable_cache=enable_cache))
    except Exception as error:  # the component's own error says what went wrong
        print(f"bertpipe: pipeline {config.pipeline.name!r} stopped: "
              f"{type(error).__name__}: {error}", file=sys.stderr)
        return exit_codes.FAILED
    if config.kind == "pretrain":
        report, pushed = summarize_pretraining(config.pipeline.name, config.metadata_path)
        print(report)
    else:
        from pipeline.history import describe_data, run_history

        summary = summarize_run(config)
        print(summary.render(config.serving.model_name))
        print(describe_data(run_history(config, read_metrics=False)[-1]))
        pushed = summary.pushed
    print(f"finished in {time.time() - started:.0f} s")
    return exit_codes.PUSHED_OR_UNCHANGED if pushed else exit_codes.NOT_BLESSED
