"""EntityEvaluator: evaluates and blesses a token-classification model (spec + component)."""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.entity_evaluator import executor


class EntityEvaluatorSpec(ComponentSpec):
    PARAMETERS = {
        executor.TOKENS_FEATURE_KEY: ExecutionParameter(type=str),
        executor.TAGS_FEATURE_KEY: ExecutionParameter(type=str),
        executor.MIN_F1_KEY: ExecutionParameter(type=float),
        executor.BASELINE_TOLERANCE_KEY: ExecutionParameter(type=float),
        executor.SPLIT_KEY: ExecutionParameter(type=str),
        executor.BATCH_SIZE_KEY: ExecutionParameter(type=int),
    }
    INPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model,
                                                      optional=True),
    }
    OUTPUTS = {
        executor.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class EntityEvaluator(base_component.BaseComponent):
    """Entity-level precision/recall/F1 (seqeval's) of the candidate and the blessed baseline.

    Example:
        evaluator = EntityEvaluator(examples=example_gen.outputs["examples"],
                                    model=trainer.outputs["model"],
                                    baseline_model=resolver.outputs["model"], min_f1=0.5)
        evaluator.outputs["blessing"]  # -> AtomicPusher(model_blessing=...)

    Outputs:
        evaluation: `ModelEvaluation` with `entity_metrics.json`.
        blessing: `ModelBlessing` (TFX's `blessed` property and BLESSED/NOT_BLESSED file).
    """

    SPEC_CLASS = EntityEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        baseline_model: types.BaseChannel | None = None,
        *,
        tokens_feature: str = "tokens",
        tags_feature: str = "tags",
        min_f1: float = 0.0,
        baseline_tolerance: float = 0.0,
        split: str = "eval",
        batch_size: int = 64,
    ):
        spec = EntityEvaluatorSpec(
            examples=examples,
            model=model,
            baseline_model=baseline_model,
            tokens_feature=tokens_feature,
            tags_feature=tags_feature,
            min_f1=float(min_f1),
            baseline_tolerance=float(baseline_tolerance),
            split=split,
            batch_size=int(batch_size),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        )
        super().__init__(spec=spec)
