"""The fine-tuning pipeline, the same for every task: labelled data -> BERT -> push.

ExampleGen (the task's) -> StatisticsGen -> SchemaGen (imported, from the config) ->
ExampleValidator (stops the run on anomalies) -> Transform (the task's in-graph WordPiece
preprocessing) -> Trainer (Keras 3 BERT with the task's head, warm-started) -> Evaluator (the
task's metrics, thresholds and the latest blessed model as baseline) -> Pusher (atomic, TF
Serving layout). Everything task-specific comes from `pipeline.tasks`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pipeline.config import FinetuneConfig

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
    """Resolves `model.checkpoint` (a path, `package:...` or a URI such as gs://); a base
    path of pushed versions gives its newest version."""
    from tfx.dsl.io import fileio  # gs:// and other filesystems, as TFX reads them

    from bert_keras.checkpoint import checkpoint_format, resolve_checkpoint
    from pipeline.checkpoint_copy import is_uri, local_checkpoint

    path = spec.rstrip("/") if is_uri(spec) else resolve_checkpoint(spec)
    if not fileio.isdir(path):
        raise FileNotFoundError(f"checkpoint {spec!r}: no such directory")
    # Object stores list sub-folders with a trailing '/'.
    versions = [name.rstrip("/") for name in fileio.listdir(path) if name.rstrip("/").isdigit()]
    if checkpoint_format(local_checkpoint(path, metadata_only=True)) is None and versions:
        return f"{path}/{max(versions, key=int)}" if is_uri(path) else os.path.join(
            path, max(versions, key=int))
    return path


def package_path_in(spec: str, path: str, packages_dir: str) -> str:
    """Where `path`, the local directory a `package:NAME/subdir` spec resolved to, is in
    another installation of the same packages whose site-packages is `packages_dir` (a
    container image's); other specs' paths are returned as they are."""
    from bert_keras.checkpoint import PACKAGE_PREFIX, resolve_checkpoint

    if not spec.startswith(PACKAGE_PREFIX):
        return path
    package = spec[len(PACKAGE_PREFIX):].partition("/")[0]
    package_dir = resolve_checkpoint(PACKAGE_PREFIX + package)
    relative = os.path.relpath(path, os.path.dirname(package_dir))
    return "/".join([packages_dir.rstrip("/"), *Path(relative).parts])


def module_config(config: FinetuneConfig, checkpoint_dir: str) -> dict:
    """The `custom_config` shared by Transform and Trainer: common settings + the task's."""
    from bert_keras.checkpoint import checkpoint_lower_case
    from pipeline.tasks import get_task

    lower_case = config.model.lower_case
    if lower_case is None:
        from pipeline.checkpoint_copy import local_checkpoint

        lower_case = checkpoint_lower_case(local_checkpoint(checkpoint_dir, metadata_only=True))
    return {
        "checkpoint_dir": checkpoint_dir,
        "lower_case": lower_case,
        "max_seq_length": config.model.max_seq_length,
        "dropout": config.model.dropout,
        "warm_start": config.model.warm_start,
        **config.training.model_dump(),
        # What the export computes in (training's own precision/jit_compile come above).
        "serving_precision": config.serving.precision,
        "serving_jit_compile": config.serving.jit_compile,
        **get_task(config).module_config(config),
        "code_fingerprint": code_fingerprint(),
    }


def training_spans(example_gen, rolling_spans: int, custom_resolvers: bool = True):
    """The Examples channel training reads: ExampleGen's newest span, or with
    `rolling_spans` > 1 the newest N spans (fewer on the first runs).

    Where the orchestrator runs this project's resolver strategies (`custom_resolvers`:
    LocalDagRunner, Airflow), a resolver picks the newest N spans ExampleGen has ingested in
    this and earlier runs (`pipeline.spans`), so each span is ingested and validated once.
    Elsewhere (Vertex AI Pipelines) ExampleGen itself reads the newest N spans in every run
    (`components.quarantine.read_newest_spans`). Returns (channel, resolver node or None).
    """
    if rolling_spans <= 1:
        return example_gen.outputs["examples"], None
    if not custom_resolvers:
        from components.quarantine import read_newest_spans

        read_newest_spans(example_gen, rolling_spans)
        return example_gen.outputs["examples"], None
    from tfx import v1 as tfx

    from pipeline.spans import LatestSpansStrategy

    spans_resolver = tfx.dsl.Resolver(
        strategy_class=LatestSpansStrategy,
        config={"num_spans": rolling_spans},
        examples=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples,
                                 producer_component_id=example_gen.id, output_key="examples"),
    ).with_id("rolling_spans_resolver")
    spans_resolver.add_upstream_node(example_gen)  # sees this run's span too
    return spans_resolver.outputs["examples"], spans_resolver


def create_pipeline(config: FinetuneConfig, enable_cache: bool | None = None,
                    custom_resolvers: bool = True, packages_dir: str | None = None):
    """Builds the TFX pipeline object (imports TFX: ~40 s the first time).

    What the orchestrator needs said (the pipeline computes the same either way):
    `custom_resolvers`: whether it can run this project's own resolver strategies (see
    `training_spans`); `packages_dir`: the site-packages of the Python the components run in
    when that is not this one (a container image's), where a `package:` checkpoint is read.
    """
    from tfx import v1 as tfx

    from components.atomic_pusher.component import AtomicPusher
    from components.strict_example_validator.component import StrictExampleValidator
    from pipeline.schema import write_schema
    from pipeline.tasks import get_task

    task = get_task(config)
    root = config.pipeline.root
    checkpoint_dir = checkpoint_directory(config.model.checkpoint)
    custom_config = module_config(config, checkpoint_dir)
    if packages_dir is not None:
        custom_config["checkpoint_dir"] = package_path_in(
            config.model.checkpoint, checkpoint_dir, packages_dir)

    example_gen = task.example_gen(config)
    # The newest span is validated as it arrives; training and evaluation read the newest
    # `data.rolling_spans` spans ingested so far (this run's and earlier runs', from MLMD).
    examples, spans_resolver = training_spans(example_gen, config.data.rolling_spans,
                                              custom_resolvers)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(
        schema_file=write_schema(config, os.path.join(root, "schema"))
    )
    example_validator = StrictExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    transform = tfx.components.Transform(
        examples=examples,
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=f"{task.module}.preprocessing_fn",
        custom_config=custom_config,
    )
    transform.add_upstream_node(example_validator)  # nothing trains on data that failed
    # The latest blessed model of this pipeline: the Evaluator's baseline, and with
    # `model.warm_start: latest_blessed` the Trainer's starting weights.
    baseline_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    warm_start_model = (baseline_resolver.outputs["model"]
                        if config.model.warm_start == "latest_blessed" else None)
    trainer = tfx.components.Trainer(
        run_fn=f"{task.module}.run_fn",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=custom_config,
        base_model=warm_start_model,
    )
    evaluator = task.evaluator(
        config, examples, trainer.outputs["model"],
        baseline_resolver.outputs["model"],
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
        *([spans_resolver] if spans_resolver is not None else []),
        *task.extra_components(config, trainer, evaluator),
    ]
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
