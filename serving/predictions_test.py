"""serving.predictions: per-task records, lines and CSV cells from a model's outputs.

Pure Python and fast: no model, no server. Rows come in the three shapes the callers give:
JSON values (REST), Python lists (gRPC) and numpy arrays with bytes (Beam's RunInference).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serving import predictions
from serving.predictions import CLASSIFICATION, ENTITIES, TOKEN_TAGS, task_for, task_named

REPO = Path(__file__).resolve().parents[1]
# Multi-byte UTF-8 (2, 3 and 4 bytes: é, ü, €, 😀, 東京), so byte offsets would slice wrongly.
TEXT = "Zoë 😀 met Ängela Merkel in 東京 for 5€."
# (start, end) in code points; the padding past num_entities is -1 / "" / 0.
SPANS = [(10, 23, "PER", 0.75), (27, 29, "LOC", 0.5)]


def _padded_row(spans, width: int) -> dict:
    pad = width - len(spans)
    return {
        "entity_start": [s for s, _, _, _ in spans] + [-1] * pad,
        "entity_end": [e for _, e, _, _ in spans] + [-1] * pad,
        "entity_label": [label for _, _, label, _ in spans] + [""] * pad,
        "entity_score": [score for _, _, _, score in spans] + [0.0] * pad,
        "num_entities": len(spans),
    }


def _numpy_row(row: dict) -> dict:
    """The row as `bertpipe score` sees it: numpy arrays, strings as bytes."""
    return {
        "entity_start": np.array(row["entity_start"], np.int32),
        "entity_end": np.array(row["entity_end"], np.int32),
        "entity_label": np.array([s.encode() for s in row["entity_label"]], object),
        "entity_score": np.array(row["entity_score"], np.float32),
        "num_entities": np.int32(row["num_entities"]),
    }


EXPECTED = [
    {"start": 10, "end": 23, "text": "Ängela Merkel", "label": "PER", "score": 0.75},
    {"start": 27, "end": 29, "text": "東京", "label": "LOC", "score": 0.5},
]


def test_entities_drop_padding_and_slice_code_points():
    assert TEXT[10:23] == "Ängela Merkel" and TEXT[27:29] == "東京"
    row = _padded_row(SPANS, width=4)
    assert predictions.entities(TEXT, row) == EXPECTED
    # The same from numpy arrays with bytes labels (Beam), and with JSON's float text.
    assert predictions.entities(TEXT, _numpy_row(row)) == EXPECTED
    record = task_for(row).record(TEXT, row)
    assert record == {"entities": EXPECTED}
    assert json.loads(json.dumps(record, ensure_ascii=False)) == record


def test_rows_without_entities_and_zero_width_batches():
    assert predictions.entities(TEXT, _padded_row([], width=3)) == []
    assert predictions.entities("", _padded_row([], width=0)) == []  # a batch with none at all
    assert predictions.entities(TEXT, _numpy_row(_padded_row([], width=0))) == []


def test_inconsistent_entity_outputs_are_errors_not_wrong_text():
    row = _padded_row(SPANS, width=2)
    with pytest.raises(ValueError, match="num_entities is 3"):
        predictions.entities(TEXT, {**row, "num_entities": 3})
    # Offsets beyond the text: the text is not the one the model saw.
    with pytest.raises(ValueError, match="outside the text"):
        predictions.entities(TEXT[:20], row)


def test_entity_lines_for_people():
    row = _padded_row(SPANS, width=3)
    task = task_for(row)
    assert task.name == ENTITIES
    assert task.lines(TEXT, task.record(TEXT, row)) == [
        TEXT,
        "\tÄngela Merkel\tPER\t0.7500\t10-23",
        "\t東京\tLOC\t0.5000\t27-29",
    ]
    empty = _padded_row([], width=0)
    assert task.lines("nothing here", task.record("nothing here", empty)) == ["nothing here"]


def test_classification_is_unchanged():
    """The record, line and CSV cells `bertpipe predict`/`score` wrote before tasks existed."""
    task = task_for(["probabilities", "label"])
    assert task.name == CLASSIFICATION
    for row in (
        {"label": "positive", "probabilities": [0.25, 0.75]},  # REST / gRPC
        {"label": b"positive", "probabilities": np.array([0.25, 0.75], np.float32)},  # Beam
    ):
        record = task.record("a gorgeous film", row)
        assert record == {"label": "positive", "probabilities": [0.25, 0.75]}
        assert list(record) == ["label", "probabilities"]
        assert all(type(p) is float for p in record["probabilities"])
        assert task.lines("a gorgeous film", record) == ["positive\t0.7500\ta gorgeous film"]
    # float32 values as float() made them before, so JSONL/CSV digits are the same.
    record = task.record("x", {"label": b"n", "probabilities": np.array([0.1, 0.9], np.float32)})
    assert record["probabilities"] == [float(np.float32(0.1)), float(np.float32(0.9))]
    assert task.header(["negative", "positive"]) == [
        "label", "probability_negative", "probability_positive"]  # fmt: skip
    assert task.cells(record) == ["n", repr(float(np.float32(0.1))), repr(float(np.float32(0.9)))]


def test_entities_csv_column_is_json():
    task = task_named(ENTITIES)
    assert task.header(None) == ["entities"]
    (cell,) = task.cells({"entities": EXPECTED})
    assert json.loads(cell) == EXPECTED and "東京" in cell


def test_token_tags_drop_the_batch_padding():
    task = task_for({"token_labels": 0, "token_scores": 0})
    assert task.name == TOKEN_TAGS
    row = {
        "token_labels": np.array([b"B-PER", b"I-PER", b"O", b"", b""], object),
        "token_scores": np.array([0.5, 0.25, 0.0, 0.0, 0.0], np.float32),
    }
    # A word cut by max_seq_length is "O" with score 0 and stays; only "" is padding.
    assert task.record("", row) == {
        "token_labels": ["B-PER", "I-PER", "O"],
        "token_scores": [0.5, 0.25, 0.0],
    }
    assert task.header(None) == ["token_labels", "token_scores"]


def test_the_task_is_chosen_by_output_names():
    names = set(predictions.ENTITY_OUTPUTS) | {"extra"}
    assert task_for(names).name == ENTITIES
    with pytest.raises(ValueError, match=r"match no known task.*classification: label"):
        task_for(["entity_start", "label"])
    with pytest.raises(KeyError):
        task_named("translation")
    assert predictions.render("Paris", _padded_row([(0, 5, "LOC", 0.5)], 1)) == {
        "text": "Paris",
        "entities": [{"start": 0, "end": 5, "text": "Paris", "label": "LOC", "score": 0.5}],
    }


def test_rest_client_path_imports_neither_tensorflow_nor_numpy():
    script = (
        "import sys, serving.predictions, serving.predict_cli, serving.client\n"
        "print(sorted(m for m in ('tensorflow', 'numpy', 'grpc') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
