"""ConllExampleGen as TFX runs it: a LocalDagRunner pipeline with a SQLite ML Metadata
store, span resolution, input and hash output splits, and a failing run on a bad file (its
bad sentences quarantined). Imports TFX (~40 s); the parser's own tests are in
components/conll_example_gen/, the quarantine's under a threshold in test_quarantine.py."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts

from components.conll_example_gen import executor as conll_executor
from components.conll_example_gen.component import ConllExampleGen
from components.quarantine import QuarantinedRow, TooManyBadRowsError, read_quarantine_file

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
WNUT17_DIR = REPO_ROOT / "data" / "wnut17"
WNUT17_TYPES = ["person", "location", "group", "creative-work", "corporation", "product"]
CONLL03_TYPES = ["PER", "ORG", "LOC", "MISC"]

TRAIN_EVAL = example_gen_pb2.Input(
    splits=[
        example_gen_pb2.Input.Split(name="train", pattern="span-{SPAN}/train*.conll"),
        example_gen_pb2.Input.Split(name="eval", pattern="span-{SPAN}/eval.conll"),
    ]
)


def _run(tmp_path: Path, example_gen: ConllExampleGen) -> metadata_store.MetadataStore:
    mlmd_path = tmp_path / "mlmd.sqlite"
    LocalDagRunner().run(
        tfx_pipeline.Pipeline(
            pipeline_name="conll_example_gen_test",
            pipeline_root=str(tmp_path / "root"),
            components=[example_gen],
            enable_cache=False,
            metadata_connection_config=metadata.sqlite_metadata_connection_config(str(mlmd_path)),
        )
    )
    return _store(mlmd_path)


def _store(mlmd_path: Path) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(mlmd_path)
    return metadata_store.MetadataStore(config)


def _read_split(examples_uri: str, split: str) -> list[dict[str, list[str]]]:
    files = sorted(glob.glob(os.path.join(examples_uri, f"Split-{split}", "*.gz")))
    assert files, f"no TFRecords in Split-{split}"
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        features = tf.train.Example.FromString(record.numpy()).features.feature
        rows.append({name: [v.decode("utf-8") for v in f.bytes_list.value] for name, f in features.items()})
    return rows


def test_pipeline_writes_one_example_per_sentence_with_iob2_tags(tmp_path: Path):
    base = tmp_path / "ner"
    (base / "span-1").mkdir(parents=True)
    (base / "span-1" / "train.conll").write_text("Old\tO\n")
    (base / "span-1" / "eval.conll").write_text("Old\tO\n")
    (base / "span-2").mkdir()
    # IOB1, tab-separated, DOCSTART, a whitespace-only break, no final newline.
    (base / "span-2" / "train_a.conll").write_bytes(
        b"-DOCSTART-\tO\n\nAda\tI-PER\nLovelace\tI-PER\nvisited\tO\nZ\xc3\xbcrich\tI-LOC\n\t\n"
        b"ACME\tI-ORG\nships\tO"
    )
    # Space-separated CoNLL-2003 columns, IOB2, the tag in the last column.
    (base / "span-2" / "train_b.conll").write_text("Nordic JJ B-NP B-MISC\nkettle NN I-NP O\n\n")
    (base / "span-2" / "eval.conll").write_text("Paris NNP B-NP B-LOC\nSaint NNP I-NP B-PER\n")

    store = _run(tmp_path, ConllExampleGen(str(base), TRAIN_EVAL, entity_types=CONLL03_TYPES))

    [execution] = store.get_executions()
    assert execution.last_known_state == metadata_store_pb2.Execution.COMPLETE
    [examples] = store.get_artifacts_by_type("Examples")
    assert examples.custom_properties["span"].int_value == 2  # The newest span.
    props = examples.custom_properties
    assert [props[name].int_value for name in ("rows_read", "rows_kept", "rows_quarantined")] == [4, 4, 0]
    assert examples.properties["split_names"].string_value == '["train", "eval"]'
    train = sorted(_read_split(examples.uri, "train"), key=lambda row: row["tokens"])
    assert train == [
        {"tokens": ["ACME", "ships"], "tags": ["B-ORG", "O"]},
        {"tokens": ["Ada", "Lovelace", "visited", "Zürich"], "tags": ["B-PER", "I-PER", "O", "B-LOC"]},
        {"tokens": ["Nordic", "kettle"], "tags": ["B-MISC", "O"]},
    ]
    assert _read_split(examples.uri, "eval") == [{"tokens": ["Paris", "Saint"], "tags": ["B-LOC", "B-PER"]}]
    assert os.path.getsize(props["quarantine_file"].string_value) == 0  # written, empty


def test_wnut17_sample_hash_split_by_output_config_with_own_feature_names(tmp_path: Path):
    output_config = example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=4),
                example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1),
            ]
        )
    )
    example_gen = ConllExampleGen(
        str(WNUT17_DIR),
        example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="all", pattern="*.conll")]),
        output_config,
        entity_types=WNUT17_TYPES,
        tokens_feature="words",
        tags_feature="ner_tags",
    )
    store = _run(tmp_path, example_gen)

    [examples] = store.get_artifacts_by_type("Examples")
    train, evaluation = _read_split(examples.uri, "train"), _read_split(examples.uri, "eval")
    assert len(train) + len(evaluation) == 1500 + 500
    assert 0.1 < len(evaluation) / 2000 < 0.3  # About 1 in 5.
    rows = train + evaluation
    assert all(set(row) == {"words", "ner_tags"} and len(row["words"]) == len(row["ner_tags"]) for row in rows)
    assert sum(len(row["words"]) for row in rows) == 29_189 + 7_759
    first = ["@paulwalk", "It", "'s", "the", "view", "from", "where", "I", "'m", "living", "for", "two", "weeks", "."]
    [row] = [row for row in rows if row["words"][:14] == first]
    assert row["ner_tags"][14:17] == ["B-location", "I-location", "I-location"]  # Empire State Building


def test_a_bad_file_fails_the_run_naming_file_and_line(tmp_path: Path):
    base = tmp_path / "ner"
    (base / "span-0").mkdir(parents=True)
    (base / "span-0" / "train.conll").write_bytes(b"A\tO\nB\tB-PER\n\nC\tB-FOO\nD\tO\n\nE\xff\tO\n")
    (base / "span-0" / "eval.conll").write_bytes(b"F\tO\n\nG\tO\tO\n")

    with pytest.raises(TooManyBadRowsError) as raised:
        _run(tmp_path, ConllExampleGen(str(base), TRAIN_EVAL, entity_types=CONLL03_TYPES))

    train, evaluation = base / "span-0" / "train.conll", base / "span-0" / "eval.conll"
    quarantine_file = raised.value.quarantine_file
    assert os.path.dirname(quarantine_file) == str(tmp_path / "root" / "ConllExampleGen" / "quarantine")
    assert str(raised.value) == "\n".join(
        [
            "3 of 5 rows read (60%) were quarantined, over data.max_bad_fraction 0 (0%); "
            f"all are in {quarantine_file}:",
            f"  {evaluation}:3: 3 columns, but the file's first token line (line 1) has 2",
            f"  {train}:4: entity type 'FOO' of tag 'B-FOO' is not one of the configured types (PER, ORG, LOC, MISC)",
            f"  {train}:7: not UTF-8: byte 0xff at column 2",
        ]
    )
    assert [row.line for row in read_quarantine_file(quarantine_file)] == [3, 4, 7]
    [execution] = _store(tmp_path / "mlmd.sqlite").get_executions()
    assert execution.last_known_state == metadata_store_pb2.Execution.FAILED


def test_executor_quarantines_the_bad_sentences_beside_the_artifact(tmp_path: Path):
    # Run outside a pipeline, the artifact directory stays (TFX deletes a failed
    # execution's outputs), so the examples that were written can be read back too.
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "train.conll").write_bytes(b"A\tO\n\nC\tB-FOO\nD\tO\n\nE\tB-PER\n")
    (tmp_path / "in" / "eval.conll").write_bytes(b"F\tO\n")
    input_config = example_gen_pb2.Input(
        splits=[
            example_gen_pb2.Input.Split(name="train", pattern="train.conll"),
            example_gen_pb2.Input.Split(name="eval", pattern="eval.conll"),
        ]
    )
    component = ConllExampleGen(str(tmp_path / "in"), input_config, entity_types=["PER"])
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "out")

    with pytest.raises(TooManyBadRowsError, match=r"train\.conll:3: entity type 'FOO'"):
        conll_executor.Executor().Do({}, {"examples": [examples]}, dict(component.exec_properties))

    assert examples.get_int_custom_property("rows_quarantined") == 1
    assert examples.get_int_custom_property("rows_read") == 4
    quarantine_file = str(tmp_path / "out.quarantine.jsonl")
    assert examples.get_string_custom_property("quarantine_file") == quarantine_file
    assert read_quarantine_file(quarantine_file) == [
        QuarantinedRow(
            str(tmp_path / "in" / "train.conll"),
            3,
            "entity type 'FOO' of tag 'B-FOO' is not one of the configured types (PER)",
            b"C\tB-FOO\nD\tO",  # the whole sentence
        )
    ]
    # The other sentences were written; "C D" was dropped.
    assert sorted(row["tokens"] for row in _read_split(examples.uri, "train")) == [["A"], ["E"]]
    assert _read_split(examples.uri, "eval") == [{"tokens": ["F"], "tags": ["O"]}]
