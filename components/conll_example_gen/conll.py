"""CoNLL-style token/tag files -> sentences of tokens and IOB2 tags, plus the bad lines.

This is the data logic of `ConllExampleGen`, free of TFX, Beam and TensorFlow so it can be
imported and tested in a second (the executor opens the files and builds the tf.Examples).

Format
  - One token per line: the token in column 0, its tag in column `tag_column` (default -1,
    the last). Columns are separated by tabs if the line has a tab, else by runs of spaces
    (so WNUT's `token<TAB>tag` and CoNLL-2003's `token POS chunk tag` both read).
  - A blank (or whitespace-only) line ends a sentence; so does a `-DOCSTART-` line, which
    is skipped. A final sentence without a blank line after it is kept.
  - Trailing whitespace (CR of CR LF included) is ignored; a UTF-8 byte-order mark at the
    start of a file is dropped. Lines are decoded from UTF-8 one by one.
  - Tags are "O", "B-TYPE" or "I-TYPE" with TYPE one of the configured `entity_types`.
    IOB1 (I- starts an entity unless it continues one of its type) and IOB2 are both
    accepted; each sentence is normalised to IOB2 (`pipeline.tasks.iob.to_iob2`).

Bad lines are data, not crashes: a line that cannot be read (undecodable UTF-8, a column
count different from the file's first token line, no tag column, an empty token, a tag
that is not an IOB tag or whose type is not configured) becomes a `BadLine` (file, 1-based
line, reason, raw bytes), and the sentence containing it is dropped. Reading goes on, so
every bad line of a file is found in one pass. `ConllFormatError` summarises them.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from pipeline.tasks import iob

DOCSTART = "-DOCSTART-"

# Shown in ConllFormatError; the full list is in the bad-lines file.
MAX_REPORTED_BAD_LINES = 10

_UTF8_BOM = b"\xef\xbb\xbf"
# ASCII whitespace only: a token such as U+00A0 (no-break space) is data, not padding.
_TRAILING_WHITESPACE = " \t\r\n\v\f"
_SPACES = re.compile(" +")


@dataclasses.dataclass(frozen=True)
class ConllConfig:
    """What the files look like and how sentences become features.

    Attributes:
        entity_types: the entity types a tag may carry ("PER", "creative-work", ...); the
            tag vocabulary is `iob.tag_names(entity_types)`.
        tag_column: index of the tag column (negative counts from the end); never 0,
            which is the token.
        tokens_feature, tags_feature: names of the two bytes-list features of the output.
    """

    entity_types: tuple[str, ...]
    tag_column: int = -1
    tokens_feature: str = "tokens"
    tags_feature: str = "tags"

    def __post_init__(self) -> None:
        if isinstance(self.entity_types, str):  # tuple("PER") would be ("P", "E", "R").
            raise ValueError(f"entity_types must be a list of types, got the string {self.entity_types!r}")
        # A list from a caller (or a custom_config round trip) becomes a tuple, so the
        # config stays hashable and cannot be changed after validation.
        object.__setattr__(self, "entity_types", tuple(self.entity_types))
        if not self.entity_types:
            raise ValueError("entity_types must name at least one entity type")
        for kind in self.entity_types:
            if not isinstance(kind, str) or not kind or any(c.isspace() for c in kind):
                raise ValueError(f"entity type {kind!r} must be a non-empty string without whitespace")
        if len(set(self.entity_types)) != len(self.entity_types):
            raise ValueError(f"entity_types has duplicates: {list(self.entity_types)}")
        if isinstance(self.tag_column, bool) or not isinstance(self.tag_column, int):
            raise ValueError(f"tag_column must be an integer, got {self.tag_column!r}")
        if self.tag_column == 0:
            raise ValueError("tag_column must not be 0: column 0 holds the token")
        for name in (self.tokens_feature, self.tags_feature):
            if not isinstance(name, str) or not name:
                raise ValueError(f"feature names must be non-empty strings, got {name!r}")
        if self.tokens_feature == self.tags_feature:
            raise ValueError(f"tokens_feature and tags_feature are both {self.tokens_feature!r}")

    @property
    def tag_names(self) -> list[str]:
        return iob.tag_names(list(self.entity_types))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the component passes it to the executor as its custom_config)."""
        return {
            "entity_types": list(self.entity_types),
            "tag_column": self.tag_column,
            "tokens_feature": self.tokens_feature,
            "tags_feature": self.tags_feature,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ConllConfig:
        """The inverse of `to_dict`. Accepts integral floats for `tag_column`, because a
        protobuf Struct (how the custom_config travels) stores every number as a double."""
        values = dict(values)
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown CoNLL config keys: {sorted(unknown)}")
        column = values.get("tag_column", -1)
        if isinstance(column, float) and column.is_integer():
            values["tag_column"] = int(column)
        return cls(**values)


class Sentence(NamedTuple):
    """One sentence; `line` is the 1-based line of its first token, `tags` are IOB2."""

    file: str
    line: int
    tokens: list[str]
    tags: list[str]


class BadLine(NamedTuple):
    """A line that could not be read; its sentence was dropped."""

    file: str
    line: int  # 1-based
    reason: str  # one line of text, no newline
    raw: bytes  # the line as read, line ending excluded

    def describe(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"

    def to_json(self) -> str:
        """One JSON line. `raw_base64` is the exact bytes (a later quarantine step can write
        the line back as it was); `text` is the same line readable, invalid bytes escaped."""
        return json.dumps(
            {
                "file": self.file,
                "line": self.line,
                "reason": self.reason,
                "text": self.raw.decode("utf-8", errors="backslashreplace"),
                "raw_base64": base64.b64encode(self.raw).decode("ascii"),
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> BadLine:
        record = json.loads(text)
        return cls(record["file"], int(record["line"]), record["reason"], base64.b64decode(record["raw_base64"]))


class ConllFormatError(ValueError):
    """The input has malformed lines. The message's first line is a one-line summary (also
    `summary`); the next lines are the first bad lines, `path:line: reason`, one a line."""

    def __init__(self, bad_lines: Sequence[BadLine], total: int | None = None):
        self.bad_lines = list(bad_lines)[:MAX_REPORTED_BAD_LINES]
        self.total = len(bad_lines) if total is None else total
        shown = len(self.bad_lines)
        self.summary = (
            f"{self.total} malformed line{'s' if self.total != 1 else ''} in the CoNLL input "
            f"(their sentences dropped)" + (f"; the first {shown}:" if self.total > shown else ":")
        )
        lines = [self.summary] + [f"  {bad.describe()}" for bad in self.bad_lines]
        if self.total > shown:
            lines.append(f"  ... and {self.total - shown} more")
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle their args by default, which are not our constructor's.
        return (ConllFormatError, (self.bad_lines, self.total))


def split_columns(text: str) -> list[str]:
    """Columns of a line without its trailing whitespace: tab-separated if it has a tab,
    else separated by runs of spaces (leading spaces ignored)."""
    if "\t" in text:
        return text.split("\t")
    return _SPACES.split(text.strip(" "))


class _SentenceBuilder:
    """The sentence being read, and whether a bad line has spoilt it."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.first_line = 0
        self.tokens: list[str] = []
        self.tags: list[str] = []
        self.bad = False

    def add(self, line: int, token: str, tag: str) -> None:
        if not self.tokens and not self.bad:
            self.first_line = line
        self.tokens.append(token)
        self.tags.append(tag)

    def spoil(self) -> None:
        self.bad = True

    def finish(self, file: str) -> Sentence | None:
        """The sentence (IOB2), or None if it is empty or had a bad line; starts the next."""
        sentence = None
        if self.tokens and not self.bad:
            # Every tag was checked on its line, so to_iob2 cannot fail here.
            sentence = Sentence(file, self.first_line, self.tokens, iob.to_iob2(self.tags))
        self._reset()
        return sentence


def _check_tag(tag: str, entity_types: tuple[str, ...]) -> str | None:
    """Why `tag` is not acceptable, or None if it is."""
    try:
        _, kind = iob.split_tag(tag)
    except ValueError as error:
        return str(error)
    if kind is not None and kind not in entity_types:
        return f"entity type {kind!r} of tag {tag!r} is not one of the configured types ({', '.join(entity_types)})"
    return None


def parse_conll(
    lines: Iterable[bytes], file: str, config: ConllConfig, bad_lines: list[BadLine]
) -> Iterator[Sentence]:
    """Yields the sentences of one file, given as its lines (bytes, with or without their
    line endings); appends a `BadLine` to `bad_lines` for every line that cannot be read.

    The column count of the file is that of its first token line that reads (so a broken
    first line does not make every later line wrong); every other token line must match it.
    """
    sentence = _SentenceBuilder()
    expected_columns: int | None = None
    reference_line = 0
    for line_number, raw in enumerate(lines, start=1):
        raw = raw.rstrip(b"\r\n")
        if line_number == 1 and raw.startswith(_UTF8_BOM):
            raw = raw[len(_UTF8_BOM) :]
        try:
            text = raw.decode("utf-8").rstrip(_TRAILING_WHITESPACE)
        except UnicodeDecodeError as error:
            reason: str | None = f"invalid UTF-8 at byte {error.start}"
        else:
            columns = split_columns(text) if text else []
            if not columns or columns[0] == DOCSTART:
                if (finished := sentence.finish(file)) is not None:
                    yield finished
                continue
            if expected_columns is not None and len(columns) != expected_columns:
                reason = (
                    f"{len(columns)} column{'s' if len(columns) != 1 else ''}, but the file's "
                    f"first token line (line {reference_line}) has {expected_columns}"
                )
            elif len(columns) < 2:
                reason = "1 column: expected a token and a tag"
            elif not -len(columns) <= config.tag_column < len(columns):
                reason = f"no tag column {config.tag_column} in {len(columns)} columns"
            else:
                if expected_columns is None:
                    expected_columns, reference_line = len(columns), line_number
                token, tag = columns[0], columns[config.tag_column]
                reason = "empty token (column 0)" if not token else _check_tag(tag, config.entity_types)
        if reason is not None:
            bad_lines.append(BadLine(file, line_number, reason, raw))
            sentence.spoil()
            continue
        sentence.add(line_number, token, tag)
    if (finished := sentence.finish(file)) is not None:
        yield finished


def read_conll(path: str, config: ConllConfig) -> tuple[list[Sentence], list[BadLine]]:
    """Reads a local file (for tools and tests; the executor opens files through Beam's
    FileSystems, so it also reads gs:// and compressed files)."""
    bad_lines: list[BadLine] = []
    with open(path, "rb") as stream:
        sentences = list(parse_conll(stream, path, config, bad_lines))
    return sentences, bad_lines


def write_bad_lines(bad_lines: Iterable[BadLine], stream: Any) -> int:
    """Writes JSON lines, sorted by (file, line), to a binary stream; returns the count."""
    count = 0
    for bad in sorted(bad_lines):
        stream.write((bad.to_json() + "\n").encode("utf-8"))
        count += 1
    return count


def read_bad_lines(stream: Any) -> Iterator[BadLine]:
    """Reads what `write_bad_lines` wrote from a binary stream."""
    for line in iter(stream.readline, b""):
        if line.strip():
            yield BadLine.from_json(line.decode("utf-8"))
