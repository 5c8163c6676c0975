"""SQuAD v1.1 JSON files -> questions with their context and gold answers, and the bad ones.

This is the data logic of `SquadExampleGen`, free of TFX, Beam and TensorFlow so it can be
imported and tested in a second (the executor opens the files and builds the tf.Examples).

Format (SQuAD v1.1, https://rajpurkar.github.io/SQuAD-explorer/)

    {"version": "1.1", "data": [
      {"title": "Normans", "paragraphs": [
        {"context": "The Normans ... in Normandy ...",
         "qas": [{"id": "56ddde6b9a695914005b9628",
                  "question": "In what country is Normandy located?",
                  "answers": [{"text": "France", "answer_start": 159}, ...]}]}]}]}

  - One `Question` per entry of `qas`, carrying its article's `title` (the split key: two
    questions of one article must never land in different splits) and paragraph `context`.
  - `answer_start` is an offset into `context` in characters, which in Python (and in the
    SQuAD files, written by Python) are Unicode code points, not UTF-8 bytes: an "ü" or an
    emoji before an answer counts once. Every gold answer is kept, in the file's order
    (the dev files repeat an answer once per annotator; the evaluation takes the best match).
  - The file is UTF-8 (a byte-order mark is ignored). Keys other than these are ignored,
    and so is `version`.

Bad records are data, not crashes, as for the other example gens: a question that cannot be
used is quarantined (`quarantine.QuarantinedRow`) with its JSON position and id
(`position`: `data[i].paragraphs[j].qas[k] (id ...)`), the line where it starts, every
reason found (a missing, empty, mistyped or over-long field, no answers, an `answer_start`
that does not point at its answer's text, an id used twice in the file) and its JSON text
as it is in the file (`raw`); reading goes on, so one pass finds them all. A paragraph or
article that cannot be read (no context, no title, ...) is one quarantined row at its own
position, and its questions are dropped with it. A file that is not UTF-8 or not valid JSON
is one quarantined row naming its line and column (`raw`: that line). For counting and
`max_bad_fraction` a row is a question, and each quarantined record counts as one.

Example:
    with open("dev.json", "rb") as stream:
        for item in parse_squad(stream.read(), "dev.json"):
            ...  # a Question, or a quarantine.QuarantinedRow
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from components.quarantine import (
    DEFAULT_MAX_FIELD_BYTES,
    BadRowsError,
    QuarantinedRow,
    split_rows,
    utf8_problem,
)

# The location of a problem with the document as a whole (no or a bad `data` list).
TOP_LEVEL = "(top level)"

_SHOWN_CHARS = 40  # of a string quoted in a reason
_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")


class Question(NamedTuple):
    """One question of a SQuAD file; `location` is its JSON position in `file`."""

    file: str
    location: str
    id: str
    title: str
    question: str
    context: str
    answer_texts: tuple[str, ...]
    answer_starts: tuple[int, ...]  # code-point offsets into `context`


class SquadFormatError(BadRowsError):
    """Bad records found by a tool reading SQuAD files directly (`read_squad`); the
    example gen quarantines them instead (see `components.quarantine`)."""

    source = "the SQuAD input"


class _Bad(NamedTuple):
    """A record found bad while walking the parsed document (its line and bytes are looked
    up in the text afterwards)."""

    location: str
    reasons: list[str]
    question_id: str | None = None


def _shown(text: str) -> str:
    """`text` quoted for a reason, shortened so one bad record stays one readable line."""
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 3] + "..."
    return repr(text)


def _kind(value: Any) -> str:
    """What a JSON value is, for "expected X, got Y"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f"{_shown(value)} (a string)"
    if isinstance(value, int | float):
        return f"{value!r} (a number)"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _text_field(
    record: dict, name: str, reasons: list[str], max_bytes: int = DEFAULT_MAX_FIELD_BYTES
) -> str | None:
    """`record[name]` if it is a non-blank string of at most `max_bytes` bytes (UTF-8);
    else appends why not and returns None."""
    if name not in record:
        reasons.append(f"{name}: missing")
        return None
    value = record[name]
    if not isinstance(value, str):
        reasons.append(f"{name}: expected a string, got {_kind(value)}")
        return None
    if not value.strip():
        reasons.append(f"{name}: empty")
        return None
    if len(value) > max_bytes // 4 and (size := len(value.encode("utf-8"))) > max_bytes:
        reasons.append(f"{name}: {size} bytes, over data.max_field_bytes ({max_bytes})")
        return None
    return value


def _list_field(record: dict, name: str, reasons: list[str]) -> list | None:
    """`record[name]` if it is a non-empty list; else appends why not and returns None."""
    if name not in record:
        reasons.append(f"{name}: missing")
        return None
    value = record[name]
    if not isinstance(value, list):
        reasons.append(f"{name}: expected a list, got {_kind(value)}")
        return None
    if not value:
        reasons.append(f"{name}: empty")
        return None
    return value


def _object(value: Any, reasons: list[str]) -> dict | None:
    if not isinstance(value, dict):
        reasons.append(f"expected an object, got {_kind(value)}")
        return None
    return value


def check_answer(
    context: str, answer: Any, name: str, reasons: list[str],
    max_bytes: int = DEFAULT_MAX_FIELD_BYTES,
) -> tuple[str, int] | None:
    """(text, start) of one gold answer if `context[start:start + len(text)] == text`;
    else appends why not (prefixed with `name`, e.g. "answers[1]") and returns None."""
    if not isinstance(answer, dict):
        reasons.append(f"{name}: expected an object, got {_kind(answer)}")
        return None
    own: list[str] = []
    text = _text_field(answer, "text", own, max_bytes)
    start = None
    if "answer_start" not in answer:
        own.append("answer_start: missing")
    elif isinstance(answer["answer_start"], bool) or not isinstance(answer["answer_start"], int):
        own.append(f"answer_start: expected an integer, got {_kind(answer['answer_start'])}")
    else:
        start = answer["answer_start"]
    if text is not None and start is not None:
        end = start + len(text)
        if start < 0:
            own.append(f"answer_start: {start} is negative")
        elif end > len(context):
            own.append(
                f"answer_start: {start} + the answer's {len(text)} characters runs past the end "
                f"of the context ({len(context)} characters)"
            )
        elif context[start:end] != text:
            found = context.find(text)
            where = (f"; the text occurs at {found}" if found >= 0
                     else "; the text is not in the context")
            own.append(
                f"answer_start: {start} points at {_shown(context[start:end])}, not at the "
                f"answer text {_shown(text)}{where}"
            )
    reasons.extend(f"{name}.{reason}" for reason in own)
    return None if own else (text, start)


def parse_question(
    qa: Any, context: str, seen_ids: dict[str, str], location: str,
    max_bytes: int = DEFAULT_MAX_FIELD_BYTES,
) -> tuple[str | None, dict[str, Any] | None, list[str]]:
    """Checks one entry of a paragraph's `qas`.

    Returns (its id if it has a usable one, {"id", "question", "answer_texts",
    "answer_starts"} or None if it is bad, the reasons it is bad). `seen_ids` maps the ids
    met so far in the file to their location; a usable id is added to it.
    """
    reasons: list[str] = []
    record = _object(qa, reasons)
    if record is None:
        return None, None, reasons
    question_id = _text_field(record, "id", reasons, max_bytes)
    if question_id is not None:
        if question_id in seen_ids:
            reasons.append(f"id: also the id of {seen_ids[question_id]}")
        else:
            seen_ids[question_id] = location
    question = _text_field(record, "question", reasons, max_bytes)
    answers = []
    if record.get("answers") == [] and record.get("is_impossible"):
        reasons.append("answers: empty (an unanswerable SQuAD 2.0 question; SQuAD v1.1 "
                       "questions always have an answer)")
    else:
        for index, answer in enumerate(_list_field(record, "answers", reasons) or []):
            answers.append(check_answer(context, answer, f"answers[{index}]", reasons, max_bytes))
    if reasons:
        return question_id, None, reasons
    return question_id, {
        "id": question_id,
        "question": question,
        "answer_texts": tuple(text for text, _ in answers),
        "answer_starts": tuple(start for _, start in answers),
    }, reasons


def squad_questions(
    document: Any, file: str, bad_records: list[_Bad], max_bytes: int = DEFAULT_MAX_FIELD_BYTES
) -> Iterator[Question]:
    """Yields the questions of a parsed SQuAD document (the JSON value of one file);
    appends a `_Bad` to `bad_records` for each question, paragraph or article that cannot
    be used."""
    # A problem at the top level rejects the whole document.
    reasons: list[str] = []
    if not isinstance(document, dict):
        reasons.append(f"expected an object with a 'data' list, got {_kind(document)}")
    articles = _list_field(document, "data", reasons) if not reasons else None
    if articles is None:
        bad_records.append(_Bad(TOP_LEVEL, reasons))
        return
    seen_ids: dict[str, str] = {}
    for i, article_value in enumerate(articles):
        at_article = f"data[{i}]"
        reasons = []
        article = _object(article_value, reasons)
        title = paragraphs = None
        if article is not None:
            title = _text_field(article, "title", reasons, max_bytes)
            paragraphs = _list_field(article, "paragraphs", reasons)
        if reasons:
            bad_records.append(_Bad(at_article, reasons))
            continue
        for j, paragraph_value in enumerate(paragraphs):
            at_paragraph = f"{at_article}.paragraphs[{j}]"
            reasons = []
            paragraph = _object(paragraph_value, reasons)
            context = qas = None
            if paragraph is not None:
                context = _text_field(paragraph, "context", reasons, max_bytes)
                qas = _list_field(paragraph, "qas", reasons)
            if reasons:
                bad_records.append(_Bad(at_paragraph, reasons))
                continue
            for k, qa in enumerate(qas):
                at_question = f"{at_paragraph}.qas[{k}]"
                question_id, fields, reasons = parse_question(
                    qa, context, seen_ids, at_question, max_bytes)
                if fields is None:
                    bad_records.append(_Bad(at_question, reasons, question_id))
                    continue
                yield Question(file=file, location=at_question, title=title, context=context,
                               **fields)


def _skip(text: str, index: int) -> int:
    return _WHITESPACE.match(text, index).end()


# What each level of a SQuAD document holds: the kind of the value under a key of an object
# (or of every element of a list) that the walk goes into; everything else is skipped.
_CHILDREN = {
    "document": {"data": "articles"},
    "articles": "article",
    "article": {"paragraphs": "paragraphs"},
    "paragraphs": "paragraph",
    "paragraph": {"qas": "questions"},
    "questions": "question",
}


def element_spans(text: str) -> dict[str, tuple[int, int]]:
    """(start, end) offsets in `text` (a valid JSON document) of the document and of each
    article, paragraph and question, by location ("data[0].paragraphs[2].qas[1]").

    JSON parsers do not keep positions, so this walks the document's structure itself,
    leaving every other value to the C scanner (`raw_decode`); it runs only for files with
    bad records."""
    spans: dict[str, tuple[int, int]] = {}

    def walk(index: int, kind: str, path: str) -> int:
        """Walks the value at text[index] (no leading whitespace); returns its end."""
        children = _CHILDREN.get(kind)
        opening = text[index]
        if isinstance(children, dict) and opening == "{":
            index = _skip(text, index + 1)
            while text[index] != "}":
                key, index = _DECODER.raw_decode(text, index)
                index = _skip(text, _skip(text, index) + 1)  # the colon
                child = children.get(key)
                if child is None:
                    _, index = _DECODER.raw_decode(text, index)
                else:
                    index = walk(index, child, key if kind == "document" else f"{path}.{key}")
                index = _skip(text, index)
                if text[index] == ",":
                    index = _skip(text, index + 1)
            return index + 1
        if isinstance(children, str) and opening == "[":
            index = _skip(text, index + 1)
            number = 0
            while text[index] != "]":
                start = index
                location = f"{path}[{number}]"
                index = walk(index, children, location)
                spans[location] = (start, index)
                number += 1
                index = _skip(text, index)
                if text[index] == ",":
                    index = _skip(text, index + 1)
            return index + 1
        _, index = _DECODER.raw_decode(text, index)
        return index

    start = _skip(text, 0)
    spans[TOP_LEVEL] = (start, walk(start, "document", ""))
    return spans


def _file_row(data: bytes | str, offset: int, file: str, line: int, reason: str,
              max_bytes: int) -> QuarantinedRow:
    """The whole file as one quarantined row: `raw` is the physical line holding `offset`."""
    newline = b"\n" if isinstance(data, bytes) else "\n"
    line_start = data.rfind(newline, 0, offset) + 1
    line_end = data.find(newline, offset)
    raw = data[line_start : line_end if line_end >= 0 else len(data)]
    raw = raw if isinstance(raw, bytes) else raw.encode("utf-8")
    raw = raw.rstrip(b"\r")
    return QuarantinedRow(file, line, reason, raw[:max_bytes], truncated=len(raw) > max_bytes)


def parse_squad(
    data: bytes, file: str, max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES
) -> Iterator[Question | QuarantinedRow]:
    """Yields the questions of one SQuAD file given as its bytes, then a `QuarantinedRow`
    for everything that cannot be used (see the module docstring)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line_start = data.rfind(b"\n", 0, error.start) + 1
        reason = utf8_problem(data[line_start : error.end])
        line = data.count(b"\n", 0, error.start) + 1
        yield _file_row(data, error.start, file, line, reason, max_field_bytes)
        return
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        # JSONDecodeError's column counts characters from 1, as editors do.
        reason = f"not valid JSON at column {error.colno}: {error.msg}"
        yield _file_row(text, error.pos, file, error.lineno, reason, max_field_bytes)
        return
    bad_records: list[_Bad] = []
    yield from squad_questions(document, file, bad_records, max_field_bytes)
    if not bad_records:
        return
    spans = element_spans(text)
    newlines = [match.start() for match in re.finditer("\n", text)]
    for bad in bad_records:
        start, end = spans[bad.location]
        raw = text[start : min(end, start + max_field_bytes)].encode("utf-8")
        position = bad.location + (f" (id {bad.question_id})" if bad.question_id is not None else "")
        yield QuarantinedRow(
            file, bisect.bisect_left(newlines, start) + 1, "; ".join(bad.reasons),
            raw[:max_field_bytes], position=position,
            truncated=end - start > max_field_bytes or len(raw) > max_field_bytes,
        )


def read_squad(
    path: str, max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES
) -> tuple[list[Question], list[QuarantinedRow]]:
    """Reads a local file: (questions, quarantined records). For tools and tests; the
    executor opens files through Beam's FileSystems, so it also reads gs:// and .gz files."""
    with open(path, "rb") as stream:
        return split_rows(parse_squad(stream.read(), path, max_field_bytes))
