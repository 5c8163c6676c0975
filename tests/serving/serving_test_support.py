"""Shared test data and helpers for tests/serving (imported by conftest.py and tests)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
MODEL_NAME = "sst2"
VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "a", "an", "the", "film", "movie", "gorgeous", "dull", "mess", "great", "bad", "good",
    "is", "was", "and", "not", "it", "##s", "story", "acting", "!", ".", ",",
]  # fmt: skip
SENTENCES = [
    "a gorgeous film",
    "a dull mess",
    "the acting is great, and the story is good!",
    "it was not a good movie.",
    "bad bad bad",
    "Unknown wörds ünd UPPER case",
]
# Version 1 and 2 differ in weights, bias and class order, so every response tells them apart:
# version 1 leans to its first class "negative", version 2 to its first class "positive".
VERSION_CLASSES = {1: ["negative", "positive"], 2: ["positive", "negative"]}


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: every socket stays bound until all are chosen, so the
    system cannot hand out the same port twice (separate free_port() calls may)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def free_port() -> int:
    return free_ports(1)[0]


def export_version(version: int, export_dir: str) -> None:
    """Exports a tiny BERT classifier as `version` with the export contract."""
    import keras
    import keras_hub

    from serving.export import export_saved_model
    from serving.text_encoder import BertTextEncoder

    keras.utils.set_random_seed(version)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB),
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=32,
    )
    classifier = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None)
    kernel, _ = classifier.output_dense.get_weights()
    classifier.output_dense.set_weights([kernel * 40.0, np.array([1.5, -1.5], dtype="float32")])
    export_saved_model(classifier, BertTextEncoder(VOCAB, 16), VERSION_CLASSES[version], export_dir)


@dataclass
class Exports:
    """The exported versions and their outputs computed in-process (the ground truth)."""

    root: Path
    paths: dict[int, Path]

    def reference(self, version: int, texts: list[str]) -> dict[str, np.ndarray]:
        import tensorflow as tf
        import tensorflow_text  # noqa: F401

        if not hasattr(self, "_loaded"):
            self._loaded = {}
        if version not in self._loaded:
            self._loaded[version] = tf.saved_model.load(str(self.paths[version]))
        outputs = self._loaded[version].signatures["serving_default"](text=tf.constant(texts))
        return {name: tensor.numpy() for name, tensor in outputs.items()}

    def copy_version(self, version: int, base_path: Path, as_version: int | None = None) -> Path:
        """Copies a version into a base path the way the pusher does: temp name + rename."""
        base_path.mkdir(parents=True, exist_ok=True)
        target = base_path / str(as_version or version)
        temporary = base_path / f".tmp-{target.name}"
        shutil.copytree(self.paths[version], temporary)
        os.rename(temporary, target)
        return target


def real_tf_serving() -> bool:
    """True when TF_SERVING_REST/TF_SERVING_GRPC point the API tests at a real TF Serving."""
    return bool(os.environ.get("TF_SERVING_REST") or os.environ.get("TF_SERVING_GRPC"))
