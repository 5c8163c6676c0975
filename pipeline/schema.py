"""The data schema of a text-classification pipeline, derived from its config.

An inferred schema learns whatever the data holds, bad labels included. Deriving it from the
config makes the rules explicit: the text is present in every row, and the label is an
integer index into `data.classes`. ExampleValidator checks each run's statistics against it.
"""

from __future__ import annotations

import hashlib
import os

from pipeline.config import FinetuneConfig


def schema_text(config: FinetuneConfig) -> str:
    """The schema as a tensorflow_metadata Schema text proto."""
    text_features = [config.data.text_feature]
    if config.data.second_text_feature:
        text_features.append(config.data.second_text_feature)
    parts = []
    for name in text_features:
        parts.append(
            "feature {\n"
            f'  name: "{name}"\n'
            "  type: BYTES\n"
            "  presence { min_fraction: 1.0 min_count: 1 }\n"
            "  shape { dim { size: 1 } }\n"
            "}\n"
        )
    parts.append(
        "feature {\n"
        f'  name: "{config.data.label_feature}"\n'
        "  type: INT\n"
        f'  int_domain {{ name: "{config.data.label_feature}" min: 0 '
        f"max: {len(config.data.classes) - 1} }}\n"
        "  presence { min_fraction: 1.0 min_count: 1 }\n"
        "  shape { dim { size: 1 } }\n"
        "}\n"
    )
    return "".join(parts)


def write_schema(config: FinetuneConfig, directory: str) -> str:
    """Writes the schema to a content-addressed file (so a changed schema is never cached)."""
    text = schema_text(config)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = os.path.join(directory, f"schema-{digest}.pbtxt")
    if not os.path.exists(path):
        os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    return path
