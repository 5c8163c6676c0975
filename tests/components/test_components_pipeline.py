"""The three custom components as TFX runs them: spans, executors, and a LocalDagRunner
pipeline with a real SQLite ML Metadata store (caching included). Imports TFX (~40 s)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.orchestration import metadata
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

from components import common
from components.pretraining_examples import pretraining_data
from components.pretraining_examples.component import PretrainingExampleGen
from components.text_example_gen import executor as text_executor
from components.text_example_gen import text_ingestion
from components.text_example_gen.component import TextExampleGen
from components.wordpiece_vocab import executor as vocab_executor
from components.wordpiece_vocab import vocab_learning
from components.wordpiece_vocab.artifacts import WordpieceVocabulary
from components.wordpiece_vocab.component import WordpieceVocab

_DTYPES = {schema_pb2.INT: tf.int64, schema_pb2.FLOAT: tf.float32}


def test_span_pattern_resolves_to_the_newest_span(tmp_path: Path):
    for span in (1, 2, 10):  # 10 is newest: compared as numbers, not as text.
        (tmp_path / f"span-{span}").mkdir()
        (tmp_path / f"span-{span}" / "a.txt").write_text(f"Span {span}.")
    input_config = example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name="single_split", pattern="span-{SPAN}/*.txt")]
    )
    fingerprint, span, version = text_executor.resolve_input(str(tmp_path), input_config)
    assert (span, version) == (10, None)
    assert input_config.splits[0].pattern == "span-10/*.txt"
    assert "num_files:1" in fingerprint


def test_text_example_gen_executor_reports_bad_input_on_the_artifact(tmp_path: Path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "good.txt").write_text("One doc. Two sentences.\n\nAnother doc.\n")
    (tmp_path / "in" / "bad.txt").write_bytes(b"Fine.\n" + b"x" * 100 + b"\n\xff\n")
    (tmp_path / "in" / "empty.txt").write_bytes(b"")
    component = TextExampleGen(str(tmp_path / "in"), "*.txt", max_line_bytes=64)
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "out")
    text_executor.Executor().Do({}, {"examples": [examples]}, dict(component.exec_properties))

    assert examples.get_int_custom_property("ingestion_issue_count") == 3
    assert json.loads(examples.get_string_custom_property("ingestion_issues_by_kind")) == {
        "empty_file": 1, "invalid_utf8": 1, "line_too_long": 1,
    }  # fmt: skip
    assert examples.get_int_custom_property("span") == 0
    assert artifact_utils.decode_split_names(examples.split_names) == ["train", "eval"]
    report = text_ingestion.read_ingestion_report(os.path.join(examples.uri, "ingestion_report.jsonl"))
    assert [(i.file, i.line, i.kind) for i in report] == [
        ("bad.txt", 2, "line_too_long"), ("bad.txt", 3, "invalid_utf8"), ("empty.txt", 0, "empty_file"),
    ]  # fmt: skip


def test_wordpiece_vocab_passthrough_preserves_the_imported_file(tmp_path: Path, minilm_vocab_path: str):
    imported = tmp_path / "vocab.txt"
    shutil.copy(minilm_vocab_path, imported)
    component = WordpieceVocab(imported_vocab_path=str(imported), lower_case=True)
    vocabulary = WordpieceVocabulary()
    vocabulary.uri = str(tmp_path / "out")
    vocab_executor.Executor().Do({}, {"vocabulary": [vocabulary]}, dict(component.exec_properties))

    assert (tmp_path / "out" / "vocab.txt").read_bytes() == imported.read_bytes()
    assert vocab_learning.read_vocabulary_dir(vocabulary.uri)[1] is True
    assert vocabulary.get_int_custom_property("vocab_size") == 30522
    assert vocabulary.get_string_custom_property("source") == "imported"

    # The file's hash is taken when the pipeline is defined: a later change fails the run.
    with imported.open("a") as f:
        f.write("extra\n")
    with pytest.raises(ValueError, match="changed since the pipeline was defined"):
        vocab_executor.Executor().Do({}, {"vocabulary": [vocabulary]}, dict(component.exec_properties))
    with pytest.raises(ValueError, match="exactly one"):
        WordpieceVocab()


def _executions(mlmd_path: Path) -> list[tuple[str, str]]:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(mlmd_path)
    store = metadata_store.MetadataStore(config)
    type_names = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    return [
        (type_names[e.type_id], metadata_store_pb2.Execution.State.Name(e.last_known_state))
        for e in sorted(store.get_executions(), key=lambda e: e.id)
    ]


def test_pipeline_runs_the_three_components_and_a_rerun_hits_the_cache(tmp_path: Path, corpus_paths):
    input_base = tmp_path / "corpus"
    oz = Path(corpus_paths[1]).read_text(encoding="utf-8")
    (input_base / "span-1").mkdir(parents=True)
    (input_base / "span-1" / "oz.txt").write_text(oz)
    (input_base / "span-2").mkdir()
    (input_base / "span-2" / "oz_part.txt").write_text(oz[:60_000])
    (input_base / "span-2" / "broken.txt").write_bytes(b"Broken \xc3 text.\n")
    (input_base / "span-2" / "empty.txt").write_bytes(b"\n")
    mlmd_path = tmp_path / "mlmd.sqlite"

    def build() -> tfx_pipeline.Pipeline:
        text_gen = TextExampleGen(str(input_base), "span-{SPAN}/*.txt", document_mode="blank_line")
        vocab = WordpieceVocab(text_gen.outputs["examples"], vocab_size=500)
        pretraining = PretrainingExampleGen(
            text_gen.outputs["examples"],
            vocab.outputs["vocabulary"],
            max_seq_length=64,
            max_predictions_per_seq=10,
            dupe_factor=1,
        )
        return tfx_pipeline.Pipeline(
            pipeline_name="pretraining_data_test",
            pipeline_root=str(tmp_path / "root"),
            components=[text_gen, vocab, pretraining],
            enable_cache=True,
            metadata_connection_config=metadata.sqlite_metadata_connection_config(str(mlmd_path)),
        )

    LocalDagRunner().run(build())
    assert _executions(mlmd_path) == [
        ("TextExampleGen", "COMPLETE"), ("WordpieceVocab", "COMPLETE"), ("PretrainingExampleGen", "COMPLETE"),
    ]  # fmt: skip

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(mlmd_path)
    store = metadata_store.MetadataStore(config)
    artifacts = {a.uri.split(os.sep)[-3] + "/" + a.uri.split(os.sep)[-2]: a for a in store.get_artifacts()}
    text_examples = artifacts["TextExampleGen/examples"]
    assert text_examples.custom_properties["span"].int_value == 2  # The newest span.
    assert text_examples.custom_properties["ingestion_issue_count"].int_value == 2
    assert os.path.exists(os.path.join(text_examples.uri, "ingestion_report.jsonl"))

    vocabulary = artifacts["WordpieceVocab/vocabulary"]
    tokens, lower_case = vocab_learning.read_vocabulary_dir(vocabulary.uri)
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and lower_case

    examples = artifacts["PretrainingExampleGen/pretraining_examples"]
    assert json.loads(examples.properties["split_names"].string_value) == ["train", "eval"]
    schema_uri = artifacts["PretrainingExampleGen/schema"].uri
    schema = io_utils.parse_pbtxt_file(os.path.join(schema_uri, pretraining_data.SCHEMA_FILE), schema_pb2.Schema())
    assert os.path.exists(os.path.join(examples.uri, pretraining_data.SCHEMA_FILE))
    spec = {f.name: tf.io.FixedLenFeature([d.size for d in f.shape.dim], _DTYPES[f.type]) for f in schema.feature}
    for split in ("train", "eval"):
        records = list(common.read_tfrecords(os.path.join(common.split_dir(examples.uri, split), "*.gz")))
        assert records, split
        parsed = tf.io.parse_example(records, spec)
        assert parsed["input_ids"].shape == (len(records), 64)
        assert tf.reduce_all(parsed["input_ids"] < len(tokens))

    LocalDagRunner().run(build())
    assert [state for _, state in _executions(mlmd_path)[3:]] == ["CACHED"] * 3
