"""`bertpipe score`: Beam RunInference over text, CSV and TFRecord files.

The ground truth is the served model: every scored row must equal a single-text request to
the server running the same version.
"""

from __future__ import annotations

import csv
import glob
import json
import re

import numpy as np
import pytest
import tensorflow as tf
from serving_test_support import SENTENCES

from serving import batch_score
from serving.protos import serving_protos

pytestmark = pytest.mark.usefixtures("needs_own_server")

# Texts with CSV quoting, an embedded newline and non-ASCII characters.
TEXTS = SENTENCES + ['he said "a gorgeous film"', "two\nlines, one text"]


def single_request_predictions(rest, texts: list[str]) -> dict[str, tuple[str, list[float]]]:
    """One request per text, as a client would send them."""
    return {text: (lambda p: (p.label, p.probabilities))(rest.predict([text])[0]) for text in texts}


def score(args: list[str], capsys) -> tuple[int, str]:
    code = batch_score.main(args)
    return code, capsys.readouterr().err


def assert_matches(records: list[dict], expected: dict) -> None:
    assert sorted(r["text"] for r in records) == sorted(expected)
    for record in records:
        label, probabilities = expected[record["text"]]
        assert record["label"] == label, record
        np.testing.assert_allclose(record["probabilities"], probabilities, atol=1e-5)


def test_csv_input_jsonl_output_equals_single_requests(exports, rest, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for part, texts in enumerate((TEXTS[:4], TEXTS[4:])):
        with open(data / f"part{part}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "sentence"])
            writer.writerows([i % 2, t] for i, t in enumerate(texts))
    output = tmp_path / "out" / "preds"
    code, err = score(
        [
            "--model-dir", str(exports.paths[2]),
            "--input", str(data / "*.csv"),
            "--output", str(output),
            "--direct_num_workers=2",
            "--direct_running_mode=multi_threading",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    # The total over both workers, from Beam's metrics.
    assert re.search(rf"^bertpipe score: scored {len(TEXTS)} rows in [\d.]+ s \([\d.]+ rows/s\)$",
                     err, re.MULTILINE), err
    records = [
        json.loads(line)
        for path in glob.glob(f"{output}-*.jsonl")
        for line in open(path, encoding="utf-8")
    ]
    assert_matches(records, single_request_predictions(rest, TEXTS))
    assert {r["file"] for r in records} == {str(data / "part0.csv"), str(data / "part1.csv")}
    lines = {(r["file"].rsplit("/", 1)[1], r["line"]) for r in records}
    # part1.csv: the quoted field with a newline spans lines 5-6 and is reported at line 5.
    assert lines == {(name, n) for name in ("part0.csv", "part1.csv") for n in (2, 3, 4, 5)}


def test_text_input_csv_output(exports, rest, tmp_path, capsys):
    texts = [t for t in TEXTS if "\n" not in t]
    source = tmp_path / "sentences.txt"
    source.write_text(
        "\n".join(texts[:3]) + "\n\n   \n" + "\n".join(texts[3:]) + "\n", encoding="utf-8"
    )
    output = tmp_path / "preds"
    code, err = score(
        [
            "--model-dir",
            str(exports.paths[2]),
            "--input",
            str(source),
            "--output",
            str(output),
            "--format",
            "csv",
        ],
        capsys,
    )
    assert code == 0, err
    assert f"bertpipe score: scored {len(texts)} rows in " in err  # blank lines are not rows
    (path,) = glob.glob(f"{output}-*.csv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # Version 2's class order names the probability columns.
    assert list(rows[0]) == [
        "file",
        "line",
        "text",
        "label",
        "probability_positive",
        "probability_negative",
    ]
    records = [
        {
            "text": row["text"],
            "label": row["label"],
            "probabilities": [
                float(row["probability_positive"]),
                float(row["probability_negative"]),
            ],
        }
        for row in rows
    ]
    assert_matches(records, single_request_predictions(rest, texts))
    assert sorted(int(row["line"]) for row in rows) == [1, 2, 3] + list(range(6, len(texts) + 3))


def test_tfrecord_input_uses_the_from_examples_signature(exports, rest, tmp_path, capsys):
    example_pb2 = serving_protos().example_pb2
    source = tmp_path / "examples.tfrecord"
    with tf.io.TFRecordWriter(str(source)) as writer:
        for text in TEXTS:
            example = example_pb2.Example()
            example.features.feature["text"].bytes_list.value.append(text.encode())
            writer.write(example.SerializeToString())
    output = tmp_path / "preds"
    code, err = score(
        [
            "--model-dir", str(exports.paths[2]),
            "--input", str(source),
            "--output", str(output),
            "--text-column", "text",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    records = [json.loads(line) for path in glob.glob(f"{output}-*.jsonl") for line in open(path)]
    assert_matches(records, single_request_predictions(rest, TEXTS))
    assert sorted(r["line"] for r in records) == list(range(1, len(TEXTS) + 1))


def test_bad_inputs_are_reported_with_file_and_line(exports, tmp_path, capsys):
    model = ["--model-dir", str(exports.paths[2]), "--output", str(tmp_path / "out")]
    no_column = tmp_path / "no_column.csv"
    no_column.write_text("text,label\na film,1\n")
    code, err = score(model + ["--input", str(no_column)], capsys)
    assert code == 1
    assert f"{no_column}:1: no column 'sentence' in the CSV header (columns: text, label)" in err

    bad_bytes = tmp_path / "bad.txt"
    bad_bytes.write_bytes(b"a gorgeous film\nfine\nbroken \xff\xfe text\n")
    code, err = score(model + ["--input", str(bad_bytes)], capsys)
    assert code == 1
    assert f"{bad_bytes}:3: line is not valid UTF-8" in err

    code, err = score(model + ["--input", str(tmp_path / "missing-*.csv")], capsys)
    assert code == 2 and "no files match" in err


def test_csv_reader_reports_malformed_rows(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('sentence,label\n"multi\nline",1\nonly one field\n')
    records = batch_score.read_csv_records(str(path), "sentence")
    assert next(records) == ((str(path), 2, "multi\nline"), "multi\nline")
    with pytest.raises(
        batch_score.InputError, match=rf"{path}:4: expected 2 fields like the header, found 1"
    ):
        next(records)


@pytest.mark.parametrize("output_format", ["jsonl", "csv"])
def test_output_is_in_input_order_one_file_per_input(exports, tmp_path, capsys, output_format):
    """Two workers, small batches: the output files, read in name order, hold the inputs'
    rows in order (input files by sorted path, then line); an empty input file gets an
    output file too (with the CSV header)."""
    data = tmp_path / "data"
    data.mkdir()
    texts = [t for t in TEXTS if "\n" not in t] * 3
    (data / "b.txt").write_text("\n".join(texts[:10]) + "\n", encoding="utf-8")
    (data / "a.txt").write_text("\n".join(reversed(texts[10:])) + "\n", encoding="utf-8")
    (data / "c.txt").write_text("", encoding="utf-8")
    output = tmp_path / "out" / "preds"
    code, err = score(["--model-dir", str(exports.paths[1]), "--input", str(data / "*.txt"),
                       "--output", str(output), "--format", output_format, "--batch-size", "2",
                       "--direct_num_workers=2", "--direct_running_mode=multi_threading"],
                      capsys)
    assert code == 0, err
    names = sorted(glob.glob(f"{output}-*"))
    assert [name.rsplit("/", 1)[1] for name in names] == [
        f"preds-{i:05d}-of-00003.{output_format}" for i in range(3)]
    rows_per_file = []
    for name in names:
        with open(name, encoding="utf-8", newline="") as f:
            if output_format == "jsonl":
                rows_per_file.append([json.loads(line) for line in f])
            else:
                reader = csv.DictReader(f)
                rows_per_file.append(list(reader))
                assert reader.fieldnames[:3] == ["file", "line", "text"]  # the header, always
    a, b, c = rows_per_file
    assert [row["text"] for row in a] == list(reversed(texts[10:]))
    assert [row["text"] for row in b] == texts[:10]
    assert c == []
    assert [int(row["line"]) for row in a + b] == [*range(1, len(a) + 1), *range(1, 11)]
