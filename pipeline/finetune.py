"""The fine-tuning pipeline: CSV text -> validated, tokenized examples -> BERT -> push.

ExampleGen -> StatisticsGen -> SchemaGen (imported, from the config) -> ExampleValidator
(stops the run on anomalies) -> Transform (in-graph WordPiece) -> Trainer (Keras 3 BERT,
warm-started) -> Evaluator (TFMA, thresholds and the latest blessed model as baseline)
-> Pusher (atomic, TF Serving layout).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

from pipeline.config import FinetuneConfig

MODULE = "pipeline.modules.text_classification"
# Code whose change must invalidate cached Transform/Trainer outputs.
FINGERPRINTED_PACKAGES = ("bert_keras", "serving", "pipeline/modules")


def code_fingerprint() -> str:
    """sha256 over this project's model and preprocessing code."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in FINGERPRINTED_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if not path.name.endswith("_test.py"):
                digest.update(path.relative_to(root).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def checkpoint_directory(spec: str) -> str:
    """Resolves `model.checkpoint`; a base path of pushed versions gives its newest version."""
    from bert_keras.checkpoint import checkpoint_format, resolve_checkpoint

    path = resolve_checkpoint(spec)
    versions = [name for name in os.listdir(path) if name.isdigit()]
    if checkpoint_format(path) is None and versions:
        return os.path.join(path, max(versions, key=int))
    return path


def module_config(config: FinetuneConfig, checkpoint_dir: str) -> dict:
    """The `custom_config` shared by Transform and Trainer."""
    from bert_keras.checkpoint import checkpoint_lower_case

    lower_case = config.model.lower_case
    if lower_case is None:
        lower_case = checkpoint_lower_case(checkpoint_dir)
    return {
        "checkpoint_dir": checkpoint_dir,
        "lower_case": lower_case,
        "max_seq_length": config.model.max_seq_length,
        "dropout": config.model.dropout,
        "pooling": config.model.pooling,
        "text_feature": config.data.text_feature,
        "second_text_feature": config.data.second_text_feature,
        "label_feature": config.data.label_feature,
        "classes": list(config.data.classes),
        **dataclasses.asdict(config.training),
        "code_fingerprint": code_fingerprint(),
    }


def eval_config(config: FinetuneConfig):
    """TFMA config: accuracy and AUC, value thresholds, and a change threshold vs baseline."""
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
                ]
            ),
            auc_spec,
        ],
    )


def bulk_inference(config: FinetuneConfig, trainer, evaluator) -> list:
    """Scores `scoring.input_dir` with the candidate, only if the Evaluator blessed it.

    Output: tf.Examples with the input columns plus `probabilities` and `predicted_label`.
    """
    from tfx import v1 as tfx
    from tfx.proto import bulk_inferrer_pb2

    unlabelled = tfx.components.CsvExampleGen(
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


def create_pipeline(config: FinetuneConfig, enable_cache: bool | None = None):
    """Builds the TFX pipeline object (imports TFX: ~40 s the first time)."""
    from tfx import v1 as tfx

    from components.atomic_pusher.component import AtomicPusher
    from components.strict_example_validator.component import StrictExampleValidator
    from pipeline.schema import write_schema

    root = config.pipeline.root
    checkpoint_dir = checkpoint_directory(config.model.checkpoint)
    custom_config = module_config(config, checkpoint_dir)

    example_gen = tfx.components.CsvExampleGen(
        input_base=config.data.input_dir,
        input_config=tfx.proto.Input(
            splits=[
                tfx.proto.Input.Split(name=name, pattern=pattern)
                for name, pattern in config.data.splits.items()
            ]
        ),
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(
        schema_file=write_schema(config, os.path.join(root, "schema"))
    )
    example_validator = StrictExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=f"{MODULE}.preprocessing_fn",
        custom_config=custom_config,
    )
    transform.add_upstream_node(example_validator)  # nothing trains on data that failed
    trainer = tfx.components.Trainer(
        run_fn=f"{MODULE}.run_fn",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=custom_config,
    )
    baseline_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline_resolver.outputs["model"],
        eval_config=eval_config(config),
        example_splits=["eval"],
    )
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=config.serving_model_dir
            )
        ),
    )
    components = [
        example_gen, statistics_gen, schema_gen, example_validator, transform, trainer,
        baseline_resolver, evaluator, pusher,
    ]
    if config.scoring is not None:
        components += bulk_inference(config, trainer, evaluator)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline.name,
        pipeline_root=root,
        components=components,
        enable_cache=config.pipeline.enable_cache if enable_cache is None else enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path
        ),
        beam_pipeline_args=list(config.pipeline.beam_args),
    )
