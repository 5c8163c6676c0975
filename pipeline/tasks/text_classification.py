"""Sentence (and sentence-pair) classification: CSV rows -> class probabilities.

Ingestion: bertpipe's `CsvExampleGen` (`data.input_dir`, `train/*.csv`, `eval/*.csv`; a row
that is not UTF-8, has a field over `data.max_field_bytes`, the wrong column count, an
unterminated quote or a label that is not a class index is quarantined, and the run stops
only above `data.max_bad_fraction`; see `components.quarantine`). Schema: the text is
present in every row and the label is an integer index into `data.classes`.
Evaluation: TFMA through the model's `from_examples` signature (accuracy, AUC, value
thresholds and a change threshold against the latest blessed model). Export contract:
`serving.export` (`text` -> `probabilities`, `label`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pipeline.config import FinetuneConfig, Float, IngestionSection, Section, Str
from pipeline.tasks.base import Task, register_task


class ClassificationData(IngestionSection):
    classes: list[Str]  # class names; the label column holds their index
    splits: dict[Str, Str] = Field(
        default_factory=lambda: {"train": "train/*.csv", "eval": "eval/*.csv"})
    text_feature: Str = "sentence"
    second_text_feature: Str | None = None  # sentence-pair tasks
    label_feature: Str = "label"


class ClassificationEvaluation(Section):
    min_accuracy: Float = 0.5
    min_auc: Float | None = None
    # The candidate must reach the latest blessed model's accuracy minus this tolerance.
    baseline_tolerance: Float = 0.0


class TextClassificationConfig(FinetuneConfig):
    task: Literal["text_classification"] = "text_classification"
    data: ClassificationData
    evaluation: ClassificationEvaluation = Field(default_factory=ClassificationEvaluation)

    def check(self, fail) -> None:
        self.data.check_ingestion(list(self.data.splits.values()), fail)
        if len(self.data.classes) < 2:
            fail("data.classes", "needs at least two class names")
        if len(set(self.data.classes)) != len(self.data.classes):
            fail("data.classes", "class names must be unique")
        if "train" not in self.data.splits or "eval" not in self.data.splits:
            fail("data.splits", "needs a 'train' and an 'eval' pattern")
        super().check(fail)


def eval_config(config: TextClassificationConfig):
    """TFMA config: accuracy and AUC, value thresholds, and a change threshold vs baseline;
    plus TFMA's multi-class confusion matrix (actual class x top predicted class), which the
    run's HTML report shows (`pipeline.html_report`) without recomputing anything."""
    import tensorflow_model_analysis as tfma

    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(
            lower_bound={"value": config.evaluation.min_accuracy}
        ),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -config.evaluation.baseline_tolerance - 1e-10},
        ),
    )
    auc = tfma.MetricConfig(class_name="AUC")
    if config.evaluation.min_auc is not None:
        auc.threshold.CopyFrom(
            tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(
                    lower_bound={"value": config.evaluation.min_auc}
                )
            )
        )
    num_classes = len(config.data.classes)
    # Binary: AUC of the positive (last) class. Multi-class: macro-average of one-vs-rest.
    auc_spec = tfma.MetricsSpec(metrics=[auc])
    if num_classes == 2:
        auc_spec.binarize.class_ids.values.append(1)
    else:
        auc_spec.binarize.class_ids.values.extend(range(num_classes))
        auc_spec.aggregate.macro_average = True
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="from_examples",
                label_key=config.data.label_feature,
                prediction_key="probabilities",
            )
        ],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(
                        class_name="SparseCategoricalAccuracy", threshold=accuracy_threshold
                    ),
                    tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
                ]
            ),
            auc_spec,
        ],
    )


def _metric_name(key) -> str:
    return f"{key.name} (class {key.sub_key.class_id.value})" if key.sub_key.HasField(
        "class_id") else key.name


def _describe_failure(failure) -> str:
    threshold = failure.metric_threshold
    name = _metric_name(failure.metric_key)
    value = failure.metric_value.double_value.value
    if failure.metric_key.is_diff:
        bound = threshold.change_threshold.absolute.value
        return f"{name}: change vs the blessed baseline {value:+.4f} is not above {bound:+.4f}"
    bounds = threshold.value_threshold
    if bounds.HasField("lower_bound"):
        return f"{name}: {value:.4f} is below the required {bounds.lower_bound.value:.4f}"
    return f"{name}: {value:.4f} is above the allowed {bounds.upper_bound.value:.4f}"


def read_tfma_evaluation(evaluation_uri: str) -> tuple[dict, dict, list[str]]:
    """Overall-slice metrics of the candidate and the baseline, and TFMA's failures."""
    import tensorflow_model_analysis as tfma

    candidate, baseline = {}, {}
    for metrics_for_slice in tfma.load_metrics(evaluation_uri):
        if metrics_for_slice.slice_key.single_slice_keys:
            continue  # only the overall slice
        for item in metrics_for_slice.metric_keys_and_values:
            if item.key.is_diff or not item.value.HasField("double_value"):
                continue
            target = baseline if item.key.model_name == "baseline" else candidate
            target[_metric_name(item.key)] = item.value.double_value.value
    failures = []
    validation = tfma.load_validation_result(evaluation_uri)
    for per_slice in validation.metric_validations_per_slice:
        failures.extend(_describe_failure(f) for f in per_slice.failures)
    return candidate, baseline, failures


@register_task
class TextClassificationTask(Task):
    name = "text_classification"
    config_class = TextClassificationConfig
    module = "pipeline.modules.text_classification"

    def example_gen(self, config: TextClassificationConfig):
        from tfx import v1 as tfx

        from components.csv_example_gen.component import CsvExampleGen

        return CsvExampleGen(
            input_base=config.data.input_dir,
            input_config=tfx.proto.Input(splits=[
                tfx.proto.Input.Split(name=name, pattern=pattern)
                for name, pattern in config.data.splits.items()
            ]),
            label_column=config.data.label_feature,
            num_classes=len(config.data.classes),
            max_bad_fraction=config.data.max_bad_fraction,
            max_field_bytes=config.data.max_field_bytes,
        )

    def schema(self, config: TextClassificationConfig):
        """Text present in every row; the label an integer index into `data.classes`."""
        from pipeline.schema import new_schema, require_feature

        schema = new_schema()
        texts = [config.data.text_feature, config.data.second_text_feature]
        for name in filter(None, texts):
            require_feature(schema, name, "BYTES", dims=[1])
        label = require_feature(schema, config.data.label_feature, "INT", dims=[1])
        label.int_domain.name = config.data.label_feature
        label.int_domain.min = 0
        label.int_domain.max = len(config.data.classes) - 1
        return schema

    def module_config(self, config: TextClassificationConfig) -> dict[str, Any]:
        return {
            "pooling": config.model.pooling,
            "text_feature": config.data.text_feature,
            "second_text_feature": config.data.second_text_feature,
            "label_feature": config.data.label_feature,
            "classes": list(config.data.classes),
        }

    def evaluator(self, config: TextClassificationConfig, examples, model, baseline_model):
        from tfx import v1 as tfx

        return tfx.components.Evaluator(
            examples=examples,
            model=model,
            baseline_model=baseline_model,
            eval_config=eval_config(config),
            example_splits=["eval"],
        )

    def extra_components(self, config: TextClassificationConfig, trainer, evaluator) -> list:
        return bulk_inference(config, trainer, evaluator) if config.scoring else []

    def read_evaluation(self, evaluation_uri: str) -> tuple[dict, dict, list[str]]:
        return read_tfma_evaluation(evaluation_uri)


def bulk_inference(config: TextClassificationConfig, trainer, evaluator) -> list:
    """Scores `scoring.input_dir` with the candidate, only if the Evaluator blessed it.

    Output: tf.Examples with the input columns plus `probabilities` and `predicted_label`.
    The rows are read like the training data (bad rows quarantined, `data.max_bad_fraction`
    and `data.max_field_bytes`), every column as text.
    """
    from tfx import v1 as tfx
    from tfx.proto import bulk_inferrer_pb2

    from components.csv_example_gen.component import CsvExampleGen

    unlabelled = CsvExampleGen(
        input_base=config.scoring.input_dir,
        input_config=tfx.proto.Input(
            splits=[tfx.proto.Input.Split(name="unlabelled", pattern=config.scoring.pattern)]
        ),
        # One output split (by default one input split is hash-split into train and eval).
        output_config=tfx.proto.Output(
            split_config=tfx.proto.SplitConfig(
                splits=[tfx.proto.SplitConfig.Split(name="unlabelled", hash_buckets=1)]
            )
        ),
        max_bad_fraction=config.data.max_bad_fraction,
        max_field_bytes=config.data.max_field_bytes,
    ).with_id("UnlabelledExampleGen")
    columns = [
        bulk_inferrer_pb2.PredictOutputCol(output_key="probabilities",
                                           output_column="probabilities"),
        bulk_inferrer_pb2.PredictOutputCol(output_key="predicted_label",
                                           output_column="predicted_label"),
    ]
    bulk_inferrer = tfx.components.BulkInferrer(
        examples=unlabelled.outputs["examples"],
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        data_spec=tfx.proto.DataSpec(example_splits=["unlabelled"]),
        model_spec=tfx.proto.ModelSpec(model_signature_name=["score_examples"]),
        output_example_spec=tfx.proto.OutputExampleSpec(
            output_columns_spec=[
                tfx.proto.OutputColumnsSpec(
                    predict_output=bulk_inferrer_pb2.PredictOutput(output_columns=columns)
                )
            ]
        ),
    )
    return [unlabelled, bulk_inferrer]
