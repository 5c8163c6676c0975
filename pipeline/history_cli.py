"""`bertpipe runs CONFIG` (the run history) and `bertpipe rollback CONFIG --to VERSION`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from pipeline import exit_codes
from pipeline.config import ConfigError, load_config
from pipeline.run_cli import quiet_logs


def runs_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="bertpipe runs",
        description="List a pipeline's past runs from its ML Metadata store: start time, "
                    "outcome, pushed version, spans, rows, warm start and metrics.")
    parser.add_argument("config", help="the pipeline's config (YAML)")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    parser.add_argument("--no-metrics", action="store_true",
                        help="skip reading the Evaluator's metrics (faster)")
    args = parser.parse_args(argv)
    quiet_logs()
    try:
        config = load_config(args.config)
        from pipeline.history import render_history, run_history

        records = run_history(config, read_metrics=not args.no_metrics)
    except (ConfigError, FileNotFoundError) as error:
        print(f"bertpipe: {error}", file=sys.stderr)
        return exit_codes.FAILED
    if args.json:
        for record in records:
            print(json.dumps(dataclasses.asdict(record), sort_keys=True))
    elif not records:
        print(f"pipeline {config.pipeline.name!r} has no runs yet ({config.metadata_path})")
    else:
        print(render_history(records))
    return exit_codes.PUSHED_OR_UNCHANGED


def rollback_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="bertpipe rollback",
        description="Serve an earlier pushed version again: its files are pushed atomically "
                    "as a new, highest version (TF Serving serves the highest), and the "
                    "rollback is recorded in the pipeline's ML Metadata store.")
    parser.add_argument("config", help="the pipeline's config (YAML)")
    parser.add_argument("--to", required=True, metavar="VERSION",
                        help="the pushed version to serve again (see `bertpipe runs`)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if config.kind != "finetune":
            raise ConfigError(f"{args.config}: rollback is for fine-tuning pipelines, which "
                              f"push to a TF Serving base path")
        from pipeline.history import rollback

        version, is_new = rollback(config, args.to)
    except (ConfigError, FileNotFoundError) as error:
        print(f"bertpipe: {error}", file=sys.stderr)
        return exit_codes.FAILED
    name = config.serving.model_name
    if is_new:
        print(f"ROLLED BACK: model {name!r} now serves version {args.to}'s files as version "
              f"{version} ({config.serving_model_dir})")
    else:
        print(f"UNCHANGED: version {args.to} of model {name!r} is identical to the newest "
              f"version {version}, which is already served")
    return exit_codes.PUSHED_OR_UNCHANGED
