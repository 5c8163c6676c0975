"""Tests of TextExampleGen's data logic (components/text_example_gen/text_ingestion.py)."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pytest

from components import common
from components.text_example_gen import text_ingestion as ti

BLANK_LINE = ti.TextIngestionConfig(document_mode="blank_line")


def _read(data: bytes, config: ti.TextIngestionConfig = BLANK_LINE, name: str = "f.txt"):
    return ti.read_documents(io.BytesIO(data), name, config)


# ----------------------------------------------------------------------------- sentences


@pytest.mark.parametrize(
    "paragraph, expected",
    [
        ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
        # Abbreviations and initials do not end a sentence.
        ("Mr. Bennet met Dr. J. R. Smith. He left.", ["Mr. Bennet met Dr. J. R. Smith.", "He left."]),
        # Closing quotes stay with their sentence; a lower-case word after "?" continues it.
        ("“Is it?” said she. “It is.” “Yes.”", ["“Is it?” said she.", "“It is.”", "“Yes.”"]),
        ('"Go!" He went... Then 3 men came.', ['"Go!"', "He went...", "Then 3 men came."]),
        ("_You_ want it. _I_ do not.", ["_You_ want it.", "_I_ do not."]),
        ("no terminal punctuation at all", ["no terminal punctuation at all"]),
    ],
)
def test_split_sentences(paragraph: str, expected: list[str]):
    assert ti.split_sentences(paragraph) == expected


# ----------------------------------------------------------------------------- documents


def test_blank_line_mode_one_document_per_paragraph_with_line_numbers():
    text = b"First doc line one\ncontinues here. Second sentence.\n\n\nSecond doc.\n\nThird doc!\n"
    documents, issues = _read(text)
    assert issues == []
    assert documents == [
        ti.Document("f.txt:1", ["First doc line one continues here.", "Second sentence."]),
        ti.Document("f.txt:5", ["Second doc."]),
        ti.Document("f.txt:7", ["Third doc!"]),
    ]


def test_file_mode_one_document_per_file_sentences_stay_within_paragraphs():
    config = ti.TextIngestionConfig(document_mode="file")
    documents, _ = _read(b"A first\nparagraph\n\nSecond one. Two sentences.\n", config, "dir/a.txt")
    assert documents == [ti.Document("dir/a.txt", ["A first paragraph", "Second one.", "Two sentences."])]


def test_line_sentence_splitting_keeps_each_line():
    config = ti.TextIngestionConfig(document_mode="blank_line", sentence_splitting="line")
    documents, _ = _read(b"No. Split here\nsecond line\n\nnext doc\n", config)
    assert [d.sentences for d in documents] == [["No. Split here", "second line"], ["next doc"]]


def test_regex_mode_cuts_the_real_novels_into_chapters(chapter_documents):
    by_book = Counter(document.doc_id.split(":")[0] for document in chapter_documents)
    # Front matter + chapter I, then the 59 headings "CHAPTER II." .. "CHAPTER LXI." (two
    # without the dot; this edition has no XLVI heading).
    assert by_book["pride_and_prejudice.txt"] == 60
    assert by_book["wizard_of_oz.txt"] == 19  # "CHAPTER 1." .. "CHAPTER 20.", no 14 here.
    chapter_2 = next(d for d in chapter_documents if d.doc_id == "pride_and_prejudice.txt:739")
    assert chapter_2.sentences[0] == "CHAPTER II."
    sentences = sum(len(d.sentences) for d in chapter_documents)
    assert sentences > 8000


def test_bom_and_crlf_are_accepted_silently():
    documents, issues = _read(b"\xef\xbb\xbfHello there.\r\nSame paragraph.\r\n\r\nNext.\r\n")
    assert issues == []
    assert [d.sentences for d in documents] == [["Hello there.", "Same paragraph."], ["Next."]]


# ----------------------------------------------------------------------------- bad input


def test_invalid_utf8_is_reported_with_line_and_repaired():
    documents, issues = _read(b"Good line.\n\nBad \xff\xfe bytes.\nOk.\n", name="bad.txt")
    assert issues == [
        ti.IngestionIssue(
            "bad.txt", 3, ti.ISSUE_INVALID_UTF8, "invalid UTF-8 at byte 4; decoded with U+FFFD replacement"
        )
    ]
    assert documents[1].sentences == ["Bad \ufffd\ufffd bytes.", "Ok."]


def test_over_long_line_is_reported_skipped_and_breaks_the_paragraph():
    config = ti.TextIngestionConfig(document_mode="file", max_line_bytes=50)
    data = b"Before the long line\n" + b"x" * 51 + b"\r\nafter it.\n" + b"y" * 50 + b"\n"
    documents, issues = _read(data, config, "long.txt")
    assert [(i.line, i.kind) for i in issues] == [(2, ti.ISSUE_LINE_TOO_LONG)]
    assert issues[0].detail.startswith("51 bytes > max_line_bytes=50")
    # Line 4 has exactly the maximum and is kept; the skipped line separates paragraphs.
    assert documents[0].sentences == ["Before the long line", "after it. " + "y" * 50]


def test_over_long_line_is_never_held_in_memory_and_its_length_is_exact():
    # Longer than the read chunk, and ending without a newline.
    long_line = b"z" * (3 * (1 << 20) + 7)
    documents, issues = _read(b"Short.\n" + long_line, ti.TextIngestionConfig(max_line_bytes=1000))
    assert [d.sentences for d in documents] == [["Short."]]
    assert issues[0].line == 2 and issues[0].detail.startswith(f"{len(long_line)} bytes")


@pytest.mark.parametrize("content", [b"", b"\n \n\t\r\n"])
def test_empty_file_is_reported(content: bytes):
    documents, issues = _read(content, name="empty.txt")
    assert documents == []
    assert issues == [ti.IngestionIssue("empty.txt", 0, ti.ISSUE_EMPTY_FILE, "no non-blank line; no document")]


def test_invalid_configs_are_rejected():
    with pytest.raises(ValueError, match="document_mode"):
        ti.TextIngestionConfig(document_mode="paragraph")
    with pytest.raises(ValueError, match="document_start_regex"):
        ti.TextIngestionConfig(document_mode="regex")
    with pytest.raises(ValueError, match="max_line_bytes"):
        ti.TextIngestionConfig(max_line_bytes=0)


# ----------------------------------------------------------------------------- Beam


EXPECTED_SPLITS = {
    "a.txt:1": "train", "a.txt:3": "train", "b.txt:7": "train", "bad.txt:1": "train",
    "a.txt:33": "eval", "a.txt:41": "eval", "b.txt:1": "eval", "b.txt:5": "eval",
}  # fmt: skip


def test_hash_split_is_sha256_of_the_doc_id_modulo_the_buckets():
    # Literal values, computed once: with 100 one-bucket splits the index is the bucket.
    assert [ti.hash_split(doc_id, [1] * 100) for doc_id in EXPECTED_SPLITS] == [73, 7, 8, 84, 79, 19, 89, 39]
    assert [ti.hash_split(doc_id, [80, 20]) for doc_id in ("a.txt:1", "b.txt:3", "b.txt:1", "bad.txt:1")] == [0, 1, 1, 1]


def test_ingest_to_examples_splits_by_doc_id_and_writes_the_report(tmp_path: Path):
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    # 2000 one-sentence documents in blank_line mode, spread over two files.
    for name, offset in (("a.txt", 0), ("b.txt", 1000)):
        (input_dir / name).write_text("\n\n".join(f"Document number {offset + i}." for i in range(1000)))
    (input_dir / "bad.txt").write_bytes(b"ok line.\n\xc3(\n")
    (input_dir / "empty.txt").write_bytes(b"")
    output = tmp_path / "examples"
    paths = ti.match_files(str(input_dir), ["*.txt"])
    with beam.Pipeline() as pipeline:
        _ = pipeline | ti.IngestTextToExamples(
            inputs=[ti.SplitInput(None, paths)],
            input_base=str(input_dir),
            output_uri=str(output),
            config=BLANK_LINE,
            split_names=["train", "eval"],
            hash_buckets=[9, 1],
            num_shards=2,
        )

    split_docs = {}
    for split in ("train", "eval"):
        files = sorted(p.name for p in (output / f"Split-{split}").iterdir())
        assert files == ["data_tfrecord-00000-of-00002.gz", "data_tfrecord-00001-of-00002.gz"]
        records = common.read_tfrecords(str(output / f"Split-{split}" / "*.gz"))
        split_docs[split] = [ti.example_to_document(record) for record in records]
    total = sum(len(docs) for docs in split_docs.values())
    assert total == 2001  # bad.txt is one document, repaired.
    assert 0.08 < len(split_docs["eval"]) / total < 0.12  # 9:1 by hash.
    for split, documents in split_docs.items():
        assert all(ti.hash_split(d.doc_id, [9, 1]) == ("train", "eval").index(split) for d in documents)
    # Literal splits, computed once (SHA-256 of the doc id mod 10: 0-8 train, 9 eval): a
    # change of the hash function moves documents between splits and fails here.
    split_of = {d.doc_id: split for split, documents in split_docs.items() for d in documents}
    assert {doc_id: split_of[doc_id] for doc_id in EXPECTED_SPLITS} == EXPECTED_SPLITS
    assert ti.Document("bad.txt:1", ["ok line. \ufffd("]) in split_docs["train"] + split_docs["eval"]

    report = [json.loads(line) for line in (output / ti.INGESTION_REPORT_FILE).read_text().splitlines()]
    assert [(r["file"], r["line"], r["kind"]) for r in report] == [
        ("bad.txt", 2, ti.ISSUE_INVALID_UTF8),
        ("empty.txt", 0, ti.ISSUE_EMPTY_FILE),
    ]
    assert ti.read_ingestion_report(str(output / ti.INGESTION_REPORT_FILE))[0].file == "bad.txt"


def test_named_input_splits_are_kept_as_they_are(tmp_path: Path):
    for split in ("train", "eval"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "x.txt").write_text(f"The {split} text. Two sentences.\n\nAnother {split} doc.\n")
    with beam.Pipeline() as pipeline:
        _ = pipeline | ti.IngestTextToExamples(
            inputs=[
                ti.SplitInput(split, ti.match_files(str(tmp_path), [f"{split}/*.txt"])) for split in ("train", "eval")
            ],
            input_base=str(tmp_path),
            output_uri=str(tmp_path / "out"),
            config=BLANK_LINE,
            split_names=["train", "eval"],
        )
    for split in ("train", "eval"):
        records = common.read_tfrecords(str(tmp_path / "out" / f"Split-{split}" / "*"))
        assert [ti.example_to_document(r) for r in records] == [
            ti.Document(f"{split}/x.txt:1", [f"The {split} text.", "Two sentences."]),
            ti.Document(f"{split}/x.txt:3", [f"Another {split} doc."]),
        ]
    assert (tmp_path / "out" / ti.INGESTION_REPORT_FILE).read_text() == ""
