"""Apache Airflow: `bertpipe compile CONFIG --target airflow --output DIR`.

`write_dag_file` writes `DIR/<pipeline name>.py`, a small DAG file for Airflow's dags folder.
It names this project's folder (put first on `sys.path`, so the project need not be installed
in Airflow's environment, only its dependencies: `requirements-airflow.lock`) and the config
by absolute path. Each time Airflow parses the file, `create_dag` reads and validates the
config, builds the pipeline with the same `create_pipeline` as `bertpipe run`, and gives it to
TFX's `AirflowDagRunner`: one Airflow task per TFX component, DAG id = `pipeline.name`,
schedule = `pipeline.schedule` (cron or preset; none: runs only when triggered), a fixed
start date and no catch-up, one run at a time (the pipeline's ML Metadata store and pushes
must not race). Editing the config, its schedule included, needs no new compile.

Parsing the file imports TFX and TensorFlow: tens of seconds, more than Airflow's default
`[core] dagbag_import_timeout` of 30 s on a small machine. Set it to a few minutes
(`AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=300`), with `dag_file_processor_timeout` above it and
`[scheduler] min_file_process_interval` long enough that the scheduler is not re-importing
TFX all the time.
"""

from __future__ import annotations

import datetime
import os

# A fixed date in the past: with catchup off, Airflow schedules only the latest interval.
START_DATE = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)

# The project's root: the folder holding `pipeline/`, `components/`, ...
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_DAG_FILE = '''\
"""Airflow DAG {dag_id!r}: the bertpipe pipeline configured in {config_path}.

Written by `bertpipe compile ... --target airflow`. Each time Airflow parses this file the DAG
is built from the config (TFX's AirflowDagRunner: one task per TFX component), so edits to
the config, its `pipeline.schedule` included, apply without compiling again. Schedule when
written: {schedule!r}. Parsing imports TFX (tens of seconds): set Airflow's
[core] dagbag_import_timeout to a few minutes.
"""

import sys

BERTPIPE_ROOT = {project_root!r}
CONFIG = {config_path!r}

if BERTPIPE_ROOT not in sys.path:
    sys.path.insert(0, BERTPIPE_ROOT)

from pipeline.runners.airflow import create_dag  # noqa: E402

dag = create_dag(CONFIG)
'''


def dag_settings(config) -> dict:
    """The arguments of Airflow's `DAG(...)` (TFX's `AirflowPipelineConfig.airflow_dag_config`)."""
    return {
        "schedule": config.pipeline.schedule,
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "tags": ["bertpipe"],
        "description": f"bertpipe {config.kind} pipeline {config.pipeline.name!r}",
    }


def dag_file_name(config) -> str:
    return f"{config.pipeline.name}.py"


def dag_file_text(config, config_path: str, project_root: str = PROJECT_ROOT) -> str:
    """The DAG file's source for `config`, read from `config_path` (made absolute)."""
    return _DAG_FILE.format(
        dag_id=config.pipeline.name,
        config_path=os.path.abspath(config_path),
        schedule=config.pipeline.schedule,
        project_root=os.path.abspath(project_root),
    )


def write_dag_file(config, config_path: str, output_dir: str) -> str:
    """Writes the DAG file into `output_dir` (created if missing); returns its path.

    Written to a temporary name and renamed, so that an Airflow scheduler watching the folder
    never parses half a file.
    """
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, dag_file_name(config))
    tmp = os.path.join(output_dir, f".{dag_file_name(config)}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dag_file_text(config, config_path))
    os.replace(tmp, path)
    return path


_LAUNCHER = None


def launcher_class():
    """TFX's in-process launcher (what AirflowDagRunner uses), publishing a Transform over
    several spans (`data.rolling_spans` > 1) as the portable runners do.

    With N input Examples artifacts, TFX's Transform executor replaces its one output
    artifact by N new ones under its URI (`artifact_utils.replicate_artifacts`). The portable
    launcher (`bertpipe run`) publishes those; this legacy launcher had already registered
    the one output, which stays in ML Metadata without splits, and the Trainer then fails
    ("Split does not exist over all example artifacts: train"). Replicating before the
    executor runs, with the registered artifact as the first replica, publishes N artifacts
    with their splits and nothing else.
    """
    global _LAUNCHER
    if _LAUNCHER is not None:
        return _LAUNCHER
    from tfx.components.transform.executor import Executor as TransformExecutor
    from tfx.orchestration.launcher.in_process_component_launcher import (
        InProcessComponentLauncher,
    )
    from tfx.types import artifact_utils
    from tfx.types.standard_component_specs import EXAMPLES_KEY, TRANSFORMED_EXAMPLES_KEY

    class SpanAwareInProcessLauncher(InProcessComponentLauncher):
        def _run_executor(self, execution_id, input_dict, output_dict, exec_properties):
            executor = getattr(self._component_executor_spec, "executor_class", None)
            outputs = output_dict.get(TRANSFORMED_EXAMPLES_KEY)
            count = len(input_dict.get(EXAMPLES_KEY) or [])
            if (isinstance(executor, type) and issubclass(executor, TransformExecutor)
                    and count > 1 and outputs is not None and len(outputs) == 1):
                registered = outputs[0]
                replicas = artifact_utils.replicate_artifacts(registered, count)
                registered.uri = replicas[0].uri
                outputs[:] = [registered, *replicas[1:]]  # the list the publisher publishes
            super()._run_executor(execution_id, input_dict, output_dict, exec_properties)

    _LAUNCHER = SpanAwareInProcessLauncher
    return _LAUNCHER


def create_dag(config_path: str):
    """The Airflow DAG of the config at `config_path`: what the generated DAG file calls.

    Raises `pipeline.config.ConfigError` (one line naming the file and key) for a bad config,
    which Airflow shows as the file's import error.
    """
    from pipeline.config import load_config

    config = load_config(config_path)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from tfx.orchestration.airflow.airflow_dag_runner import (
        AirflowDagRunner,
        AirflowPipelineConfig,
    )

    from pipeline.runners import create_pipeline

    runner = AirflowDagRunner(AirflowPipelineConfig(
        airflow_dag_config=dag_settings(config), supported_launcher_classes=[launcher_class()]))
    return runner.run(create_pipeline(config))

