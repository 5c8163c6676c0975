"""What a served model's outputs mean, per task: records for JSON/CSV and lines for people.

Pure Python (no TensorFlow, no numpy needed), so `bertpipe predict` over REST stays fast. A
model's task is recognised by the output names its signature returns:

| task | outputs | record fields |
|---|---|---|
| `classification` | `label`, `probabilities` | `label`, `probabilities` |
| `entities` | `entity_start`, `entity_end`, `entity_label`, `entity_score`, `num_entities` | `entities` |
| `token_tags` | `token_labels`, `token_scores` (NER `from_examples`) | `token_labels`, `token_scores` |

A record is what `bertpipe predict --json` and `bertpipe score` write next to the input text;
`entities` is a list of `{"start", "end", "text", "label", "score"}` with `text ==
input[start:end]` (offsets in Unicode code points, end exclusive, as Python slices them).

The human format of `bertpipe predict` (one block per input text):

* classification, one line: `label<TAB>probability of that label<TAB>text`.
* entities: the text on a line of its own, then one line per entity, in text order, each
  starting with a TAB: `<TAB>entity text<TAB>label<TAB>score<TAB>start-end`. A sentence
  without entities is its line alone. (`grep -P '^\\t'` keeps the entities; `--json` is the
  exact, machine-readable form.)

Adding a task is one `Task` entry in `TASKS`; e.g. extractive question answering:

    Task("answer", frozenset({"answer_text", "answer_start", "answer_end", "score"}),
         ("answer",), _answer_record, _answer_lines)

Row values may be JSON values (REST), Python lists (gRPC, `serving.client`) or numpy arrays
and scalars with bytes for strings (`bertpipe score`); every task accepts all three.

>>> task = task_for(["label", "probabilities"])
>>> task.record("a gorgeous film", {"label": "positive", "probabilities": [0.25, 0.75]})
{'label': 'positive', 'probabilities': [0.25, 0.75]}
>>> row = {"entity_start": [0, -1], "entity_end": [5, -1], "entity_label": ["LOC", ""],
...        "entity_score": [0.5, 0.0], "num_entities": 1}
>>> task_for(row).record("Paris is big", row)
{'entities': [{'start': 0, 'end': 5, 'text': 'Paris', 'label': 'LOC', 'score': 0.5}]}
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

CLASSIFICATION, ENTITIES, TOKEN_TAGS = "classification", "entities", "token_tags"
ENTITY_OUTPUTS = ("entity_start", "entity_end", "entity_label", "entity_score", "num_entities")


def _plain(value: Any) -> Any:
    """numpy arrays and scalars -> Python lists and scalars (duck-typed: no numpy import)."""
    return value.tolist() if hasattr(value, "tolist") else value


def _text(value: Any) -> str:
    value = _plain(value)
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _values(value: Any) -> list:
    value = _plain(value)
    return list(value) if isinstance(value, list | tuple) else [value]


def _cell(value: Any) -> Any:
    """A CSV cell: lists and objects as JSON, so one column holds one field."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value


@dataclasses.dataclass(frozen=True)
class Task:
    """How to render one task's outputs.

    Attributes:
        name: the task's name (stable; `bertpipe score` passes it to Beam workers).
        outputs: the output names that identify the task (all must be present).
        fields: the record's keys in order (the JSON keys, and the CSV columns by default).
        record: (input text, one row's outputs) -> {field: JSON-able value}.
        lines: (input text, record) -> the lines `bertpipe predict` prints.
        csv_header: class names (or None) -> the CSV columns after file, line, text.
        csv_cells: record -> the CSV cells for those columns.
    """

    name: str
    outputs: frozenset[str]
    fields: tuple[str, ...]
    record: Callable[[str, Mapping[str, Any]], dict]
    lines: Callable[[str, Mapping[str, Any]], list[str]]
    csv_header: Callable[[Sequence[str] | None], list[str]] | None = None
    csv_cells: Callable[[Mapping[str, Any]], list] | None = None

    def header(self, class_names: Sequence[str] | None = None) -> list[str]:
        """The CSV columns after file, line, text."""
        return self.csv_header(class_names) if self.csv_header else list(self.fields)

    def cells(self, record: Mapping[str, Any]) -> list:
        """The CSV cells matching `header()`."""
        if self.csv_cells:
            return self.csv_cells(record)
        return [_cell(record[field]) for field in self.fields]


# --- classification: the export contract of serving.export ----------------------------------


def _classification_record(text: str, row: Mapping[str, Any]) -> dict:
    return {
        "label": _text(row["label"]),
        "probabilities": [float(p) for p in _values(row["probabilities"])],
    }


def _classification_lines(text: str, record: Mapping[str, Any]) -> list[str]:
    probabilities = record["probabilities"]
    probability = max(probabilities) if probabilities else float("nan")
    return [f"{record['label']}\t{probability:.4f}\t{text}"]


def _classification_header(class_names: Sequence[str] | None) -> list[str]:
    if class_names is None:
        raise ValueError("classification CSV columns need the class names")
    return ["label"] + [f"probability_{name}" for name in class_names]


def _classification_cells(record: Mapping[str, Any]) -> list:
    # repr: the shortest text that reads back as the same float.
    return [record["label"]] + [repr(p) for p in record["probabilities"]]


# --- entities: the serving_default contract of serving.token_classification_export ----------


def entities(text: str, row: Mapping[str, Any]) -> list[dict]:
    """One text's padded entity arrays -> `[{"start", "end", "text", "label", "score"}]`.

    Entries past `num_entities` are padding and dropped. Offsets count Unicode code points
    (Python's str indices), so `text[start:end]` is the entity as the model saw it; `text`
    must be the exact string sent to the model.
    """
    count = int(_plain(row["num_entities"]))
    starts, ends = _values(row["entity_start"]), _values(row["entity_end"])
    labels, scores = _values(row["entity_label"]), _values(row["entity_score"])
    if not 0 <= count <= min(len(starts), len(ends), len(labels), len(scores)):
        raise ValueError(
            f"num_entities is {count} but the entity outputs hold "
            f"{min(len(starts), len(ends), len(labels), len(scores))} entries"
        )
    found = []
    for index in range(count):
        start, end = int(starts[index]), int(ends[index])
        if not 0 <= start <= end <= len(text):
            # A mismatch would slice the wrong characters silently: fail instead.
            raise ValueError(
                f"entity offsets {start}-{end} are outside the text ({len(text)} characters); "
                "was the text changed after the request?"
            )
        found.append(
            {
                "start": start,
                "end": end,
                "text": text[start:end],
                "label": _text(labels[index]),
                "score": float(scores[index]),
            }
        )
    return found


def _entities_record(text: str, row: Mapping[str, Any]) -> dict:
    return {"entities": entities(text, row)}


def entity_lines(text: str, record: Mapping[str, Any]) -> list[str]:
    """The text, then `<TAB>entity text<TAB>label<TAB>score<TAB>start-end` per entity."""
    return [text] + [
        f"\t{e['text']}\t{e['label']}\t{e['score']:.4f}\t{e['start']}-{e['end']}"
        for e in record["entities"]
    ]


# --- token tags: the from_examples contract of serving.token_classification_export ----------


def _token_tags_record(text: str, row: Mapping[str, Any]) -> dict:
    labels = [_text(label) for label in _values(row["token_labels"])]
    scores = [float(score) for score in _values(row["token_scores"])]
    # Rows are padded to the batch's longest sentence with "" (a real tag is never empty).
    words = len(labels)
    while words and not labels[words - 1]:
        words -= 1
    return {"token_labels": labels[:words], "token_scores": scores[:words]}


def _token_tags_lines(text: str, record: Mapping[str, Any]) -> list[str]:
    return [text, "\t" + " ".join(record["token_labels"])]


TASKS: tuple[Task, ...] = (
    Task(
        CLASSIFICATION,
        frozenset({"label", "probabilities"}),
        ("label", "probabilities"),
        _classification_record,
        _classification_lines,
        _classification_header,
        _classification_cells,
    ),
    Task(ENTITIES, frozenset(ENTITY_OUTPUTS), ("entities",), _entities_record, entity_lines),
    Task(
        TOKEN_TAGS,
        frozenset({"token_labels", "token_scores"}),
        ("token_labels", "token_scores"),
        _token_tags_record,
        _token_tags_lines,
    ),
)


def task_for(output_names: Iterable[str]) -> Task:
    """The task whose outputs are all among `output_names` (the first in `TASKS` order)."""
    names = set(output_names)
    for task in TASKS:
        if task.outputs <= names:
            return task
    known = "; ".join(f"{t.name}: {', '.join(sorted(t.outputs))}" for t in TASKS)
    raise ValueError(
        f"the model's outputs {sorted(names)} match no known task ({known})"
    )


def task_named(name: str) -> Task:
    """The task called `name`."""
    for task in TASKS:
        if task.name == name:
            return task
    raise KeyError(f"no task {name!r} (known: {', '.join(t.name for t in TASKS)})")


def render(text: str, row: Mapping[str, Any]) -> dict:
    """One text and its outputs -> `{"text": text, **record}` (the task chosen by name)."""
    return {"text": text, **task_for(row).record(text, row)}
