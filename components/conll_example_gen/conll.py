"""CoNLL-style token/tag files -> sentences of tokens and IOB2 tags, and the bad sentences.

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

Bad lines are data, not crashes: a line that cannot be read (not UTF-8, longer than
`max_field_bytes`, a column count different from the file's first token line, no tag
column, an empty token, a tag that is not an IOB tag or whose type is not configured) spoils
its sentence, which is quarantined whole as one `quarantine.QuarantinedRow`: `line` is its
first bad line, `reason` says why (and names any further bad line of the sentence), `raw`
holds all the sentence's lines (LF-separated). Reading goes on, so every bad sentence of a
file is found in one pass; a row, for counting and for `max_bad_fraction`, is a sentence.

Example:
    config = ConllConfig(entity_types=("PER", "ORG", "LOC", "MISC"))
    with open("train.conll", "rb") as stream:
        for item in parse_conll(stream, "train.conll", config):
            ...  # a Sentence, or a quarantine.QuarantinedRow
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple

from components.quarantine import (
    DEFAULT_MAX_FIELD_BYTES,
    BadRowsError,
    CappedLines,
    QuarantinedRow,
    split_rows,
    utf8_problem,
)
from pipeline.tasks import iob

DOCSTART = "-DOCSTART-"

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


class ConllFormatError(BadRowsError):
    """Bad sentences found by a tool reading CoNLL files directly (`read_conll`); the
    example gen quarantines them instead (see `components.quarantine`)."""

    source = "the CoNLL input"


def split_columns(text: str) -> list[str]:
    """Columns of a line without its trailing whitespace: tab-separated if it has a tab,
    else separated by runs of spaces (leading spaces ignored)."""
    if "\t" in text:
        return text.split("\t")
    return _SPACES.split(text.strip(" "))


class _SentenceBuilder:
    """The sentence being read: its tokens and tags, its raw lines, and its bad lines."""

    def __init__(self, max_raw_bytes: int) -> None:
        self._max_raw = max_raw_bytes
        self._reset()

    def _reset(self) -> None:
        self.first_line = 0
        self.tokens: list[str] = []
        self.tags: list[str] = []
        self.raw = bytearray()
        self.raw_size = 0
        self.bad: list[tuple[int, str]] = []  # (line, reason)

    def line(self, number: int, raw: bytes, size: int) -> None:
        """Notes a token line (good or bad) of the sentence."""
        if not self.first_line:
            self.first_line = number
        else:
            self.raw_size += 1
            if len(self.raw) < self._max_raw:
                self.raw += b"\n"
        self.raw_size += size
        self.raw += raw[: max(0, self._max_raw - len(self.raw))]

    def add(self, token: str, tag: str) -> None:
        self.tokens.append(token)
        self.tags.append(tag)

    def spoil(self, number: int, reason: str) -> None:
        self.bad.append((number, reason))

    def finish(self, file: str) -> Sentence | QuarantinedRow | None:
        """The sentence (IOB2), its quarantined row if it had a bad line, or None if it was
        empty; starts the next."""
        result: Sentence | QuarantinedRow | None = None
        if self.bad:
            (line, reason), others = self.bad[0], self.bad[1:]
            if others:
                reason += "; also " + "; ".join(f"line {n}: {why}" for n, why in others)
            result = QuarantinedRow(file, line, reason, bytes(self.raw[: self._max_raw]),
                                    truncated=self.raw_size > self._max_raw)
        elif self.tokens:
            # Every tag was checked on its line, so to_iob2 cannot fail here.
            result = Sentence(file, self.first_line, self.tokens, iob.to_iob2(self.tags))
        self._reset()
        return result


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
    stream: BinaryIO,
    file: str,
    config: ConllConfig,
    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES,
) -> Iterator[Sentence | QuarantinedRow]:
    """Yields the sentences of one file (a binary stream), and a `QuarantinedRow` for each
    sentence with a bad line, in file order. A line longer than `max_field_bytes` is a bad
    line; no more than that is held in memory for one line (or one quarantined sentence).

    The column count of the file is that of its first token line that reads (so a broken
    first line does not make every later line wrong); every other token line must match it.
    """
    sentence = _SentenceBuilder(max_field_bytes)
    expected_columns: int | None = None
    reference_line = 0
    for line_number, (raw, size) in enumerate(CappedLines(stream, max_field_bytes), start=1):
        if line_number == 1 and raw.startswith(_UTF8_BOM):
            raw, size = raw[len(_UTF8_BOM) :], size - len(_UTF8_BOM)
        reason: str | None = None
        if size > max_field_bytes:
            reason = f"line is {size} bytes, over data.max_field_bytes ({max_field_bytes})"
        elif (reason := utf8_problem(raw)) is None:
            text = raw.decode("utf-8").rstrip(_TRAILING_WHITESPACE)
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
        sentence.line(line_number, raw, size)
        if reason is not None:
            sentence.spoil(line_number, reason)
        else:
            sentence.add(token, tag)
    if (finished := sentence.finish(file)) is not None:
        yield finished


def read_conll(
    path: str, config: ConllConfig, max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES
) -> tuple[list[Sentence], list[QuarantinedRow]]:
    """Reads a local file: (sentences, quarantined sentences). For tools and tests; the
    executor opens files through Beam's FileSystems, so it also reads gs:// and .gz files."""
    with open(path, "rb") as stream:
        return split_rows(parse_conll(stream, path, config, max_field_bytes))
