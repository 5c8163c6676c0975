"""The data schema of a fine-tuning pipeline, derived from its config by its task.

An inferred schema learns whatever the data holds, bad labels included. Deriving it from the
config makes the rules explicit (for classification: the text is present in every row, and
the label is an integer index into `data.classes`). ExampleValidator checks each run's
statistics against it. Built with tensorflow_metadata's `schema_pb2`, not text templates.
"""

from __future__ import annotations

import hashlib
import os

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from pipeline.config import FinetuneConfig


def new_schema() -> schema_pb2.Schema:
    return schema_pb2.Schema()


def require_feature(
    schema: schema_pb2.Schema, name: str, type_name: str, dims: list[int] | None = None
) -> schema_pb2.Feature:
    """Adds a feature present in every example (`type_name`: BYTES, INT or FLOAT).

    `dims`: a fixed shape (e.g. [1] for one value per example); None for a variable-length
    list, which must hold at least one value.
    """
    feature = schema.feature.add()
    feature.name = name
    feature.type = schema_pb2.FeatureType.Value(type_name)
    feature.presence.min_fraction = 1.0
    feature.presence.min_count = 1
    if dims is None:
        feature.value_count.min = 1
    else:
        for size in dims:
            feature.shape.dim.add().size = size
    return feature


def schema_text(config: FinetuneConfig) -> str:
    """The task's schema as a tensorflow_metadata Schema text proto."""
    from pipeline.tasks import get_task

    return text_format.MessageToString(get_task(config).schema(config))


def write_schema(config: FinetuneConfig, directory: str) -> str:
    """Writes the schema to a content-addressed file (so a changed schema is never cached)."""
    text = schema_text(config)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = os.path.join(directory, f"schema-{digest}.pbtxt")
    if "://" in directory:  # gs:// (Vertex): TFX's filesystem layer; objects appear whole
        from tfx.dsl.io import fileio

        if not fileio.exists(path):
            fileio.makedirs(directory)
            with fileio.open(path, "w") as f:
                f.write(text)
    elif not os.path.exists(path):
        os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    return path
