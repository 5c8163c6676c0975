"""CSV files -> rows of named fields, and the rows that cannot be read (quarantined).

The data logic of `CsvExampleGen`, free of TFX, Beam and TensorFlow, so it imports and tests
in a second (the executor opens the files and builds the tf.Examples).

Format (RFC 4180, read strictly but never fatally)
  - The first non-blank line of each file is the header: the column names. A UTF-8
    byte-order mark before it is dropped.
  - Fields are separated by commas; a field may be quoted ("a, b"), a quote inside a
    quoted field is doubled (""), and a quoted field may hold line breaks, so one record
    may span several physical lines. A quote inside an unquoted field is kept as it is.
  - Records end with LF or CR LF; blank (or whitespace-only) lines are skipped.
  - Every record must be UTF-8 and have as many fields as the header. An integer column
    (`label_column`, `integer_columns`) must hold an integer (spaces around it allowed),
    and the label must lie in [0, num_classes) when `num_classes` is given. Other fields
    are kept as bytes; an empty one is left out of the row (a missing value, for the
    schema to judge), as TFX's CsvExampleGen does.

A record that breaks a rule becomes a `QuarantinedRow` (file, the physical line where it
starts, a reason, its raw bytes) and reading goes on:

    not UTF-8: byte 0xff at column 12
    field 2 is 1048576 bytes, over data.max_field_bytes (100000)
    row is 150000 bytes, over data.max_field_bytes (100000)
    3 columns, the header has 2
    unterminated quote in field 1
    text after the closing quote of field 1
    label 7 is outside the 2 classes (0..1)
    label 'positive' is not an integer

An unterminated quote would otherwise swallow the rest of the file into one field: when a
quoted field that crossed a line break does not end cleanly (the file ends inside it, or
its "closing" quote is followed by text), only the physical line where the record starts
is quarantined and reading resumes on the next line. No more than `max_field_bytes` of one
record is held in memory: a longer record is followed to its end without being kept, and
quarantined with its first `max_field_bytes` bytes (`truncated`).

Example:
    config = CsvConfig(label_column="label", num_classes=2)
    with open("train.csv", "rb") as stream:
        for item in parse_csv(stream, "train.csv", config, max_field_bytes=100_000):
            ...  # a Row, or a quarantine.QuarantinedRow
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple

from components.quarantine import QuarantinedRow, integral, plural, utf8_problem

_UTF8_BOM = b"\xef\xbb\xbf"
_QUOTE, _COMMA, _LF, _CR = 0x22, 0x2C, 0x0A, 0x0D
_UNQUOTED_STOP = re.compile(rb"[,\n]")
_INTEGER = re.compile(rb"\s*[+-]?[0-9]+\s*")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SHOWN_CHARS = 40  # of a value quoted in a reason

# States of the record splitter.
_START, _UNQUOTED, _QUOTED, _AFTER_QUOTE = range(4)


@dataclasses.dataclass(frozen=True)
class CsvConfig:
    """Which columns are integers, and the label's classes.

    Attributes:
        label_column: the label's column (an integer class index), or None (unlabelled
            data); it must be in every file's header.
        num_classes: the label must lie in [0, num_classes); None: any integer.
        integer_columns: other columns that must hold an integer in every row (int64
            features); they must be in every file's header too.
    """

    label_column: str | None = None
    num_classes: int | None = None
    integer_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.integer_columns, str):
            raise ValueError(f"integer_columns must be a list of names, got {self.integer_columns!r}")
        object.__setattr__(self, "integer_columns", tuple(self.integer_columns))
        object.__setattr__(self, "num_classes", integral(self.num_classes))
        for name in (self.label_column, *self.integer_columns):
            if name is not None and (not isinstance(name, str) or not name):
                raise ValueError(f"column names must be non-empty strings, got {name!r}")
        if len(set(self.integer_columns)) != len(self.integer_columns):
            raise ValueError(f"integer_columns has duplicates: {list(self.integer_columns)}")
        if self.label_column is not None and self.label_column in self.integer_columns:
            raise ValueError(f"{self.label_column!r} is the label_column; leave it out of integer_columns")
        if self.num_classes is not None:
            if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
                raise ValueError(f"num_classes must be a positive integer, got {self.num_classes!r}")
            if self.label_column is None:
                raise ValueError("num_classes needs a label_column")

    @property
    def required_columns(self) -> tuple[str, ...]:
        """The integer columns, the label first: each file's header must have them."""
        label = (self.label_column,) if self.label_column is not None else ()
        return label + self.integer_columns

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the component passes it to the executor in its custom_config)."""
        return {
            "label_column": self.label_column,
            "num_classes": self.num_classes,
            "integer_columns": list(self.integer_columns),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CsvConfig:
        """The inverse of `to_dict` (integral floats accepted: a Struct's numbers are doubles)."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown CSV config keys: {sorted(unknown)}")
        return cls(**values)


class Row(NamedTuple):
    """One good record: `values` maps a column to its bytes, or to an int for an integer
    column; an empty (non-integer) field is left out."""

    file: str
    line: int  # 1-based physical line where the record starts
    values: dict[str, bytes | int]


class _Record(NamedTuple):
    """One record as split from the file, before any check of its fields."""

    line: int
    raw: bytes  # its bytes, line ending excluded; only the first max_bytes if longer
    size: int  # its full size in bytes
    fields: list[bytes] | None  # None when `problem` is set
    problem: str | None  # why it could not be split (quote, size)


def _shown(value: bytes) -> str:
    text = value.decode("utf-8", errors="backslashreplace")
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 3] + "..."
    return repr(text)


class _Splitter:
    """Splits a binary stream into records (see the module docstring), keeping physical
    line numbers and holding at most about max_bytes + chunk_size bytes."""

    def __init__(self, stream: BinaryIO, max_bytes: int, chunk_size: int):
        self._stream = stream
        self._max = max_bytes
        self._chunk = chunk_size
        self._buf = b""
        self._base = 0  # offset in the stream of _buf[0]
        self._pos = 0  # index into _buf of the next byte
        self._keep: int | None = None  # stream offset from which _buf must be kept
        self._eof = False

    # Buffer ----------------------------------------------------------------------------

    def _offset(self) -> int:
        return self._base + self._pos

    def _more(self) -> bool:
        """Reads a chunk; False at the end of the stream. Drops bytes no longer needed."""
        if self._eof:
            return False
        data = self._stream.read(self._chunk)
        if not data:
            self._eof = True
            return False
        keep = self._offset() if self._keep is None else min(self._keep, self._offset())
        drop = keep - self._base
        if drop > 0:
            self._buf = self._buf[drop:]
            self._base += drop
            self._pos -= drop
        self._buf += data
        return True

    def _available(self, count: int) -> bool:
        """Whether `count` bytes from _pos are in the buffer (reading if needed)."""
        while len(self._buf) - self._pos < count:
            if not self._more():
                return False
        return True

    def _seek(self, offset: int) -> None:
        if self._base <= offset <= self._base + len(self._buf):
            self._pos = offset - self._base
            return
        self._stream.seek(offset)
        self._buf, self._base, self._pos, self._eof = b"", offset, 0, False

    def _find_newline(self, limit: int) -> int:
        """Index in _buf of the next LF within `limit` bytes of _pos, or -1 (none before
        the end of the stream, or none within the limit)."""
        searched = 0
        while True:
            newline = self._buf.find(b"\n", self._pos + searched, self._pos + limit + 1)
            if newline >= 0:
                return newline
            searched = len(self._buf) - self._pos
            if searched > limit or not self._more():
                return -1

    def _capped_line(self) -> tuple[bytes, int]:
        """Consumes the rest of the physical line (and its LF): (its first max bytes with
        the line ending dropped, its full size)."""
        self._keep = None
        kept = bytearray()
        size = 0
        last = b""
        while self._pos < len(self._buf) or self._more():
            newline = self._buf.find(b"\n", self._pos)
            end = newline if newline >= 0 else len(self._buf)
            piece = self._buf[self._pos : end]
            if len(kept) <= self._max:
                kept += piece[: self._max + 1 - len(kept)]
            size += len(piece)
            last = piece[-1:] or last
            self._pos = end
            if newline >= 0:
                self._pos += 1
                break
        if last == b"\r":
            size -= 1
            del kept[size:]
        return bytes(kept[: self._max]), size

    # Records ---------------------------------------------------------------------------

    def records(self) -> Iterator[_Record]:
        if self._available(len(_UTF8_BOM)) or self._buf:
            if self._buf.startswith(_UTF8_BOM):
                self._pos = len(_UTF8_BOM)
        line = 1
        while True:
            self._keep = self._offset()
            if not self._available(1):
                return
            newline = self._find_newline(self._max + 1)
            if newline >= 0 or self._eof:
                end = newline if newline >= 0 else len(self._buf)
                text = self._buf[self._pos : end]
                if text.endswith(b"\r"):
                    text = text[:-1]
                if not text.strip():  # a blank line
                    self._pos = end + 1
                    line += 1
                    continue
                if len(text) <= self._max and b'"' not in text:  # the common case
                    self._pos = end + 1
                    yield _Record(line, text, len(text), text.split(b","), None)
                    line += 1
                    continue
            record, lines = self._split_record(line)
            yield record
            line += lines

    def _split_record(self, line: int) -> tuple[_Record, int]:
        """The record starting at _pos (not blank), and how many physical lines it took."""
        start = self._offset()
        self._keep = start
        fields: list[bytes] = []
        sizes: list[int] = []
        value = bytearray()
        size = 0  # of the current field
        last = 0  # the last byte of the current unquoted field
        storing = True
        prefix = b""  # the record's first max bytes, once it is longer
        newlines = 0  # line breaks inside quoted fields
        first_newline = None  # stream offset just after the first of them
        multiline_field = 0
        state = _START
        problem = None
        end = None  # stream offset where the record's content ends
        terminator = 0  # bytes of its line ending

        def finish_field() -> None:
            nonlocal value, size
            fields.append(bytes(value))
            sizes.append(size)
            value = bytearray()
            size = 0

        while True:
            if storing and self._offset() - start > self._max:
                begin = start - self._base
                prefix = self._buf[begin : begin + self._max]
                storing = False
                self._keep = None
            if self._pos >= len(self._buf) and not self._more():
                end = self._offset()
                if state == _QUOTED:
                    problem = "unterminated quote"
                else:
                    if state == _UNQUOTED and size and last == _CR:  # a CR that ends the file
                        size -= 1
                        end -= 1
                        if storing:
                            del value[-1:]
                    finish_field()
                break
            buf, pos = self._buf, self._pos
            if state == _START:
                if buf[pos] == _QUOTE:
                    state = _QUOTED
                    self._pos += 1
                    continue
                state = _UNQUOTED
            if state == _UNQUOTED:
                match = _UNQUOTED_STOP.search(buf, pos)
                stop = match.start() if match else len(buf)
                if stop > pos:
                    if storing:
                        value += buf[pos:stop]
                    size += stop - pos
                    last = buf[stop - 1]
                self._pos = stop
                if match is None:
                    continue
                if buf[stop] == _COMMA:
                    finish_field()
                    self._pos += 1
                    state = _START
                    continue
                # A line feed ends the record; a CR before it belongs to the ending.
                if size and last == _CR:
                    size -= 1
                    terminator = 1
                    if storing:
                        del value[-1:]
                finish_field()
                end = self._offset() - terminator
                terminator += 1
                self._pos += 1
                break
            if state == _QUOTED:
                quote = buf.find(b'"', pos)
                stop = quote if quote >= 0 else len(buf)
                breaks = buf.count(b"\n", pos, stop)
                if breaks:
                    if first_newline is None:
                        first_newline = self._base + buf.index(b"\n", pos, stop) + 1
                        multiline_field = len(fields) + 1
                    newlines += breaks
                if storing:
                    value += buf[pos:stop]
                size += stop - pos
                self._pos = stop
                if quote >= 0:
                    self._pos += 1
                    state = _AFTER_QUOTE
                continue
            # _AFTER_QUOTE: a closing quote, or the first of a doubled one.
            byte = buf[pos]
            if byte == _QUOTE:
                if storing:
                    value += b'"'
                size += 1
                self._pos += 1
                state = _QUOTED
            elif byte == _COMMA:
                finish_field()
                self._pos += 1
                state = _START
            elif byte == _LF or (byte == _CR and (
                    not self._available(2) or self._buf[self._pos + 1] == _LF)):
                # LF, CR LF, or a CR that ends the file.
                finish_field()
                end = self._offset()
                terminator = 1 if byte == _LF else 2
                self._pos += terminator
                break
            else:
                problem = f"text after the closing quote of field {len(fields) + 1}"
                break

        if problem is not None:
            if first_newline is not None:
                # A quote that swallowed line breaks and did not end cleanly: most likely
                # an unterminated quote. Quarantine the first line only; read on after it.
                problem = f"unterminated quote in field {multiline_field}"
            elif problem == "unterminated quote":
                problem = f"unterminated quote in field {len(fields) + 1}"
            self._seek(start)
            raw, raw_size = self._capped_line()
            return _Record(line, raw, raw_size, None, problem), 1

        record_size = end - start
        lines = newlines + (1 if terminator else 0)
        if storing and record_size > self._max:  # grew past the limit in its last piece
            begin = start - self._base
            prefix = self._buf[begin : begin + self._max]
            storing = False
        if storing:
            raw = self._buf[start - self._base : end - self._base]
            return _Record(line, raw, record_size, fields, None), lines
        over = [k for k, field_size in enumerate(sizes, start=1) if field_size > self._max]
        if over:
            problem = (f"field {over[0]} is {sizes[over[0] - 1]} bytes, over "
                       f"data.max_field_bytes ({self._max})")
        else:
            problem = f"row is {record_size} bytes, over data.max_field_bytes ({self._max})"
        return _Record(line, prefix, record_size, None, problem), lines


def split_records(stream: BinaryIO, max_bytes: int, chunk_size: int = 1 << 16) -> Iterator[_Record]:
    """The records of a stream (header included), each with its start line, raw bytes and
    fields, or the problem that made it unreadable."""
    return _Splitter(stream, max_bytes, chunk_size).records()


def _header_problem(record: _Record, config: CsvConfig) -> tuple[list[str], str | None]:
    """(column names, why the header is unusable or None)."""
    if record.problem is not None:
        return [], record.problem
    if (problem := utf8_problem(record.raw, record.line)) is not None:
        return [], problem
    names = [field.decode("utf-8") for field in record.fields]
    for index, name in enumerate(names, start=1):
        if not name.strip():
            return names, f"column {index} has no name"
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        return names, f"column {duplicates[0]!r} appears more than once"
    missing = [name for name in config.required_columns if name not in names]
    if missing:
        return names, f"no column {missing[0]!r} (its columns: {', '.join(names)})"
    return names, None


def _integer(name: str, field: bytes, config: CsvConfig) -> tuple[int | None, str | None]:
    if not field.strip():
        return None, f"{name} is empty, expected an integer"
    if not _INTEGER.fullmatch(field):
        return None, f"{name} {_shown(field)} is not an integer"
    number = int(field)
    if not _INT64_MIN <= number <= _INT64_MAX:
        return None, f"{name} {number} does not fit in 64 bits"
    if name == config.label_column and config.num_classes is not None:
        if not 0 <= number < config.num_classes:
            classes = "class" if config.num_classes == 1 else "classes"
            return None, (f"{name} {number} is outside the {config.num_classes} {classes} "
                          f"(0..{config.num_classes - 1})")
    return number, None


def parse_csv(
    stream: BinaryIO,
    file: str,
    config: CsvConfig,
    max_field_bytes: int,
    chunk_size: int = 1 << 16,
) -> Iterator[Row | QuarantinedRow]:
    """Yields every record of one CSV file after its header: a `Row`, or a
    `QuarantinedRow` saying why not (see the module docstring).

    If the header itself is unusable (not UTF-8, an unnamed or repeated column, a required
    column missing...), it is quarantined as a row, and so is every record after it.
    """
    records = split_records(stream, max_field_bytes, chunk_size)
    header = next(records, None)
    if header is None:
        return
    names, header_problem = _header_problem(header, config)
    if header_problem is not None:
        yield _quarantined(file, header, f"unusable header: {header_problem}")
        header_problem = f"the file's header (line {header.line}) is unusable: {header_problem}"
    integer_columns = set(config.required_columns)
    for record in records:
        reason = record.problem or header_problem or utf8_problem(record.raw, record.line)
        if reason is None and len(record.fields) != len(names):
            reason = f"{plural(len(record.fields), 'column')}, the header has {len(names)}"
        values: dict[str, bytes | int] = {}
        if reason is None:
            for name, field in zip(names, record.fields, strict=True):
                if name in integer_columns:
                    number, reason = _integer(name, field, config)
                    if reason is not None:
                        break
                    values[name] = number
                elif field:
                    values[name] = field
        if reason is not None:
            yield _quarantined(file, record, reason)
        else:
            yield Row(file, record.line, values)


def _quarantined(file: str, record: _Record, reason: str) -> QuarantinedRow:
    return QuarantinedRow(file, record.line, reason, record.raw,
                          truncated=record.size > len(record.raw))


def read_csv(path: str, config: CsvConfig, max_field_bytes: int) -> list[Row | QuarantinedRow]:
    """Reads a local file (for tools and tests; the executor opens files through Beam's
    FileSystems, so it also reads gs:// and compressed files)."""
    with open(path, "rb") as stream:
        return list(parse_csv(stream, path, config, max_field_bytes))
