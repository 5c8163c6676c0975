r"""Bad rows are quarantined, not fatal: the record, the limits, the error, and the one
ExampleGen executor base that the CSV, CoNLL and SQuAD example gens share.

A *row* is what one tf.Example is made from: a CSV record, a CoNLL sentence, a SQuAD
question. A row that cannot be read (undecodable bytes, a field over `max_field_bytes`,
a wrong column count, an unterminated quote, a label outside the classes...) becomes a
`QuarantinedRow`; the good rows go on. After all files are read, every quarantined row is
written, sorted by file and line, as JSON lines to the quarantine file, which lives next to
the Examples artifact (not in it: TFX deletes a failed execution's outputs):

    <pipeline root>/<component id>/quarantine/<execution id>.jsonl

One JSON object a line (`QuarantinedRow.to_json`):

    {"file": "/data/train.csv", "line": 12, "position": null,
     "reason": "not UTF-8: byte 0xff at column 4", "raw": "caf\\xff ol\\\\e,1",
     "truncated": false}

`line` is the 1-based physical line where the row starts (for CoNLL: its sentence's first
bad line); `position` says where in a structured file it is (SQuAD:
`data[0].paragraphs[2].qas[1] (id ...)`), else null. `raw` is the row's bytes as text:
valid UTF-8 as it is, any other byte as `\xHH`, and a backslash doubled, so
`unescape_raw(record["raw"])` gives back the exact bytes; `truncated` says that `raw` is
only the first `max_field_bytes` bytes of a longer row.

The Examples artifact gets the custom properties `rows_read`, `rows_kept`,
`rows_quarantined` (ints) and `quarantine_file` (the path above; the file is written, empty
or not, on every run). The run fails with `TooManyBadRowsError` only when
rows_quarantined / rows_read > `max_bad_fraction`, so the default 0.0 stops on any bad row.

Nothing at module level imports TFX (about 40 s) or TensorFlow: the record, the error and
the names can be used by reports and CLIs cheaply. `ExampleGenExecutor`, the TFX executor
base class, is built on first access (PEP 562 module `__getattr__`), importing TFX then.

Example (a format's executor supplies only how one file becomes examples and bad rows):

    class Executor(quarantine.ExampleGenExecutor):
        def parse_settings(self, values):
            return MyFormatConfig.from_dict(values)

        def make_reader(self, settings, limits):
            return MyReader(settings, limits.max_field_bytes)  # picklable; called as
            # reader(path, binary_stream) -> iterable of tf.train.Example | QuarantinedRow
"""

from __future__ import annotations

import abc
import dataclasses
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO

# Custom properties of the output Examples artifact.
ROWS_READ_PROPERTY = "rows_read"
ROWS_KEPT_PROPERTY = "rows_kept"
ROWS_QUARANTINED_PROPERTY = "rows_quarantined"
QUARANTINE_FILE_PROPERTY = "quarantine_file"
# The spans an execution read, "2,3", when it reads several (`read_newest_spans`).
SPANS_READ_PROPERTY = "spans_read"

# Keys of the quarantine settings in an ExampleGen's custom_config (next to the format's).
MAX_BAD_FRACTION_KEY = "max_bad_fraction"
MAX_FIELD_BYTES_KEY = "max_field_bytes"

# Keys of the span window in the custom_config (`read_newest_spans`).
NUM_SPANS_KEY = "read_newest_spans"
SPAN_PATTERNS_KEY = "span_patterns"

DEFAULT_MAX_BAD_FRACTION = 0.0
DEFAULT_MAX_FIELD_BYTES = 100_000

# Quarantined rows named in TooManyBadRowsError's message; the file has them all.
REPORTED_ROWS = 5

QUARANTINE_DIR = "quarantine"
QUARANTINE_SUFFIX = ".jsonl"

_ESCAPE = re.compile(r"\\(\\|x([0-9a-f]{2}))")
_INDEX = re.compile(r"\[(\d+)\]")


def escape_raw(raw: bytes) -> str:
    """Bytes as readable text, losslessly: UTF-8 as it is, other bytes as `\\xHH`, and `\\`
    as `\\\\` (so a literal backslash followed by `x41` cannot be mistaken for a byte)."""
    return raw.replace(b"\\", b"\\\\").decode("utf-8", errors="backslashreplace")


def unescape_raw(text: str) -> bytes:
    """The inverse of `escape_raw`."""
    out = bytearray()
    start = 0
    for match in _ESCAPE.finditer(text):
        out += text[start : match.start()].encode("utf-8")
        out += b"\\" if match.group(2) is None else bytes([int(match.group(2), 16)])
        start = match.end()
    out += text[start:].encode("utf-8")
    return bytes(out)


@dataclasses.dataclass(frozen=True)
class QuarantinedRow:
    """A row that could not be read, with why and its raw bytes.

    Attributes:
        file: the input file's path, as matched by the split pattern.
        line: 1-based physical line where the row starts (CoNLL: the bad line of the
            sentence), or None where no line is known.
        reason: one human sentence, no newline ("3 columns, the header has 2").
        raw: the row's bytes (line ending excluded), or their first `max_field_bytes`.
        position: where in a structured file (SQuAD: "data[0].paragraphs[2].qas[1]"), or
            None.
        truncated: `raw` is only the start of a longer row.
    """

    file: str
    line: int | None
    reason: str
    raw: bytes = b""
    position: str | None = None
    truncated: bool = False

    def describe(self) -> str:
        """`file:line: reason`, with the position before the reason when there is one."""
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        position = f" {self.position}:" if self.position else ""
        return f"{where}:{position} {self.reason}"

    def sort_key(self) -> tuple[Any, ...]:
        """File, line, then position (array indices compared as numbers)."""
        indices = tuple(int(i) for i in _INDEX.findall(self.position or ""))
        line = -1 if self.line is None else self.line
        return (self.file, line, indices, self.position or "", self.reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "position": self.position,
            "reason": self.reason,
            "raw": escape_raw(self.raw),
            "truncated": self.truncated,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> QuarantinedRow:
        line = value.get("line")
        return cls(
            file=value["file"],
            line=None if line is None else int(line),
            reason=value["reason"],
            raw=unescape_raw(value.get("raw", "")),
            position=value.get("position"),
            truncated=bool(value.get("truncated", False)),
        )

    @classmethod
    def from_json(cls, text: str) -> QuarantinedRow:
        return cls.from_dict(json.loads(text))


def write_quarantine(rows: Iterable[QuarantinedRow], stream: BinaryIO) -> int:
    """Writes JSON lines, sorted by file and line, to a binary stream; returns the count."""
    count = 0
    for row in sorted(rows, key=QuarantinedRow.sort_key):
        stream.write((row.to_json() + "\n").encode("utf-8"))
        count += 1
    return count


def read_quarantine(stream: BinaryIO) -> Iterator[QuarantinedRow]:
    """Reads what `write_quarantine` wrote from a binary stream."""
    for line in iter(stream.readline, b""):
        if line.strip():
            yield QuarantinedRow.from_json(line.decode("utf-8"))


def read_quarantine_file(path: str) -> list[QuarantinedRow]:
    """All rows of a local quarantine file (for tests and tools)."""
    with open(path, "rb") as stream:
        return list(read_quarantine(stream))


def quarantine_path(examples_uri: str) -> str:
    """Where the quarantine file of an Examples artifact goes: for TFX's layout
    `<root>/<component id>/examples/<execution id>`, the file
    `<root>/<component id>/quarantine/<execution id>.jsonl`; for any other URI (an
    executor run on its own), `<uri>.quarantine.jsonl` beside it."""
    uri = examples_uri.rstrip("/")
    parent, name = os.path.split(uri)
    if os.path.basename(parent) == "examples":
        return os.path.join(os.path.dirname(parent), QUARANTINE_DIR, name + QUARANTINE_SUFFIX)
    return uri + "." + QUARANTINE_DIR + QUARANTINE_SUFFIX


def utf8_problem(raw: bytes, first_line: int | None = None) -> str | None:
    """Why `raw` is not UTF-8 ("not UTF-8: byte 0xff at column 12"), or None if it is.

    The column counts characters from 1 in the byte's physical line; when `raw` spans
    lines and the byte is not on the first, its line (`first_line` + offset) is named too.
    """
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        start = error.start
        line_start = raw.rfind(b"\n", 0, start) + 1
        column = len(raw[line_start:start].decode("utf-8", errors="replace")) + 1
        where = f"column {column}"
        newlines = raw.count(b"\n", 0, start)
        if newlines:
            line = f"line {first_line + newlines}" if first_line is not None else (
                f"physical line {newlines + 1} of the row")
            where = f"{line}, {where}"
        return f"not UTF-8: byte 0x{raw[start]:02x} at {where}"
    return None


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclasses.dataclass(frozen=True)
class QuarantineSettings:
    """How bad rows are handled (`data.max_bad_fraction`, `data.max_field_bytes`).

    Attributes:
        max_bad_fraction: the run fails when rows_quarantined / rows_read is above this;
            0.0 fails on any bad row.
        max_field_bytes: a field (or a whole row) longer than this many bytes is a bad row;
            no more than this is held in memory for one row.
    """

    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION
    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES

    def __post_init__(self) -> None:
        fraction, limit = self.max_bad_fraction, self.max_field_bytes
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not (
            0.0 <= fraction < 1.0
        ):
            raise ValueError(f"max_bad_fraction must be a number in [0, 1), got {fraction!r}")
        if isinstance(limit, float) and limit.is_integer():  # a protobuf Struct's numbers
            object.__setattr__(self, "max_field_bytes", int(limit))
            limit = int(limit)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"max_field_bytes must be a positive integer, got {limit!r}")
        object.__setattr__(self, "max_bad_fraction", float(fraction))

    def to_dict(self) -> dict[str, Any]:
        return {MAX_BAD_FRACTION_KEY: self.max_bad_fraction, MAX_FIELD_BYTES_KEY: self.max_field_bytes}

    @classmethod
    def split_dict(cls, values: dict[str, Any]) -> tuple[QuarantineSettings, dict[str, Any]]:
        """(these settings, the other keys) of a custom_config dict."""
        rest = dict(values)
        settings = cls(
            max_bad_fraction=rest.pop(MAX_BAD_FRACTION_KEY, DEFAULT_MAX_BAD_FRACTION),
            max_field_bytes=rest.pop(MAX_FIELD_BYTES_KEY, DEFAULT_MAX_FIELD_BYTES),
        )
        return settings, rest

    def too_many(self, rows_read: int, rows_quarantined: int) -> bool:
        return rows_read > 0 and rows_quarantined / rows_read > self.max_bad_fraction


def _percent(fraction: float) -> str:
    text = f"{100 * fraction:.4f}".rstrip("0").rstrip(".")
    return f"{text}%"


class TooManyBadRowsError(ValueError):
    """More rows were quarantined than `max_bad_fraction` allows. The first line of the
    message is a summary (also `summary`) naming the counts, the fraction, the threshold and
    the quarantine file; the next lines are the first quarantined rows, `file:line: reason`.
    """

    def __init__(
        self,
        rows_read: int,
        rows_quarantined: int,
        max_bad_fraction: float,
        quarantine_file: str,
        first_rows: Sequence[QuarantinedRow] = (),
    ):
        self.rows_read = rows_read
        self.rows_quarantined = rows_quarantined
        self.max_bad_fraction = max_bad_fraction
        self.quarantine_file = quarantine_file
        self.first_rows = list(first_rows)[:REPORTED_ROWS]
        fraction = rows_quarantined / rows_read if rows_read else math.nan
        shown = len(self.first_rows)
        self.summary = (
            f"{rows_quarantined} of {plural(rows_read, 'row')} read ({_percent(fraction)}) "
            f"were quarantined, over data.max_bad_fraction {max_bad_fraction:g} "
            f"({_percent(max_bad_fraction)}); all are in {quarantine_file}"
            + (f"; the first {shown}:" if rows_quarantined > shown else ":")
        )
        lines = [self.summary] + [f"  {row.describe()}" for row in self.first_rows]
        if rows_quarantined > shown:
            lines.append(f"  ... and {rows_quarantined - shown} more")
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle their args by default, which are not our constructor's.
        return (
            TooManyBadRowsError,
            (self.rows_read, self.rows_quarantined, self.max_bad_fraction,
             self.quarantine_file, self.first_rows),
        )


class BadRowsError(ValueError):
    """Bad rows found by a tool that reads files directly (no threshold, no quarantine
    file): the count and the first 10, `file:line: reason`. A format may subclass it to
    name itself (`source`)."""

    source = "the input"
    shown_rows = 10

    def __init__(self, rows: Sequence[QuarantinedRow], total: int | None = None):
        self.rows = list(rows)[: self.shown_rows]
        self.total = len(rows) if total is None else total
        shown = len(self.rows)
        self.summary = f"{plural(self.total, 'bad row')} in {self.source}" + (
            f"; the first {shown}:" if self.total > shown else ":")
        lines = [self.summary] + [f"  {row.describe()}" for row in self.rows]
        if self.total > shown:
            lines.append(f"  ... and {self.total - shown} more")
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.rows, self.total))


def split_rows(items: Iterable[Any]) -> tuple[list[Any], list[QuarantinedRow]]:
    """(good rows, quarantined rows) of a parser's mixed output, each in order."""
    good, bad = [], []
    for item in items:
        (bad if isinstance(item, QuarantinedRow) else good).append(item)
    return good, bad



class CappedLines:
    """The physical lines of a binary stream as (bytes without the line ending, full size
    in bytes), holding no more than `max_bytes` of one line: a longer line comes back cut
    to its first `max_bytes` bytes, with its full size (so it can be reported and skipped).

    A line ends with LF or CR LF (the CR is dropped too, and not counted); a last line
    without an ending is returned as well.

    Example:
        for line, size in CappedLines(stream, max_bytes=100_000):
            if size > 100_000: ...  # `line` is only the start of it
    """

    def __init__(self, stream: BinaryIO, max_bytes: int, chunk_size: int = 1 << 16):
        self._stream = stream
        self._max = max_bytes
        self._chunk = chunk_size

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        pending = bytearray()  # the start of the current line, from earlier chunks
        pending_size = 0  # the full size of that start
        pending_last = b""  # its last byte
        while data := self._stream.read(self._chunk):
            start = 0
            while (end := data.find(b"\n", start)) >= 0:
                yield self._line(pending, pending_size, pending_last, data[start:end])
                pending, pending_size, pending_last = bytearray(), 0, b""
                start = end + 1
            if start < len(data):
                tail = data[start:]
                if len(pending) <= self._max:
                    pending += tail[: self._max + 1 - len(pending)]
                pending_size += len(tail)
                pending_last = tail[-1:]
        if pending_size:
            yield self._line(pending, pending_size, pending_last, b"")

    def _line(self, pending: bytearray, pending_size: int, pending_last: bytes,
              piece: bytes) -> tuple[bytes, int]:
        size = pending_size + len(piece)
        line = bytes(pending) + piece[: self._max + 1] if pending_size else piece
        if (piece[-1:] or pending_last) == b"\r":
            size -= 1
            if len(line) > size:
                line = line[:size]
        return line[: self._max], size


# custom_config: the format's settings and QuarantineSettings, one protobuf Struct. ---------


def make_custom_config(values: dict[str, Any]) -> Any:
    """Packs a JSON-able dict into TFX's ExampleGen `custom_config` (a Struct in an Any),
    so the settings reach the executor, and the cache key, like any execution property."""
    from google.protobuf import struct_pb2
    from tfx.proto import example_gen_pb2

    struct = struct_pb2.Struct()
    struct.update(values)
    custom_config = example_gen_pb2.CustomConfig()
    custom_config.custom_config.Pack(struct)
    return custom_config


def example_gen_arguments(executor_class: type, format_settings: dict[str, Any],
                          limits: QuarantineSettings) -> dict[str, Any]:
    """The `FileBasedExampleGen` arguments every quarantining ExampleGen component passes:
    its executor (a subclass of `ExampleGenExecutor`), the format's settings and the
    quarantine limits in `custom_config` (so both reach the executor and the cache key),
    GZIP TFRecords of tf.Examples."""
    from tfx.dsl.components.base import executor_spec
    from tfx.proto import example_gen_pb2

    return {
        "custom_config": make_custom_config({**format_settings, **limits.to_dict()}),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        "custom_executor_spec": executor_spec.BeamExecutorSpec(executor_class),
    }


def read_newest_spans(example_gen: Any, num_spans: int) -> None:
    """Makes a quarantining ExampleGen read the newest `num_spans` spans of its input
    patterns in each execution, not only the newest one (`data.rolling_spans` on
    orchestrators that cannot run this project's rolling-range resolver, `pipeline.spans`:
    Vertex AI Pipelines).

    TFX's driver still picks the newest span S (and its newest version) and fingerprints
    its files for the cache; the executor then reads spans S-N+1..S, each at its newest
    version, skipping spans that do not exist. The artifact keeps span S and records the
    spans read in its `spans_read` property; its statistics, validation and bad-row
    threshold cover all of them.
    """
    if num_spans < 1:
        raise ValueError(f"num_spans must be 1 or more, got {num_spans}")
    from google.protobuf import json_format
    from tfx.proto import example_gen_pb2

    properties = example_gen.exec_properties
    input_config = json_format.Parse(properties["input_config"], example_gen_pb2.Input())
    values = parse_custom_config(properties["custom_config"])
    values[NUM_SPANS_KEY] = num_spans
    values[SPAN_PATTERNS_KEY] = [split.pattern for split in input_config.splits]
    properties["custom_config"] = json_format.MessageToJson(
        make_custom_config(values), sort_keys=True, preserving_proto_field_name=True)


def span_window_patterns(input_base: str, pattern: str, newest_span: int, num_spans: int
                         ) -> tuple[list[str], list[int]]:
    """(the split pattern resolved for each existing span of newest_span-num_spans+1 ..
    newest_span at its newest version, those spans), oldest first. `pattern` has TFX's
    `{SPAN}` (and maybe `{VERSION}`) unresolved."""
    from tfx.components.example_gen import utils
    from tfx.proto import example_gen_pb2, range_config_pb2

    patterns, spans = [], []
    for span in range(max(0, newest_span - num_spans + 1), newest_span + 1):
        split = example_gen_pb2.Input.Split(name="window", pattern=pattern)
        only_this_span = range_config_pb2.RangeConfig(static_range=range_config_pb2.StaticRange(
            start_span_number=span, end_span_number=span))
        try:
            utils.calculate_splits_fingerprint_span_and_version(
                input_base, [split], range_config=only_this_span)
        except ValueError:  # no file of that span: a gap, or fewer spans than the window
            continue
        patterns.append(split.pattern)
        spans.append(span)
    return patterns, spans


def parse_custom_config(value: Any) -> dict[str, Any]:
    """The dict of a `custom_config` execution property (the JSON string TFX passes to
    executors, or the proto); {} when there is none. Numbers come back as floats."""
    if not value:
        return {}
    from google.protobuf import json_format, struct_pb2
    from tfx.proto import example_gen_pb2

    custom_config = value
    if isinstance(value, str):
        custom_config = json_format.Parse(value, example_gen_pb2.CustomConfig())
    if not custom_config.HasField("custom_config"):
        return {}
    struct = struct_pb2.Struct()
    if not custom_config.custom_config.Unpack(struct):
        raise ValueError(
            f"the ExampleGen's custom_config must hold a google.protobuf.Struct, "
            f"got {custom_config.custom_config.type_url!r}"
        )
    return json_format.MessageToDict(struct)


def integral(value: Any) -> Any:
    """`value` as an int if it is an integral float (a Struct stores numbers as doubles);
    anything else unchanged, for the caller's own check."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Beam pieces (Beam imported when they run, not when this module is imported). -------------

_QUARANTINED_TAG = "quarantined"
_KEPT_TAG = "kept"
_METRICS_NAMESPACE = "bertpipe.quarantine"


def _read_file(path: str, reader: Any) -> Iterator[Any]:
    """One input file through the format's reader: examples on the main output, each
    QuarantinedRow and then the file's count of kept rows on tagged outputs."""
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    kept = quarantined = 0
    # AUTO compression: "train.csv.gz" reads like "train.csv".
    with FileSystems.open(path) as stream:
        for item in reader(path, stream):
            if isinstance(item, QuarantinedRow):
                quarantined += 1
                yield beam.pvalue.TaggedOutput(_QUARANTINED_TAG, item)
            else:
                kept += 1
                yield item
    beam.metrics.Metrics.counter(_METRICS_NAMESPACE, ROWS_KEPT_PROPERTY).inc(kept)
    beam.metrics.Metrics.counter(_METRICS_NAMESPACE, ROWS_QUARANTINED_PROPERTY).inc(quarantined)
    yield beam.pvalue.TaggedOutput(_KEPT_TAG, kept)


def _write_quarantine(rows: list[QuarantinedRow], path: str, summary_path: str, kept: int) -> int:
    """Writes the quarantine file and the executor's summary (counts, first rows)."""
    from apache_beam.io.filesystems import FileSystems

    rows = sorted(rows, key=QuarantinedRow.sort_key)
    with FileSystems.create(path) as stream:
        count = write_quarantine(rows, stream)
    summary = {
        ROWS_KEPT_PROPERTY: kept,
        ROWS_QUARANTINED_PROPERTY: count,
        "first": [row.to_dict() for row in rows[:REPORTED_ROWS]],
    }
    with FileSystems.create(summary_path) as stream:
        stream.write(json.dumps(summary).encode("utf-8"))
    return count


def _read_summary(path: str) -> dict[str, Any]:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path, compression_type="uncompressed") as stream:
        summary = json.loads(stream.read().decode("utf-8"))
    FileSystems.delete([path])
    return summary


# The TFX executor base, built on first access (see the module docstring). -----------------

_EXECUTOR_CLASS: type | None = None


def __getattr__(name: str) -> Any:
    global _EXECUTOR_CLASS
    if name == "ExampleGenExecutor":
        if _EXECUTOR_CLASS is None:
            _EXECUTOR_CLASS = _define_executor()
        return _EXECUTOR_CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _define_executor() -> type:
    import apache_beam as beam
    from absl import logging
    from apache_beam.io.filesystems import FileSystems
    from google.protobuf import json_format
    from tfx.components.example_gen import utils as example_gen_utils
    from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
    from tfx.proto import example_gen_pb2
    from tfx.types import artifact_utils, standard_component_specs

    input_base_key = standard_component_specs.INPUT_BASE_KEY
    custom_config_key = standard_component_specs.CUSTOM_CONFIG_KEY
    examples_key = standard_component_specs.EXAMPLES_KEY
    input_config_key = standard_component_specs.INPUT_CONFIG_KEY
    span_key = example_gen_utils.SPAN_PROPERTY_NAME

    class _ReadSplit(beam.PTransform):
        """The files of one split pattern -> examples; the quarantined rows and the kept
        counts go to the executor's sinks (TFX's base class passes only examples on)."""

        def __init__(self, executor: Any, exec_properties: dict[str, Any], split_pattern: str):
            super().__init__()
            self._executor = executor
            input_base = exec_properties[input_base_key]
            patterns = [split_pattern]
            if executor._span_window is not None:  # read_newest_spans
                num_spans, configured = executor._span_window
                resolved = json_format.Parse(exec_properties[input_config_key],
                                             example_gen_pb2.Input())
                index = [split.pattern for split in resolved.splits].index(split_pattern)
                patterns, spans = span_window_patterns(
                    input_base, configured[index], int(exec_properties[span_key]), num_spans)
                executor._spans_read.update(spans)
            self._patterns = [os.path.join(input_base, pattern) for pattern in patterns]

        def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
            paths = []
            for pattern in self._patterns:
                matches = FileSystems.match([pattern])
                found = sorted(m.path for result in matches for m in result.metadata_list)
                if not found:
                    raise FileNotFoundError(f"no file matches the split pattern {pattern!r}")
                logging.info("%s: reading %d files matching %s.",
                             type(self._executor).__name__, len(found), pattern)
                paths += found
            read = (
                pipeline
                | "ListFiles" >> beam.Create(paths)
                # Each file is read whole by one worker (a row may span lines, a JSON
                # document is one value); the reshuffle spreads many files over workers.
                | "SpreadFiles" >> beam.Reshuffle()
                | "ReadFiles"
                >> beam.FlatMap(_read_file, self._executor._reader).with_outputs(
                    _QUARANTINED_TAG, _KEPT_TAG, main="examples")
            )
            self._executor._quarantined_sink.append(read[_QUARANTINED_TAG])
            self._executor._kept_sink.append(read[_KEPT_TAG])
            return read.examples

    class ExampleGenExecutor(BaseExampleGenExecutor):
        """TFX's file-based ExampleGen executor (splits, spans, partitioning, TFRecords)
        with quarantine: a subclass says how one file becomes tf.Examples and
        `QuarantinedRow`s; this class counts, writes the quarantine file, sets the
        artifact's properties and fails with `TooManyBadRowsError` over the threshold.

        Subclasses implement:
            parse_settings(values: dict) -> settings: the format's own settings from the
                custom_config (the quarantine keys removed); raise ValueError if wrong.
            make_reader(settings, limits: QuarantineSettings) -> reader: a picklable
                callable, reader(path, binary_stream) -> iterable of tf.train.Example
                and QuarantinedRow, in any mix and order.
        """

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self._quarantined_sink: list[beam.PCollection] = []
            self._kept_sink: list[beam.PCollection] = []
            self._reader: Any = None
            self._quarantine_file: str | None = None
            # (number of spans, the configured split patterns) under read_newest_spans.
            self._span_window: tuple[int, list[str]] | None = None
            self._spans_read: set[int] = set()

        @abc.abstractmethod
        def parse_settings(self, values: dict[str, Any]) -> Any:
            """The format's own settings (see the class docstring)."""

        @abc.abstractmethod
        def make_reader(self, settings: Any, limits: QuarantineSettings) -> Any:
            """A picklable reader(path, binary_stream) (see the class docstring)."""

        def settings(self, exec_properties: dict[str, Any]) -> tuple[Any, QuarantineSettings]:
            """(the format's settings, the quarantine settings) of an execution."""
            values = parse_custom_config(exec_properties.get(custom_config_key))
            num_spans = values.pop(NUM_SPANS_KEY, None)
            span_patterns = values.pop(SPAN_PATTERNS_KEY, None)
            self._span_window = None if num_spans is None else (int(num_spans), span_patterns)
            limits, rest = QuarantineSettings.split_dict(values)
            return self.parse_settings(rest), limits

        def GetInputSourceToExamplePTransform(self) -> Any:
            def make_transform(exec_properties: dict[str, Any], split_pattern: str) -> Any:
                return _ReadSplit(self, exec_properties, split_pattern)

            return make_transform

        def GenerateExamplesByBeam(
            self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
        ) -> dict[str, beam.PCollection]:
            self._quarantined_sink.clear()
            self._kept_sink.clear()
            if self._reader is None:  # called without Do
                settings, limits = self.settings(exec_properties)
                self._reader = self.make_reader(settings, limits)
            splits = super().GenerateExamplesByBeam(pipeline, exec_properties)
            if self._quarantine_file is not None:
                kept = (
                    tuple(self._kept_sink)
                    | "FlattenKept" >> beam.Flatten(pipeline=pipeline)
                    | "SumKept" >> beam.CombineGlobally(sum)
                )
                _ = (
                    tuple(self._quarantined_sink)
                    | "FlattenQuarantined" >> beam.Flatten(pipeline=pipeline)
                    # Sorted on one worker: bad rows are few, or the run stops anyway.
                    | "CollectQuarantined" >> beam.combiners.ToList()
                    | "WriteQuarantine" >> beam.Map(
                        _write_quarantine, self._quarantine_file,
                        self._quarantine_file + ".summary.json", beam.pvalue.AsSingleton(kept))
                )
            return splits

        def Do(
            self,
            input_dict: dict[str, list[Any]],
            output_dict: dict[str, list[Any]],
            exec_properties: dict[str, Any],
        ) -> None:
            # Checked before Beam starts, so a config mistake is not reported as a Beam error.
            settings, limits = self.settings(exec_properties)
            self._spans_read = set()
            examples = artifact_utils.get_single_instance(output_dict[examples_key])
            self._quarantine_file = quarantine_path(examples.uri)
            self._reader = self.make_reader(settings, limits)
            logging.info("%s: quarantine %s, %s", type(self).__name__, self._quarantine_file,
                         json.dumps(limits.to_dict()))
            super().Do(input_dict, output_dict, exec_properties)

            summary = _read_summary(self._quarantine_file + ".summary.json")
            kept = int(summary[ROWS_KEPT_PROPERTY])
            quarantined = int(summary[ROWS_QUARANTINED_PROPERTY])
            read = kept + quarantined
            examples.set_int_custom_property(ROWS_READ_PROPERTY, read)
            examples.set_int_custom_property(ROWS_KEPT_PROPERTY, kept)
            examples.set_int_custom_property(ROWS_QUARANTINED_PROPERTY, quarantined)
            examples.set_string_custom_property(QUARANTINE_FILE_PROPERTY, self._quarantine_file)
            if self._span_window is not None:
                examples.set_string_custom_property(
                    SPANS_READ_PROPERTY, ",".join(map(str, sorted(self._spans_read))))
            first = [QuarantinedRow.from_dict(row) for row in summary["first"]]
            if limits.too_many(read, quarantined):
                raise TooManyBadRowsError(read, quarantined, limits.max_bad_fraction,
                                          self._quarantine_file, first)
            if quarantined:
                logging.warning(
                    "%s: %d of %d rows quarantined (within max_bad_fraction %g) in %s; "
                    "the first: %s", type(self).__name__, quarantined, read,
                    limits.max_bad_fraction, self._quarantine_file, first[0].describe())

    # Pickled by reference (module + name), like a class defined at module level.
    ExampleGenExecutor.__module__ = __name__
    ExampleGenExecutor.__qualname__ = "ExampleGenExecutor"
    return ExampleGenExecutor
