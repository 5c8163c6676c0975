"""EntityEvaluator executor: entity-level precision/recall/F1 of a token classifier, and
the blessing that the pusher and the latest-blessed resolver read.

The candidate (and the latest blessed model, when the resolver found one) run their exported
`from_examples` signature on the eval split, so what is measured is exactly what is served.
Metrics are seqeval's (`pipeline.tasks.entity_metrics`): exact span and type, micro-averaged,
plus per type. The candidate is blessed when its F1 reaches `min_f1` and the baseline's F1
minus `baseline_tolerance`. The ModelBlessing carries TFX's own properties (`blessed`,
`current_model_id`, ...), so TFX's Pusher checks and LatestBlessedModelStrategy work as with
TFX's Evaluator.
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

EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
MODEL_KEY = standard_component_specs.MODEL_KEY
BASELINE_MODEL_KEY = standard_component_specs.BASELINE_MODEL_KEY
EVALUATION_KEY = standard_component_specs.EVALUATION_KEY
BLESSING_KEY = standard_component_specs.BLESSING_KEY
TOKENS_FEATURE_KEY = "tokens_feature"
TAGS_FEATURE_KEY = "tags_feature"
MIN_F1_KEY = "min_f1"
BASELINE_TOLERANCE_KEY = "baseline_tolerance"
SPLIT_KEY = "split"
BATCH_SIZE_KEY = "batch_size"
METRICS_FILE = "entity_metrics.json"


def read_gold_and_examples(files: list[str], tags_feature: str):
    """(serialized tf.Examples, their IOB2 tag lists) of GZIP TFRecord files."""
    import tensorflow as tf

    serialized, gold = [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        data = record.numpy()
        example = tf.train.Example.FromString(data)
        tags = example.features.feature[tags_feature].bytes_list.value
        serialized.append(data)
        gold.append([t.decode("utf-8") for t in tags])
    return serialized, gold


def predict_tags(model_dir: str, serialized: list[bytes], batch_size: int) -> list[list[str]]:
    """Per example, the IOB2 tag the exported model gives each input word."""
    import tensorflow as tf

    signature = tf.saved_model.load(model_dir).signatures["from_examples"]
    predicted = []
    for start in range(0, len(serialized), batch_size):
        batch = tf.constant(serialized[start:start + batch_size])
        labels = signature(examples=batch)["token_labels"].numpy()
        for row in labels:
            predicted.append([t.decode("utf-8") for t in row if t])
    return predicted


def evaluate_model(model_dir: str, serialized: list[bytes], gold: list[list[str]],
                   batch_size: int) -> dict:
    from pipeline.tasks.entity_metrics import entity_scores

    predicted = predict_tags(model_dir, serialized, batch_size)
    # Words past the model's window come back as "O"; an empty trailing word as "".
    predicted = [p + ["O"] * (len(g) - len(p)) for p, g in zip(predicted, gold, strict=True)]
    return entity_scores(gold, predicted)


def blessing_failures(candidate: dict, baseline: dict | None, min_f1: float,
                      tolerance: float) -> list[str]:
    """Why the candidate is not blessed (empty: blessed)."""
    failures = []
    if candidate["f1"] < min_f1:
        failures.append(f"f1: {candidate['f1']:.4f} is below the required {min_f1:.4f}")
    if baseline is not None:
        change = candidate["f1"] - baseline["f1"]
        if change < -tolerance - 1e-10:
            failures.append(f"f1: change vs the blessed baseline {change:+.4f} is not above "
                            f"{-tolerance:+.4f}")
    return failures


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
        serialized, gold = read_gold_and_examples(files, exec_properties[TAGS_FEATURE_KEY])
        batch_size = int(exec_properties[BATCH_SIZE_KEY])

        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        candidate = evaluate_model(path_utils.serving_model_path(model.uri), serialized, gold,
                                   batch_size)
        baseline_model, baseline = None, None
        if input_dict.get(BASELINE_MODEL_KEY):
            baseline_model = artifact_utils.get_single_instance(input_dict[BASELINE_MODEL_KEY])
            baseline = evaluate_model(path_utils.serving_model_path(baseline_model.uri),
                                      serialized, gold, batch_size)
        failures = blessing_failures(candidate, baseline, float(exec_properties[MIN_F1_KEY]),
                                     float(exec_properties[BASELINE_TOLERANCE_KEY]))

        evaluation = artifact_utils.get_single_instance(output_dict[EVALUATION_KEY])
        io_utils.write_string_file(
            os.path.join(evaluation.uri, METRICS_FILE),
            json.dumps({"split": split, "candidate": candidate, "baseline": baseline,
                        "failures": failures}, indent=2, sort_keys=True),
        )
        write_blessing(artifact_utils.get_single_instance(output_dict[BLESSING_KEY]), model,
                       baseline_model, blessed=not failures)


def read_evaluation(evaluation_uri: str) -> tuple[dict, dict, list[str]]:
    """(candidate metrics, baseline metrics, failures) flattened for the run report."""
    with open(os.path.join(evaluation_uri, METRICS_FILE), encoding="utf-8") as f:
        result = json.load(f)

    def flat(scores: dict | None) -> dict[str, float]:
        if not scores:
            return {}
        values = {name: float(scores[name]) for name in ("precision", "recall", "f1")}
        for kind, per_type in sorted(scores.get("per_type", {}).items()):
            values[f"f1 ({kind})"] = float(per_type["f1"])
        return values

    return flat(result["candidate"]), flat(result["baseline"]), list(result["failures"])
