"""SquadEvaluator: the blessing rule, the gold answers read from SquadExampleGen's records,
the artifacts the executor writes, and `read_evaluation`.

The executor runs real SavedModels: two tiny exports (`export_question_answering`) of models
whose start and end logits are a fixed function of the token id (the idea of
`_controlled_model` in serving/question_answering_export_test.py), so the test chooses each
model's answers and hence the exact match and F1 the executor must find. Imports TFX and
TensorFlow (about 20 s); the two exports and their runs take about a minute.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import tensorflow as tf
from tfx.components.evaluator import constants
from tfx.types import artifact_utils, channel, standard_artifacts

from components.squad_evaluator import executor
from components.squad_evaluator.component import SquadEvaluator
from components.squad_evaluator.executor import blessing_failures, read_evaluation
from serving import question_answering_features as features
from serving.test_models import span_model

CANDIDATE = {"exact_match": 70.0, "f1": 80.0, "questions": 10}

VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "where", "?", "zurich", ",", "basel", "the", "city", "of", "is", "on", "rhine",
]  # fmt: skip
# The eval split: (question id, context, gold answers).
ROWS = [
    ("q1", "Zürich, Basel", ["Zürich"]),
    ("q2", "the city of Basel is on the Rhine", ["Basel", "Basel city"]),
]
# Each model's (start logit, end logit) per token; every other token scores 0, and the best
# span is the highest start + end with start <= end.
LOGITS = {
    # q1: zurich..zurich (5 + 5) beats zurich..basel (5 + 3): "Zürich", exact (EM 1, F1 1).
    # q2: the..basel (3 + 3) is best: "the city of Basel" -> [city, of, basel] vs
    # [basel, city]: common 2, P 2/3, R 1 -> F1 0.8, EM 0. EM 50, F1 90.
    "model": ({"zurich": 5.0, "the": 3.0}, {"zurich": 5.0, "basel": 3.0}),
    # Baseline: "Basel" for both: q1 wrong (0), q2 exact (1): EM 50, F1 50.
    "baseline_model": ({"basel": 5.0}, {"basel": 5.0}),
}


@pytest.fixture(scope="module")
def exported_models(tmp_path_factory) -> dict[str, Path]:
    """{"model", "baseline_model"} -> a Model artifact directory whose serving directory
    (TFX's Format-Serving, what the executor runs) holds that model's QA export."""
    from serving.question_answering_encoder import QuestionAnsweringEncoder
    from serving.question_answering_export import export_question_answering

    root = tmp_path_factory.mktemp("models")
    encoder = QuestionAnsweringEncoder(VOCAB, max_seq_length=32, max_query_length=8,
                                       doc_stride=8)
    for name, (start, end) in LOGITS.items():
        export_question_answering(span_model(VOCAB, start, end), encoder,
                                  str(root / name / "Format-Serving"))
    return {name: root / name for name in LOGITS}


def test_blessed_when_every_threshold_is_met():
    assert blessing_failures(CANDIDATE, None, min_f1=80.0, min_exact_match=70.0,
                             tolerance=0.0) == []
    baseline = {"exact_match": 75.0, "f1": 81.0, "questions": 10}
    # F1 change 80 - 81 = -1.0, allowed down to -1.0.
    assert blessing_failures(CANDIDATE, baseline, 0.0, 0.0, tolerance=1.0) == []
    # Itself as the baseline: change 0, blessed with no tolerance.
    assert blessing_failures(CANDIDATE, dict(CANDIDATE), 0.0, 0.0, tolerance=0.0) == []


def test_each_failure_is_named_in_entity_evaluators_wording():
    baseline = {"exact_match": 60.0, "f1": 82.5, "questions": 10}
    assert blessing_failures(CANDIDATE, baseline, min_f1=85.0, min_exact_match=72.5,
                             tolerance=1.0) == [
        "f1: 80.0000 is below the required 85.0000",
        "exact_match: 70.0000 is below the required 72.5000",
        # 80 - 82.5 = -2.5 < -1.0. Exact match is not compared with the baseline.
        "f1: change vs the blessed baseline -2.5000 is not above -1.0000",
    ]


def _write_examples(directory: Path, rows: list[tuple[str, str, list[str]]]) -> None:
    """An Examples split as SquadExampleGen writes it (GZIP TFRecords of tf.Examples)."""
    directory.mkdir(parents=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(directory / "data_tfrecord-00000-of-00001.gz"), options) as w:
        for question_id, context, answers in rows:
            example = tf.train.Example()
            feature = example.features.feature
            feature[features.ID].bytes_list.value.append(question_id.encode())
            feature[features.QUESTION].bytes_list.value.append(b"Where?")
            feature[features.CONTEXT].bytes_list.value.append(context.encode())
            feature[features.ANSWER_TEXTS].bytes_list.value.extend(a.encode() for a in answers)
            feature[features.ANSWER_STARTS].int64_list.value.extend(
                context.find(a) for a in answers)
            w.write(example.SerializeToString())


def _artifacts(tmp_path: Path, rows: list[tuple[str, str, list[str]]],
               models: dict[str, Path]) -> dict:
    """The executor's input and output artifacts; the Model artifacts are `models`."""
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    _write_examples(tmp_path / "examples" / "Split-eval", rows)
    artifacts = {"examples": examples}
    for name, artifact_id in (("model", 7), ("baseline_model", 3)):
        model = standard_artifacts.Model()
        model.uri = str(models[name])
        model.id = artifact_id
        artifacts[name] = model
    for name, cls in (("evaluation", standard_artifacts.ModelEvaluation),
                      ("blessing", standard_artifacts.ModelBlessing)):
        artifacts[name] = cls()
        artifacts[name].uri = str(tmp_path / name)
        os.makedirs(artifacts[name].uri)
    return artifacts


def test_gold_answers_are_read_per_question_id_and_a_repeated_id_is_refused(tmp_path: Path):
    rows = [("q1", "Zürich, Basel", ["Zürich", "Zürich"]), ("q2", "Zürich, Basel", ["Basel"])]
    _write_examples(tmp_path / "a", rows)
    files = [str(p) for p in (tmp_path / "a").iterdir()]
    serialized, ids, golds = executor.read_gold_and_examples(files)
    assert ids == ["q1", "q2"]
    assert golds == {"q1": ["Zürich", "Zürich"], "q2": ["Basel"]}
    assert tf.train.Example.FromString(serialized[1]).features.feature[
        features.ID].bytes_list.value == [b"q2"]

    _write_examples(tmp_path / "b", rows + [("q1", "Zürich, Basel", ["Bern"])])
    with pytest.raises(ValueError, match="'q1' occurs twice"):
        executor.read_gold_and_examples([str(p) for p in (tmp_path / "b").iterdir()])


def test_executor_writes_metrics_predictions_and_tfx_blessing(
    tmp_path: Path, exported_models: dict[str, Path]
):
    artifacts = _artifacts(tmp_path, ROWS, exported_models)
    component = SquadEvaluator(
        examples=channel.Channel(type=standard_artifacts.Examples),
        model=channel.Channel(type=standard_artifacts.Model),
        baseline_model=channel.Channel(type=standard_artifacts.Model),
        min_f1=85, min_exact_match=60, batch_size=1,
    )
    properties = dict(component.exec_properties)
    assert properties == {"min_f1": 85.0, "min_exact_match": 60.0, "baseline_tolerance": 0.0,
                          "split": "eval", "batch_size": 1}
    executor.Executor().Do(
        {name: [artifacts[name]] for name in ("examples", "model", "baseline_model")},
        {name: [artifacts[name]] for name in ("evaluation", "blessing")},
        properties,
    )

    # The Model artifacts' serving directories (TFX's Format-Serving) are what ran, one
    # question per call (batch_size 1): only there are the exports whose answers (LOGITS)
    # give these scores.
    evaluation_uri = artifacts["evaluation"].uri
    with open(os.path.join(evaluation_uri, "squad_metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    assert metrics["split"] == "eval"
    assert metrics["candidate"] == pytest.approx({"exact_match": 50.0, "f1": 90.0, "questions": 2})
    assert metrics["baseline"] == {"exact_match": 50.0, "f1": 50.0, "questions": 2}
    assert metrics["failures"] == ["exact_match: 50.0000 is below the required 60.0000"]
    with open(os.path.join(evaluation_uri, "predictions.json"), encoding="utf-8") as f:
        assert json.load(f) == {"q1": "Zürich", "q2": "the city of Basel"}
    # q2 is not an exact match (F1 0.8): the one wrong answer, with what a person needs.
    assert executor.read_wrong_answers(evaluation_uri) == {
        "wrong": 1, "questions": 2, "examples": [{
            "id": "q2", "question": "Where?", "context": "the city of Basel is on the Rhine",
            "gold": ["Basel", "Basel city"], "predicted": "the city of Basel",
            "f1": pytest.approx(0.8)}]}

    candidate, baseline, failures = read_evaluation(evaluation_uri)
    assert candidate == pytest.approx({"exact_match": 50.0, "f1": 90.0})
    assert baseline == {"exact_match": 50.0, "f1": 50.0}
    assert failures == metrics["failures"]

    blessing = artifacts["blessing"]
    assert os.listdir(blessing.uri) == [constants.NOT_BLESSED_FILE_NAME]
    assert blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY) == (
        constants.NOT_BLESSED_VALUE)
    assert blessing.get_string_custom_property(
        constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY) == str(exported_models["model"])
    assert blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY) == 7
    assert blessing.get_string_custom_property(
        constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY) == str(exported_models["baseline_model"])
    assert blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY) == 3


def test_read_evaluation_without_a_baseline(tmp_path: Path):
    (tmp_path / "squad_metrics.json").write_text(json.dumps({
        "split": "eval", "candidate": {"exact_match": 61.5, "f1": 72.25, "questions": 344},
        "baseline": None, "failures": [],
    }))
    assert read_evaluation(str(tmp_path)) == ({"exact_match": 61.5, "f1": 72.25}, {}, [])
    assert executor.read_wrong_answers(str(tmp_path)) is None  # written before the file existed


def test_wrong_answers_keeps_the_first_ones_and_counts_them_all(tmp_path: Path):
    rows = [(f"q{i}", f"Basel {i}", [f"Basel {i}"]) for i in range(4)]
    _write_examples(tmp_path / "e", rows)
    serialized, ids, golds = executor.read_gold_and_examples(
        [str(p) for p in (tmp_path / "e").iterdir()])
    # q0 right (normalised: "the" and case do not count), q1 partly, q2 missing, q3 wrong.
    predictions = {"q0": "the basel 0", "q1": "Basel", "q3": "Zürich"}
    result = executor.wrong_answers(serialized, ids, golds, predictions, keep=2)
    assert result["wrong"] == 3 and result["questions"] == 4
    assert [(e["id"], e["predicted"]) for e in result["examples"]] == [("q1", "Basel"),
                                                                       ("q2", "")]
    assert result["examples"][0]["f1"] == pytest.approx(2 / 3)
