"""`bertpipe run CONFIG.yaml`: validate a config, run its pipeline locally, report."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings

from pipeline.config import ConfigError, load_config


def _quiet_logs() -> None:
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
        return 2
    if args.check:
        print(f"{args.config}: valid {config.kind} config for pipeline {config.pipeline.name!r}")
        return 0

    _quiet_logs()
    started = time.time()
    print(f"bertpipe: running pipeline {config.pipeline.name!r} (root {config.pipeline.root})",
          flush=True)
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    if config.kind == "pretrain":
        from pipeline.pretrain import create_pipeline
    else:
        from pipeline.finetune import create_pipeline
    from pipeline.report import summarize_pretraining, summarize_run

    enable_cache = False if args.no_cache else None
    try:
        LocalDagRunner().run(create_pipeline(config, enable_cache=enable_cache))
    except Exception as error:  # the component's own error says what went wrong
        print(f"bertpipe: pipeline {config.pipeline.name!r} stopped: "
              f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if config.kind == "pretrain":
        print(summarize_pretraining(config.pipeline.name, config.metadata_path))
    else:
        summary = summarize_run(config)
        print(summary.render(config.serving.model_name))
    print(f"finished in {time.time() - started:.0f} s")
    return 0
