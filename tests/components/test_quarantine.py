"""Bad rows quarantined, not fatal, as TFX runs it: the CSV, CoNLL and SQuAD example gens in
LocalDagRunner pipelines with a SQLite ML Metadata store. Under `max_bad_fraction` the run
goes on with every good row, the quarantine file (beside the artifact) holds each bad row
with its file, line and reason, and the artifact carries the counts; over it the run fails
with TooManyBadRowsError naming the quarantine file, which is still there afterwards.
Imports TFX (~40 s); the parsers' own tests are beside them in components/."""

from __future__ import annotations

import glob
import json
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

from components import quarantine
from components.conll_example_gen.component import ConllExampleGen
from components.csv_example_gen.component import CsvExampleGen
from components.quarantine import TooManyBadRowsError, read_quarantine_file
from components.squad_example_gen.component import SquadExampleGen

pytestmark = pytest.mark.slow


def _splits(**patterns: str) -> example_gen_pb2.Input:
    return example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name=name, pattern=pattern) for name, pattern in patterns.items()
    ])


def _run(tmp_path: Path, example_gen) -> metadata_store.MetadataStore:
    mlmd_path = tmp_path / "mlmd.sqlite"
    try:
        LocalDagRunner().run(
            tfx_pipeline.Pipeline(
                pipeline_name="quarantine-test",
                pipeline_root=str(tmp_path / "root"),
                components=[example_gen],
                enable_cache=False,
                metadata_connection_config=metadata.sqlite_metadata_connection_config(str(mlmd_path)),
            )
        )
    finally:
        config = metadata_store_pb2.ConnectionConfig()
        config.sqlite.filename_uri = str(mlmd_path)
        store = metadata_store.MetadataStore(config)
    return store


def _examples(store: metadata_store.MetadataStore) -> metadata_store_pb2.Artifact:
    [execution] = store.get_executions()
    assert execution.last_known_state == metadata_store_pb2.Execution.COMPLETE
    [examples] = store.get_artifacts_by_type("Examples")
    return examples


def _counts(examples: metadata_store_pb2.Artifact) -> dict[str, int | str]:
    props = examples.custom_properties
    return {
        name: props[name].int_value
        for name in (quarantine.ROWS_READ_PROPERTY, quarantine.ROWS_KEPT_PROPERTY,
                     quarantine.ROWS_QUARANTINED_PROPERTY)
    }


def _read_split(examples_uri: str, split: str) -> list[dict[str, list]]:
    files = sorted(glob.glob(os.path.join(examples_uri, f"Split-{split}", "*.gz")))
    assert files, f"no TFRecords in Split-{split}"
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        features = tf.train.Example.FromString(record.numpy()).features.feature
        rows.append({name: list(f.bytes_list.value or f.int64_list.value) for name, f in features.items()})
    return rows


# CSV: a train file with good rows and one bad row of each kind, and a clean eval file. ------

GOOD_TRAIN = [(b"a gorgeous film", 1), (b"a dull mess", 0), (b"quoted, with a comma", 1),
              (b"two\nlines", 0), (b"after the bad quote", 1), (b"the last one", 0)]
BIG_FIELD = b"x" * 1_048_576


def _csv_input(base: Path, span: int = 1) -> tuple[Path, Path, dict[int, str]]:
    """Writes span-<span>/train.csv and eval.csv; returns their paths and, for each bad
    line of train.csv, its expected reason."""
    folder = base / f"span-{span}"
    folder.mkdir(parents=True)
    train = folder / "train.csv"
    train.write_bytes(
        b"sentence,label\r\n"                    # 1 (CRLF endings)
        b"a gorgeous film,1\r\n"                 # 2
        b"caf\xe9 au lait,1\r\n"                 # 3 latin-1, not UTF-8
        b"a dull mess,0\r\n"                     # 4
        b"one,comma too many,1\r\n"              # 5
        b'"quoted, with a comma",1\r\n'          # 6
        + BIG_FIELD + b",0\r\n"                  # 7
        b'"two\nlines",0\r\n'                    # 8-9
        b'"never closed,1\r\n'                   # 10
        b"after the bad quote,1\r\n"             # 11
        b"a label outside,7\r\n"                 # 12
        b"not a number,positive\r\n"             # 13
        b"the last one,0\r\n"                    # 14
    )
    bad = {
        3: "not UTF-8: byte 0xe9 at column 4",
        5: "3 columns, the header has 2",
        7: "field 1 is 1048576 bytes, over data.max_field_bytes (100000)",
        10: "unterminated quote in field 1",
        12: "label 7 is outside the 2 classes (0..1)",
        13: "label 'positive' is not an integer",
    }
    evaluation = folder / "eval.csv"
    evaluation.write_text("sentence,label\nfine,1\nbad,0\n")
    return train, evaluation, bad


def _csv_gen(base: Path, max_bad_fraction: float) -> CsvExampleGen:
    return CsvExampleGen(
        str(base),
        _splits(train="span-{SPAN}/train.csv", eval="span-{SPAN}/eval.csv"),
        label_column="label",
        num_classes=2,
        max_bad_fraction=max_bad_fraction,
    )


def test_csv_under_the_threshold_keeps_every_good_row_and_quarantines_each_bad_one(tmp_path: Path):
    base = tmp_path / "csv"
    train, _, expected_bad = _csv_input(base)

    # 6 bad of 14 rows read (12 train, 2 eval): 0.43.
    examples = _examples(_run(tmp_path, _csv_gen(base, max_bad_fraction=0.45)))

    assert _counts(examples) == {"rows_read": 14, "rows_kept": 8, "rows_quarantined": 6}
    assert examples.custom_properties["span"].int_value == 1
    quarantine_file = examples.custom_properties[quarantine.QUARANTINE_FILE_PROPERTY].string_value
    execution_id = os.path.basename(examples.uri)
    assert quarantine_file == str(tmp_path / "root" / "CsvExampleGen" / "quarantine" / f"{execution_id}.jsonl")
    assert sorted(os.listdir(os.path.dirname(quarantine_file))) == [f"{execution_id}.jsonl"]

    rows = read_quarantine_file(quarantine_file)
    assert [(row.file, row.line, row.reason) for row in rows] == [
        (str(train), line, reason) for line, reason in sorted(expected_bad.items())
    ]
    raw_by_line = {row.line: row for row in rows}
    assert raw_by_line[3].raw == b"caf\xe9 au lait,1"
    assert raw_by_line[10].raw == b'"never closed,1'
    assert raw_by_line[7].raw == BIG_FIELD[:100_000] and raw_by_line[7].truncated
    with open(quarantine_file, encoding="utf-8") as stream:
        first = json.loads(stream.readline())
    assert first == {"file": str(train), "line": 3, "position": None,
                     "reason": "not UTF-8: byte 0xe9 at column 4",
                     "raw": "caf\\xe9 au lait,1", "truncated": False}

    train_rows = _read_split(examples.uri, "train")
    assert sorted((row["sentence"][0], row["label"][0]) for row in train_rows) == sorted(GOOD_TRAIN)
    assert sorted(row["sentence"][0] for row in _read_split(examples.uri, "eval")) == [b"bad", b"fine"]


def test_read_newest_spans_reads_each_existing_span_of_the_window_at_its_newest_version(
        tmp_path: Path):
    """How Vertex runs `data.rolling_spans` (no rolling-range resolver there): the ExampleGen
    itself reads spans S-N+1..S. Spans 1, 3 and 4 exist (2 is a gap), span 3 in two
    versions; a window of 3 reads span 3 at version 2 and span 4, and only them."""
    base = tmp_path / "csv"
    for span, version, sentences in [(1, 1, ["one"]), (3, 1, ["three old"]),
                                     (3, 2, ["three new", "three newer"]), (4, 1, ["four"])]:
        folder = base / f"span-{span}" / f"ver-{version}"
        folder.mkdir(parents=True)
        (folder / "train.csv").write_text(
            "sentence,label\n" + "".join(f"{text},1\n" for text in sentences))
        (folder / "eval.csv").write_text(f"sentence,label\neval {span}.{version},0\n")
    example_gen = CsvExampleGen(
        str(base),
        _splits(train="span-{SPAN}/ver-{VERSION}/train.csv",
                eval="span-{SPAN}/ver-{VERSION}/eval.csv"),
        label_column="label", num_classes=2)
    quarantine.read_newest_spans(example_gen, 3)

    examples = _examples(_run(tmp_path, example_gen))

    assert examples.custom_properties["span"].int_value == 4
    assert examples.custom_properties[quarantine.SPANS_READ_PROPERTY].string_value == "3,4"
    assert _counts(examples) == {"rows_read": 5, "rows_kept": 5, "rows_quarantined": 0}
    assert sorted(row["sentence"][0] for row in _read_split(examples.uri, "train")) == [
        b"four", b"three new", b"three newer"]
    assert sorted(row["sentence"][0] for row in _read_split(examples.uri, "eval")) == [
        b"eval 3.2", b"eval 4.1"]


def test_csv_over_the_threshold_fails_naming_the_quarantine_file_which_survives(tmp_path: Path):
    base = tmp_path / "csv"
    train, _, expected_bad = _csv_input(base)

    with pytest.raises(TooManyBadRowsError) as raised:
        _run(tmp_path, _csv_gen(base, max_bad_fraction=0.0))

    error = raised.value
    folder = tmp_path / "root" / "CsvExampleGen" / "quarantine"
    [name] = os.listdir(folder)
    assert error.quarantine_file == str(folder / name)
    first_five = sorted(expected_bad.items())[:5]
    assert str(error).splitlines() == [
        f"6 of 14 rows read (42.8571%) were quarantined, over data.max_bad_fraction 0 (0%); "
        f"all are in {folder / name}; the first 5:",
        *(f"  {train}:{line}: {reason}" for line, reason in first_five),
        "  ... and 1 more",
    ]
    # TFX removed the failed execution's Examples, but not the quarantine file.
    assert not os.path.exists(tmp_path / "root" / "CsvExampleGen" / "examples" / name.removesuffix(".jsonl"))
    assert [row.line for row in read_quarantine_file(str(folder / name))] == sorted(expected_bad)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "mlmd.sqlite")
    [execution] = metadata_store.MetadataStore(config).get_executions()
    assert execution.last_known_state == metadata_store_pb2.Execution.FAILED


# CoNLL and SQuAD under a threshold: the same executor base, their own rows. ---------------


def test_conll_under_the_threshold_quarantines_each_bad_sentence(tmp_path: Path):
    base = tmp_path / "ner"
    base.mkdir()
    train = base / "train.conll"
    train.write_bytes(
        b"Ada\tB-PER\nvisited\tO\n\n"            # 1-2 good
        b"Bob\tB-animal\nran\tO\n\n"             # 4: a type outside entity_types
        b"Caf\xe9\tO\n\n"                        # 7: not UTF-8
        b"Zurich\tB-LOC\n\n"                     # 9 good
        + b"w" * 300 + b"\tO\n\n"                # 11: over max_field_bytes
        b"Paris\tB-LOC\tX\n"                     # 13: 3 columns
    )
    (base / "eval.conll").write_text("Bern\tB-LOC\n")
    example_gen = ConllExampleGen(
        str(base), _splits(train="train.conll", eval="eval.conll"),
        entity_types=["PER", "LOC"], max_bad_fraction=0.75, max_field_bytes=200)

    examples = _examples(_run(tmp_path, example_gen))

    assert _counts(examples) == {"rows_read": 7, "rows_kept": 3, "rows_quarantined": 4}
    quarantine_file = examples.custom_properties[quarantine.QUARANTINE_FILE_PROPERTY].string_value
    assert os.path.dirname(quarantine_file) == str(tmp_path / "root" / "ConllExampleGen" / "quarantine")
    rows = read_quarantine_file(quarantine_file)
    assert [(row.file, row.line, row.reason) for row in rows] == [
        (str(train), 4, "entity type 'animal' of tag 'B-animal' is not one of the configured "
                        "types (PER, LOC)"),
        (str(train), 7, "not UTF-8: byte 0xe9 at column 4"),
        (str(train), 11, "line is 302 bytes, over data.max_field_bytes (200)"),
        (str(train), 13, "3 columns, but the file's first token line (line 1) has 2"),
    ]
    assert rows[0].raw == b"Bob\tB-animal\nran\tO"  # the whole sentence
    assert sorted(row["tokens"] for row in _read_split(examples.uri, "train")) == [
        [b"Ada", b"visited"], [b"Zurich"]]
    assert _read_split(examples.uri, "eval") == [{"tokens": [b"Bern"], "tags": [b"B-LOC"]}]


def test_squad_under_the_threshold_quarantines_each_bad_record(tmp_path: Path):
    base = tmp_path / "squad"
    base.mkdir()
    context = "The Normans were in Normandy, a region in France."

    def question(qid: str, text: str, start: int) -> dict:
        return {"id": qid, "question": f"{qid}?", "answers": [{"text": text, "answer_start": start}]}

    document = {"data": [
        {"title": "Normans", "paragraphs": [{"context": context, "qas": [
            question("q1", "Normandy", 20),
            question("q2", "France", 41),  # off by one
            question("q3", "France", 42),
        ]}]},
        {"title": "Empty", "paragraphs": [{"context": "", "qas": [question("q4", "x", 0)]}]},
    ]}
    good = base / "good.json"
    good.write_text(json.dumps(document, indent=1))
    broken = base / "broken.json"
    broken.write_text('{"data": [\n  {"title": "x",, }]}\n')
    example_gen = SquadExampleGen(
        str(base), _splits(train="good.json", eval="broken.json"), max_bad_fraction=0.8)

    examples = _examples(_run(tmp_path, example_gen))

    assert _counts(examples) == {"rows_read": 5, "rows_kept": 2, "rows_quarantined": 3}
    rows = read_quarantine_file(
        examples.custom_properties[quarantine.QUARANTINE_FILE_PROPERTY].string_value)
    lines = good.read_text().splitlines()
    # Indented JSON: q2's object opens on line 19, the bad paragraph's on line 46.
    assert (lines[18:20], lines[45:47]) == (["      {", '       "id": "q2",'],
                                            ["    {", '     "context": "",'])
    assert [row.describe() for row in rows] == [
        f"{broken}:2: not valid JSON at column 17: Expecting property name enclosed in double quotes",
        f"{good}:19: data[0].paragraphs[0].qas[1] (id q2): answers[0].answer_start: 41 "
        "points at ' Franc', not at the answer text 'France'; the text occurs at 42",
        f"{good}:46: data[1].paragraphs[0]: context: empty",
    ]
    assert rows[0].raw == b'  {"title": "x",, }]}'
    assert json.loads(rows[1].raw) == document["data"][0]["paragraphs"][0]["qas"][1]
    assert sorted(row["id"][0] for row in _read_split(examples.uri, "train")) == [b"q1", b"q3"]
