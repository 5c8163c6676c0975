"""Plain-text ingestion: text files -> documents of sentences, plus a report of bad input.

This is the data logic of `TextExampleGen`, free of TFX so it can be imported and tested
in a second. Files are read on Beam workers; each document becomes one tf.Example:

    doc_id:    bytes  "<path relative to input_base>" ("file" mode) or
                      "<relative path>:<line where the document starts>" (other modes)
    sentences: bytes list, the document's sentences in order (UTF-8)

Document modes
  - "file":       every file is one document.
  - "blank_line": documents are separated by one or more blank lines (the convention of
                  Google BERT's create_pretraining_data.py input files).
  - "regex":      a line matching `document_start_regex` starts a new document (e.g. the
                  "CHAPTER 12." headings of a book); the heading stays in its document.
In every mode blank lines also end paragraphs, and sentences never cross a paragraph.

Sentence splitting
  - "rules" (default): the lines of a paragraph are joined with single spaces (hard-wrapped
    text) and split after ".", "!", "?" or "…" (optionally followed by closing quotes,
    brackets or "_") when whitespace and then an upper-case letter or a digit (possibly
    behind opening quotes/brackets) follow. A "." is not a boundary after a known
    abbreviation ("Mr.", "Mrs.", "Dr.", "St.", "e.g." ...) or a single letter (initials).
    Deliberately simple and predictable: it is wrong on, e.g., a sentence that starts with
    a lower-case word or ends in an abbreviation, which costs a little NSP signal and never
    loses text.
  - "line": every non-blank line is one sentence (input that is already sentence-split).

Bad-input policy: problems are REPORTED (file, line, kind, detail) and never crash the run
  - invalid_utf8:  the line is kept, decoded with U+FFFD replacement characters; the detail
                   gives the byte offset of the first invalid byte.
  - line_too_long: a line of more than `max_line_bytes` bytes (line ending excluded) is
                   skipped and acts as a paragraph break. It is read in bounded chunks, so
                   a multi-gigabyte "line" never sits in memory. Skipped rather than
                   truncated: such lines are nearly always base64, minified data or binary
                   junk, and a cut sentence would be silent corruption.
  - empty_file:    a file with no non-blank line (reported at line 0); no document.
A UTF-8 byte-order mark at the start of a file is dropped and CR LF line endings accepted
silently; errors reading a file (permissions, I/O) are not data problems and do fail.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from components import common

DOCUMENT_MODES = ("file", "blank_line", "regex")
SENTENCE_SPLITTING = ("rules", "line")

DOC_ID_FEATURE = "doc_id"
SENTENCES_FEATURE = "sentences"

ISSUE_INVALID_UTF8 = "invalid_utf8"
ISSUE_LINE_TOO_LONG = "line_too_long"
ISSUE_EMPTY_FILE = "empty_file"

# The report file written at the root of the output Examples artifact.
INGESTION_REPORT_FILE = "ingestion_report.jsonl"

_UTF8_BOM = b"\xef\xbb\xbf"
_READ_CHUNK_BYTES = 1 << 20

# Words after which a "." does not end a sentence (compared lower-cased, without the ".").
_ABBREVIATIONS = frozenset(
    """mr mrs ms mme mlle dr st jr sr prof rev hon gen col capt cpt lt sgt maj adm gov pres
    messrs esq mt ft no nos vs etc cf al approx dept est fig vol ch chap pp ed eds
    e.g i.e a.m p.m inc ltd co corp bros jan feb mar apr jun jul aug sep sept oct nov dec"""
    .split()
)
# Candidate boundary: terminal punctuation, closing quotes/brackets/underscores, whitespace.
_CANDIDATE_BOUNDARY = re.compile(r"""[.!?…]+["'”’)\]_*]*\s+""")
_OPENING_CHARS = "\"'“‘([_*"
_WORD_BEFORE_PERIOD = re.compile(r"([\w.]+)\.$")


@dataclasses.dataclass(frozen=True)
class TextIngestionConfig:
    """How text files are cut into documents and sentences (see the module docstring)."""

    document_mode: str = "blank_line"
    sentence_splitting: str = "rules"
    document_start_regex: str = ""
    max_line_bytes: int = 65536

    def __post_init__(self):
        if self.document_mode not in DOCUMENT_MODES:
            raise ValueError(f"document_mode must be one of {DOCUMENT_MODES}, got {self.document_mode!r}")
        if self.sentence_splitting not in SENTENCE_SPLITTING:
            raise ValueError(
                f"sentence_splitting must be one of {SENTENCE_SPLITTING}, got {self.sentence_splitting!r}"
            )
        if self.document_mode == "regex":
            if not self.document_start_regex:
                raise ValueError('document_mode "regex" needs a document_start_regex')
            re.compile(self.document_start_regex)
        if self.max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be >= 1, got {self.max_line_bytes}")


class Document(NamedTuple):
    doc_id: str
    sentences: list[str]


class IngestionIssue(NamedTuple):
    """A problem found in the input; `line` is 1-based (0 for whole-file issues)."""

    file: str
    line: int
    kind: str
    detail: str

    def to_json(self) -> str:
        return json.dumps(self._asdict(), ensure_ascii=False, sort_keys=True)


# ----------------------------------------------------------------------------- sentences


def split_sentences(paragraph: str) -> list[str]:
    """Splits one paragraph (whitespace already normalized) into sentences by rules."""
    sentences = []
    start = 0
    for match in _CANDIDATE_BOUNDARY.finditer(paragraph):
        if not _starts_sentence(paragraph, match.end()):
            continue
        candidate = paragraph[start : match.end()].rstrip()
        if _ends_with_abbreviation(candidate):
            continue
        sentences.append(candidate)
        start = match.end()
    tail = paragraph[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def _starts_sentence(text: str, position: int) -> bool:
    while position < len(text) and text[position] in _OPENING_CHARS:
        position += 1
    return position < len(text) and (text[position].isupper() or text[position].isdigit())


def _ends_with_abbreviation(candidate: str) -> bool:
    # Only a plain "." can follow an abbreviation; "Mr.!" or a closing quote means it ended.
    match = _WORD_BEFORE_PERIOD.search(candidate)
    if match is None:
        return False
    word = match.group(1)
    if word.lower() in _ABBREVIATIONS:
        return True
    return len(word) == 1 and word.isalpha()  # An initial, as in "J. R. Smith".


# ----------------------------------------------------------------------------- reading


def _iter_raw_lines(stream: Any, max_line_bytes: int) -> Iterator[tuple[int, bytes | None, int]]:
    """Yields (1-based line number, line bytes or None if too long, length in bytes).

    Reads fixed-size chunks, so memory stays bounded however long a line is. The line
    ending ("\\n" or "\\r\\n") is stripped and not counted.
    """
    line_number = 0
    kept = bytearray()  # The current line, while it is short enough to keep.
    length = 0  # Its full length so far, kept or not.
    ends_with_cr = False
    while chunk := stream.read(_READ_CHUNK_BYTES):
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            piece = chunk[start:] if newline < 0 else chunk[start:newline]
            if piece:
                length += len(piece)
                ends_with_cr = piece.endswith(b"\r")
                if length <= max_line_bytes + 1:  # +1: room for a "\r" stripped below.
                    kept += piece
                else:
                    kept.clear()
            if newline < 0:
                break
            line_number += 1
            yield _finish_line(line_number, kept, length, ends_with_cr, max_line_bytes)
            kept, length, ends_with_cr = bytearray(), 0, False
            start = newline + 1
    if length:
        yield _finish_line(line_number + 1, kept, length, ends_with_cr, max_line_bytes)


def _finish_line(
    line_number: int, kept: bytearray, length: int, ends_with_cr: bool, max_line_bytes: int
) -> tuple[int, bytes | None, int]:
    if ends_with_cr:
        length -= 1
        kept = kept[:-1]
    if length > max_line_bytes:
        return line_number, None, length
    return line_number, bytes(kept), length


def _decode(line: bytes) -> tuple[str, int | None]:
    """UTF-8 text of `line` and the offset of its first invalid byte (None if valid)."""
    try:
        return line.decode("utf-8"), None
    except UnicodeDecodeError as error:
        return line.decode("utf-8", errors="replace"), error.start


class _Paragraph(NamedTuple):
    first_line: int
    lines: list[str]


def _iter_paragraphs(
    stream: Any, relative_path: str, config: TextIngestionConfig, issues: list[IngestionIssue]
) -> Iterator[_Paragraph | int]:
    """Yields the file's paragraphs, and the line number (an int) of each document start
    found by `document_start_regex` before the paragraph that it starts."""
    start_regex = re.compile(config.document_start_regex) if config.document_mode == "regex" else None
    current: _Paragraph | None = None
    for line_number, raw, length in _iter_raw_lines(stream, config.max_line_bytes):
        if line_number == 1 and raw is not None and raw.startswith(_UTF8_BOM):
            raw = raw[len(_UTF8_BOM) :]
        if raw is None:
            issues.append(
                IngestionIssue(
                    relative_path,
                    line_number,
                    ISSUE_LINE_TOO_LONG,
                    f"{length} bytes > max_line_bytes={config.max_line_bytes}; line skipped",
                )
            )
            text = ""  # A skipped line ends the paragraph: no sentence spans the gap.
        else:
            text, bad_offset = _decode(raw)
            if bad_offset is not None:
                issues.append(
                    IngestionIssue(
                        relative_path,
                        line_number,
                        ISSUE_INVALID_UTF8,
                        f"invalid UTF-8 at byte {bad_offset}; decoded with U+FFFD replacement",
                    )
                )
            text = text.strip()
        if start_regex is not None and text and start_regex.search(text):
            if current is not None:
                yield current
                current = None
            yield line_number
        if not text:
            if current is not None:
                yield current
                current = None
            continue
        if current is None:
            current = _Paragraph(line_number, [])
        current.lines.append(text)
    if current is not None:
        yield current


def _paragraph_sentences(paragraph: _Paragraph, config: TextIngestionConfig) -> list[str]:
    if config.sentence_splitting == "line":
        return list(paragraph.lines)
    return split_sentences(" ".join(" ".join(paragraph.lines).split()))


def read_documents(
    stream: Any, relative_path: str, config: TextIngestionConfig
) -> tuple[list[Document], list[IngestionIssue]]:
    """Reads one binary file-like object into documents; returns them and the issues found."""
    issues: list[IngestionIssue] = []
    documents: list[Document] = []
    doc_start: int | None = None  # Line where the current document starts.
    sentences: list[str] = []

    def finish_document() -> None:
        nonlocal doc_start
        if sentences:
            doc_id = relative_path if config.document_mode == "file" else f"{relative_path}:{doc_start}"
            documents.append(Document(doc_id, list(sentences)))
        sentences.clear()
        doc_start = None

    for item in _iter_paragraphs(stream, relative_path, config, issues):
        if isinstance(item, int):  # A line matching document_start_regex.
            finish_document()
            doc_start = item
            continue
        if config.document_mode == "blank_line":
            finish_document()
        if doc_start is None:
            doc_start = item.first_line
        sentences.extend(_paragraph_sentences(item, config))
    finish_document()
    if not documents and not any(issue.kind == ISSUE_LINE_TOO_LONG for issue in issues):
        issues.append(IngestionIssue(relative_path, 0, ISSUE_EMPTY_FILE, "no non-blank line; no document"))
    return documents, issues


def read_file_documents(
    path: str, input_base: str, config: TextIngestionConfig
) -> tuple[list[Document], list[IngestionIssue]]:
    """Reads the file at `path` (any Beam filesystem); ids use the path under `input_base`."""
    relative_path = os.path.relpath(path, input_base) if input_base else path
    relative_path = relative_path.replace(os.sep, "/")
    with FileSystems.open(path, compression_type="uncompressed") as stream:
        return read_documents(stream, relative_path, config)


# ----------------------------------------------------------------------------- examples


def document_to_example(document: Document) -> bytes:
    """Serializes a document as a tf.train.Example (`doc_id`, `sentences`)."""
    from tensorflow.core.example import example_pb2  # Lazy: TF only on the workers.

    example = example_pb2.Example()
    features = example.features.feature
    features[DOC_ID_FEATURE].bytes_list.value.append(document.doc_id.encode("utf-8"))
    features[SENTENCES_FEATURE].bytes_list.value.extend(s.encode("utf-8") for s in document.sentences)
    return example.SerializeToString(deterministic=True)


def example_to_document(serialized: bytes) -> Document:
    """Parses a tf.train.Example written by `document_to_example`."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example.FromString(serialized)
    features = example.features.feature
    doc_id = features[DOC_ID_FEATURE].bytes_list.value[0].decode("utf-8")
    sentences = [s.decode("utf-8") for s in features[SENTENCES_FEATURE].bytes_list.value]
    return Document(doc_id, sentences)


def hash_split(doc_id: str, hash_buckets: list[int]) -> int:
    """Index of the split that `doc_id` falls into, by the scheme of TFX's ExampleGen: SHA-256
    of the partition key modulo the total bucket count, then cumulative bucket ranges."""
    bucket = int(hashlib.sha256(doc_id.encode("utf-8")).hexdigest(), 16) % sum(hash_buckets)
    upper = 0
    for index, buckets in enumerate(hash_buckets):
        upper += buckets
        if bucket < upper:
            return index
    raise AssertionError("unreachable")


def _partition_by_doc_id(document: Document, num_partitions: int, hash_buckets: list[int]) -> int:
    del num_partitions  # Implied by hash_buckets.
    return hash_split(document.doc_id, hash_buckets)


def match_files(input_base: str, patterns: Iterable[str]) -> list[str]:
    """All files matching `patterns` (relative to `input_base`), sorted and de-duplicated."""
    paths = set()
    for pattern in patterns:
        full_pattern = os.path.join(input_base, pattern) if input_base else pattern
        for result in FileSystems.match([full_pattern]):
            paths.update(metadata.path for metadata in result.metadata_list)
    return sorted(paths)


# ----------------------------------------------------------------------------- Beam


class _ReadFileFn(beam.DoFn):
    ISSUES_TAG = "issues"

    def __init__(self, input_base: str, config: TextIngestionConfig):
        self._input_base = input_base
        self._config = config
        self._documents = beam.metrics.Metrics.counter("bertpipe", "documents_read")
        self._issues = beam.metrics.Metrics.counter("bertpipe", "ingestion_issues")

    def process(self, path: str) -> Iterator[Any]:
        documents, issues = read_file_documents(path, self._input_base, self._config)
        self._documents.inc(len(documents))
        self._issues.inc(len(issues))
        yield from documents
        for issue in issues:
            yield beam.pvalue.TaggedOutput(self.ISSUES_TAG, issue)


class ReadTextDocuments(beam.PTransform):
    """Reads text files into `Document`s; the "issues" output holds `IngestionIssue`s.

    Files are read whole by one worker each (a document cannot be cut between workers
    without knowing where it starts); many files spread over the workers.
    """

    def __init__(self, paths: list[str], input_base: str, config: TextIngestionConfig):
        super().__init__()
        self._paths = sorted(paths)
        self._input_base = input_base
        self._config = config

    def expand(self, pipeline: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        return (
            pipeline
            | "ListFiles" >> beam.Create(self._paths)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadFiles"
            >> beam.ParDo(_ReadFileFn(self._input_base, self._config)).with_outputs(
                _ReadFileFn.ISSUES_TAG, main="documents"
            )
        )


def _write_report(issues: list[IngestionIssue], path: str) -> str:
    with FileSystems.create(path) as report:
        for issue in sorted(issues):
            report.write((issue.to_json() + "\n").encode("utf-8"))
    return path


class WriteIngestionReport(beam.PTransform):
    """Writes all issues, sorted by (file, line, kind), as JSON lines to `path`."""

    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def expand(self, issues: beam.PCollection) -> beam.PCollection:
        return (
            issues
            | "CollectIssues" >> beam.combiners.ToList()
            | "WriteReport" >> beam.Map(_write_report, self._path)
        )


def read_ingestion_report(path: str) -> list[IngestionIssue]:
    """Reads a report written by `WriteIngestionReport`."""
    with FileSystems.open(path, compression_type="uncompressed") as report:
        return [IngestionIssue(**json.loads(line)) for line in report.read().decode("utf-8").splitlines()]


@dataclasses.dataclass(frozen=True)
class SplitInput:
    """Input files of one input split; `name` is None to hash-split them by doc_id."""

    name: str | None
    paths: list[str]


class IngestTextToExamples(beam.PTransform):
    """Text files -> tf.Example TFRecord shards in Examples layout, plus the issue report.

    Args:
        inputs: the input files, per input split. One unnamed input (the usual case) is
            hash-split by doc_id into `split_names` with `hash_buckets` ratios; named
            inputs are written as those splits as they are.
        input_base: doc ids use paths relative to it.
        output_uri: the Examples artifact directory (gets `Split-<name>/` and the report).
        config: document and sentence rules.
        split_names, hash_buckets: output splits and their relative sizes (hash mode).
        num_shards: TFRecord files per split.
    """

    def __init__(
        self,
        inputs: list[SplitInput],
        input_base: str,
        output_uri: str,
        config: TextIngestionConfig,
        split_names: list[str],
        hash_buckets: list[int] | None = None,
        num_shards: int = 1,
    ):
        super().__init__()
        if any(split.name is None for split in inputs) and len(inputs) != 1:
            raise ValueError("an unnamed (hash-split) input must be the only input")
        if inputs[0].name is None and (not hash_buckets or len(hash_buckets) != len(split_names)):
            raise ValueError("hash splitting needs one hash bucket count per output split")
        self._inputs = inputs
        self._input_base = input_base
        self._output_uri = output_uri
        self._config = config
        self._split_names = list(split_names)
        self._hash_buckets = list(hash_buckets or [])
        self._num_shards = num_shards

    def expand(self, pipeline: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        documents_by_split: dict[str, beam.PCollection] = {}
        all_issues = []
        for index, split_input in enumerate(self._inputs):
            label = split_input.name or "AllInput"
            read = pipeline | f"Read[{label}]" >> ReadTextDocuments(
                split_input.paths, self._input_base, self._config
            )
            all_issues.append(read[_ReadFileFn.ISSUES_TAG])
            if split_input.name is not None:
                documents_by_split[split_input.name] = read.documents
                continue
            partitions = read.documents | f"HashSplit{index}" >> beam.Partition(
                _partition_by_doc_id, len(self._split_names), self._hash_buckets
            )
            documents_by_split.update(zip(self._split_names, partitions, strict=True))

        written = {}
        for split, documents in documents_by_split.items():
            written[split] = (
                documents
                | f"ToExample[{split}]" >> beam.Map(lambda d: (d.doc_id.encode("utf-8"), document_to_example(d)))
                | f"Write[{split}]"
                >> common.WriteSortedTFRecords(common.split_dir(self._output_uri, split), self._num_shards)
            )
        report_path = os.path.join(self._output_uri, INGESTION_REPORT_FILE)
        written["report"] = (
            all_issues | "FlattenIssues" >> beam.Flatten() | "Report" >> WriteIngestionReport(report_path)
        )
        return written
