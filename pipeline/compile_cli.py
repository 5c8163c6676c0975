"""`bertpipe compile CONFIG --target airflow|vertex --output PATH`: a pipeline for a scheduler.

* `--target airflow --output DIR`: writes `DIR/<pipeline name>.py`, an Airflow DAG file
  (`pipeline/runners/airflow.py`) scheduled by the config's `pipeline.schedule`;
* `--target vertex --output FILE.json`: writes a Kubeflow Pipelines v2 / Vertex AI Pipelines
  job spec (`pipeline/runners/vertex.py`) whose components run `--image` (built by the
  project's `Dockerfile`).

The config is validated first (no TFX import for a bad one), then the pipeline is built once
with TFX, as the orchestrator will build it, so a missing checkpoint or a pipeline the target
cannot express fails here rather than in the scheduler. Exit code 0 when the file was
written, 1 otherwise, with `bertpipe: <one line>` on stderr.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.config import ConfigError, load_config
from pipeline.runners.vertex import DEFAULT_IMAGE

SUCCESS, FAILED = 0, 1

TARGETS = {
    "airflow": "an Airflow DAG file, written into the folder --output (Airflow's dags folder)",
    "vertex": "a Kubeflow Pipelines v2 / Vertex AI Pipelines JSON spec, written to --output",
}


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _fail(message: str) -> int:
    print(f"bertpipe: {message}", file=sys.stderr)
    return FAILED


def _compile_airflow(config, config_path: str, output: str) -> str:
    from pipeline.runners import create_pipeline
    from pipeline.runners.airflow import write_dag_file

    create_pipeline(config)  # what Airflow will do on each parse: fail here, not there
    path = write_dag_file(config, config_path, output)
    schedule = config.pipeline.schedule
    when = f"schedule {schedule!r}" if schedule else "no schedule: runs only when triggered"
    return f"wrote Airflow DAG {config.pipeline.name!r} ({when}) to {path}"


def _compile_vertex(config, output: str, image: str) -> str:
    from pipeline.runners.vertex import compile_vertex, local_paths

    path = compile_vertex(config, output, image=image)
    local = local_paths(config)
    if local:
        print(f"bertpipe: note: {', '.join(local)} are local paths; Vertex AI's containers "
              "see only gs:// URIs (and packages in the image)", file=sys.stderr)
    return f"wrote Vertex AI pipeline {config.pipeline.name!r} (image {image}) to {path}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="bertpipe compile",
        description="Compile the pipeline a YAML config describes for a scheduler: "
                    + "; ".join(f"{name}: {help_}" for name, help_ in TARGETS.items()) + ".",
    )
    parser.add_argument("config", help="pipeline config (YAML), e.g. configs/scheduled_sst2.yaml")
    parser.add_argument("--target", required=True, help=f"one of: {', '.join(TARGETS)}")
    parser.add_argument("--output", required=True,
                        help="airflow: the folder to write <pipeline name>.py into; "
                             "vertex: the JSON file to write (a path or a gs:// URI)")
    parser.add_argument("--image", default=None,
                        help=f"vertex: the container image every component runs "
                             f"(default {DEFAULT_IMAGE}; build it with the Dockerfile)")
    args = parser.parse_args(argv)
    if args.target not in TARGETS:
        return _fail(f"unknown target {args.target!r} (known: {', '.join(TARGETS)})")
    if args.image is not None and args.target != "vertex":
        return _fail("--image applies to --target vertex only")
    try:
        config = load_config(args.config)
    except ConfigError as error:
        return _fail(str(error))

    import logging
    import warnings

    # Google client libraries warn about Python versions on import, once per module.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    try:
        if args.target == "airflow":
            done = _compile_airflow(config, args.config, args.output)
        else:
            done = _compile_vertex(config, args.output, args.image or DEFAULT_IMAGE)
    except Exception as error:  # the runner's or TFX's own message says what is wrong
        return _fail(f"cannot compile pipeline {config.pipeline.name!r} for {args.target}: "
                     f"{type(error).__name__}: {_one_line(error)}")
    print(done)
    return SUCCESS
