"""SquadEvaluator executor: SQuAD v1.1 exact match and F1 of an extractive QA model, and
the blessing that the pusher and the latest-blessed resolver read.

The candidate (and the latest blessed model, when the resolver found one) run their exported
`from_examples` signature on the eval split, so what is measured is exactly what is served.
Metrics are the official SQuAD v1.1 script's (`pipeline.tasks.squad_metrics`) on the 0-100
scale, each question scored against all its gold answers. The candidate is blessed when its
F1 reaches `min_f1`, its exact match `min_exact_match`, and its F1 the baseline's F1 minus
`baseline_tolerance` (F1 points). The ModelBlessing carries TFX's own properties
(`blessed`, `current_model_id`, ...), so TFX's Pusher checks and LatestBlessedModelStrategy
work as with TFX's Evaluator. The candidate's answers are kept in `predictions.json`, the
official predictions format, so the official script (or a person) can check them, and the
first questions it got wrong (not an exact match), with question, context, gold answers and
its answer, in `wrong_answers.json`, for the run's HTML report (`pipeline.html_report`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, path_utils

from components.blessing import write_blessing
from components.common import split_files
from serving import question_answering_features as features

EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
MODEL_KEY = standard_component_specs.MODEL_KEY
BASELINE_MODEL_KEY = standard_component_specs.BASELINE_MODEL_KEY
EVALUATION_KEY = standard_component_specs.EVALUATION_KEY
BLESSING_KEY = standard_component_specs.BLESSING_KEY
MIN_F1_KEY = "min_f1"
MIN_EXACT_MATCH_KEY = "min_exact_match"
BASELINE_TOLERANCE_KEY = "baseline_tolerance"
SPLIT_KEY = "split"
BATCH_SIZE_KEY = "batch_size"
METRICS_FILE = "squad_metrics.json"
PREDICTIONS_FILE = "predictions.json"
WRONG_ANSWERS_FILE = "wrong_answers.json"
WRONG_ANSWERS_KEPT = 25  # examples kept for a person to read; all are in predictions.json

# The exported model's contract (see serving/question_answering_export.py).
SIGNATURE = "from_examples"
SIGNATURE_INPUT = "examples"
SIGNATURE_OUTPUT = "answer_text"


def read_gold_and_examples(
    files: list[str],
) -> tuple[list[bytes], list[str], dict[str, list[str]]]:
    """(serialized tf.Examples, their question ids, {id: gold answers}) of GZIP TFRecord
    files written by SquadExampleGen.

    Raises ValueError for an id met twice: the scores are per id, so a second question
    with the same id would silently replace the first.
    """
    import tensorflow as tf

    serialized, ids, golds = [], [], {}
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        data = record.numpy()
        feature = tf.train.Example.FromString(data).features.feature
        question_id = feature[features.ID].bytes_list.value[0].decode("utf-8")
        if question_id in golds:
            raise ValueError(f"question id {question_id!r} occurs twice in the evaluated split")
        serialized.append(data)
        ids.append(question_id)
        answers = feature[features.ANSWER_TEXTS].bytes_list.value
        golds[question_id] = [t.decode("utf-8") for t in answers]
    return serialized, ids, golds


def predict_answers(model_dir: str, serialized: list[bytes], batch_size: int) -> list[str]:
    """The exported model's answer text for each example, in order."""
    import tensorflow as tf

    signature = tf.saved_model.load(model_dir).signatures[SIGNATURE]
    answers = []
    for start in range(0, len(serialized), batch_size):
        batch = tf.constant(serialized[start:start + batch_size])
        texts = signature(**{SIGNATURE_INPUT: batch})[SIGNATURE_OUTPUT].numpy()
        answers.extend(t.decode("utf-8") for t in texts)
    return answers


def evaluate_model(model_dir: str, serialized: list[bytes], ids: list[str],
                   golds: dict[str, list[str]], batch_size: int) -> tuple[dict, dict[str, str]]:
    """(squad_scores of the model's answers, {question id: answer text})."""
    from pipeline.tasks.squad_metrics import squad_scores

    answers = predict_answers(model_dir, serialized, batch_size)
    if len(answers) != len(ids):
        raise ValueError(f"the model at {model_dir} gave {len(answers)} answers for "
                         f"{len(ids)} questions")
    predictions = dict(zip(ids, answers, strict=True))
    return squad_scores(predictions, golds), predictions


def blessing_failures(candidate: dict, baseline: dict | None, min_f1: float,
                      min_exact_match: float, tolerance: float) -> list[str]:
    """Why the candidate is not blessed (empty: blessed). Scores and thresholds are on the
    0-100 scale; `tolerance` is the F1 the candidate may lose against the baseline."""
    failures = []
    if candidate["f1"] < min_f1:
        failures.append(f"f1: {candidate['f1']:.4f} is below the required {min_f1:.4f}")
    if candidate["exact_match"] < min_exact_match:
        failures.append(f"exact_match: {candidate['exact_match']:.4f} is below the required "
                        f"{min_exact_match:.4f}")
    if baseline is not None:
        change = candidate["f1"] - baseline["f1"]
        if change < -tolerance - 1e-10:
            failures.append(f"f1: change vs the blessed baseline {change:+.4f} is not above "
                            f"{-tolerance:+.4f}")
    return failures


def wrong_answers(serialized: list[bytes], ids: list[str], golds: dict[str, list[str]],
                  predictions: dict[str, str], keep: int = WRONG_ANSWERS_KEPT) -> dict:
    """The questions whose answer is not an exact match: {"wrong": how many, "questions":
    how many were scored, "examples": the first `keep` in eval order, each with its id,
    question, context, gold answers, the model's answer and its SQuAD F1 (0-1)}.

    Scored with the same rules as the metrics (`pipeline.tasks.squad_metrics`), so the count
    agrees with the exact match the Evaluator reports.
    """
    import tensorflow as tf

    from pipeline.tasks.squad_metrics import exact_match, f1

    wrong, examples = 0, []
    for data, question_id in zip(serialized, ids, strict=True):
        answer = predictions.get(question_id, "")
        if exact_match(answer, golds[question_id]) == 1.0:
            continue
        wrong += 1
        if len(examples) < keep:
            feature = tf.train.Example.FromString(data).features.feature
            examples.append({
                "id": question_id,
                "question": feature[features.QUESTION].bytes_list.value[0].decode("utf-8"),
                "context": feature[features.CONTEXT].bytes_list.value[0].decode("utf-8"),
                "gold": golds[question_id],
                "predicted": answer,
                "f1": f1(answer, golds[question_id]),
            })
    return {"wrong": wrong, "questions": len(ids), "examples": examples}


class Executor(base_executor.BaseExecutor):
    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        split = exec_properties[SPLIT_KEY]
        # One Examples artifact per span read (data.rolling_spans).
        files = split_files(input_dict[EXAMPLES_KEY], split)
        serialized, ids, golds = read_gold_and_examples(files)
        batch_size = int(exec_properties[BATCH_SIZE_KEY])

        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        candidate, predictions = evaluate_model(path_utils.serving_model_path(model.uri),
                                                serialized, ids, golds, batch_size)
        baseline_model, baseline = None, None
        if input_dict.get(BASELINE_MODEL_KEY):
            baseline_model = artifact_utils.get_single_instance(input_dict[BASELINE_MODEL_KEY])
            baseline, _ = evaluate_model(path_utils.serving_model_path(baseline_model.uri),
                                         serialized, ids, golds, batch_size)
        failures = blessing_failures(candidate, baseline, float(exec_properties[MIN_F1_KEY]),
                                     float(exec_properties[MIN_EXACT_MATCH_KEY]),
                                     float(exec_properties[BASELINE_TOLERANCE_KEY]))

        evaluation = artifact_utils.get_single_instance(output_dict[EVALUATION_KEY])
        io_utils.write_string_file(
            os.path.join(evaluation.uri, METRICS_FILE),
            json.dumps({"split": split, "candidate": candidate, "baseline": baseline,
                        "failures": failures}, indent=2, sort_keys=True),
        )
        io_utils.write_string_file(
            os.path.join(evaluation.uri, PREDICTIONS_FILE),
            json.dumps(predictions, ensure_ascii=False, indent=1),
        )
        io_utils.write_string_file(
            os.path.join(evaluation.uri, WRONG_ANSWERS_FILE),
            json.dumps(wrong_answers(serialized, ids, golds, predictions), ensure_ascii=False,
                       indent=1),
        )
        write_blessing(artifact_utils.get_single_instance(output_dict[BLESSING_KEY]), model,
                       baseline_model, blessed=not failures)


def read_evaluation(evaluation_uri: str) -> tuple[dict, dict, list[str]]:
    """(candidate metrics, baseline metrics, failures) flattened for the run report:
    `exact_match` and `f1` (0-100) as floats; the baseline's is {} when there was none."""
    with open(os.path.join(evaluation_uri, METRICS_FILE), encoding="utf-8") as f:
        result = json.load(f)

    def flat(scores: dict | None) -> dict[str, float]:
        if not scores:
            return {}
        return {name: float(scores[name]) for name in ("exact_match", "f1")}

    return flat(result["candidate"]), flat(result["baseline"]), list(result["failures"])


def read_wrong_answers(evaluation_uri: str) -> dict | None:
    """`wrong_answers.json` of an evaluation (see `wrong_answers`); None for an evaluation
    written before the file existed."""
    path = os.path.join(evaluation_uri, WRONG_ANSWERS_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)
