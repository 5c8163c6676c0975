"""Extractive question answering (SQuAD v1.1): a question and a passage -> the answer span.

Ingestion: `SquadExampleGen` (SQuAD v1.1 JSON; one tf.Example per question with `id`,
`title`, `question`, `context` and every gold answer; split by article title, never by
question). Schema: those features present in every example. Preprocessing: Transform keeps
the question, the context and the first gold answer as code-point offsets; the Trainer cuts
windows and targets in tf.data with `serving.question_answering_encoder`, the code the export
runs in the serving graph. Evaluation: `SquadEvaluator` (the official SQuAD v1.1 exact match
and F1 on the 0-100 scale, over every gold answer; minimum F1/EM and the latest blessed model
as baseline), on the exported model's `from_examples` answers. Export contract:
`serving.question_answering_export`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pipeline.config import FinetuneConfig, Float, IngestionSection, Int, Section, Str
from pipeline.tasks.base import Task, register_task


class QuestionAnsweringData(IngestionSection):
    # Without `splits`, every file matching `pattern` is one input, hash-split by article
    # title into train:eval = train_buckets:eval_buckets.
    pattern: Str = "*.json"
    splits: dict[Str, Str] | None = None  # e.g. {train: train.json, eval: eval.json}
    train_buckets: Int = 4
    eval_buckets: Int = 1


class QuestionAnsweringWindows(Section):
    """BERT's SQuAD windowing (`model.max_seq_length` tokens per window, 384 in BERT)."""

    max_query_length: Int = 64  # question pieces kept
    doc_stride: Int = 128  # pieces between the starts of two windows of one context


class QuestionAnsweringDecoding(Section):
    n_best: Int = 20  # start and end candidates per window
    max_answer_length: Int = 30  # in WordPieces


class QuestionAnsweringEvaluation(Section):
    # SQuAD's scale: 0-100, as its official script and published results report them.
    min_f1: Float = 0.0
    min_exact_match: Float = 0.0
    # The candidate must reach the latest blessed model's F1 minus this many points.
    baseline_tolerance: Float = 0.0


class QuestionAnsweringConfig(FinetuneConfig):
    task: Literal["question_answering"]
    data: QuestionAnsweringData
    windows: QuestionAnsweringWindows = Field(default_factory=QuestionAnsweringWindows)
    decoding: QuestionAnsweringDecoding = Field(default_factory=QuestionAnsweringDecoding)
    evaluation: QuestionAnsweringEvaluation = Field(default_factory=QuestionAnsweringEvaluation)

    def check(self, fail) -> None:
        self.data.check_ingestion(list((self.data.splits or {"": self.data.pattern}).values()), fail)
        super().check(fail)
        if self.data.splits is not None and set(self.data.splits) != {"train", "eval"}:
            fail("data.splits", "needs exactly a 'train' and an 'eval' pattern")
        if self.data.train_buckets < 1 or self.data.eval_buckets < 1:
            fail("data.train_buckets", "train_buckets and eval_buckets must be positive")
        room = self.model.max_seq_length - 3 - self.windows.max_query_length
        if self.windows.max_query_length < 1 or room < 1:
            fail("windows.max_query_length",
                 f"must be between 1 and model.max_seq_length - 4 "
                 f"({self.model.max_seq_length - 4})")
        elif not 1 <= self.windows.doc_stride <= room:
            fail("windows.doc_stride",
                 f"must be between 1 and model.max_seq_length - 3 - windows.max_query_length "
                 f"({room}), or context pieces would fall between two windows")
        if self.decoding.n_best < 1:
            fail("decoding.n_best", "must be positive")
        if self.decoding.max_answer_length < 1:
            fail("decoding.max_answer_length", "must be positive")
        for name in ("min_f1", "min_exact_match"):
            if not 0.0 <= getattr(self.evaluation, name) <= 100.0:
                fail(f"evaluation.{name}", "must be in [0, 100] (SQuAD's scale)")


@register_task
class QuestionAnsweringTask(Task):
    name = "question_answering"
    config_class = QuestionAnsweringConfig
    module = "pipeline.modules.question_answering"

    def example_gen(self, config: QuestionAnsweringConfig):
        from tfx import v1 as tfx

        from components.squad_example_gen.component import SquadExampleGen
        from serving.question_answering_features import TITLE

        data = config.data
        # Bad records are quarantined; the run stops only above data.max_bad_fraction.
        limits = {"max_bad_fraction": data.max_bad_fraction,
                  "max_field_bytes": data.max_field_bytes}
        if data.splits is not None:
            return SquadExampleGen(
                input_base=data.input_dir,
                input_config=tfx.proto.Input(splits=[
                    tfx.proto.Input.Split(name=name, pattern=pattern)
                    for name, pattern in data.splits.items()
                ]),
                **limits,
            )
        return SquadExampleGen(
            input_base=data.input_dir,
            input_config=tfx.proto.Input(splits=[
                tfx.proto.Input.Split(name="single_split", pattern=data.pattern)]),
            output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(
                splits=[
                    tfx.proto.SplitConfig.Split(name="train", hash_buckets=data.train_buckets),
                    tfx.proto.SplitConfig.Split(name="eval", hash_buckets=data.eval_buckets),
                ],
                partition_feature_name=TITLE,  # by article: no paragraph in both splits
            )),
            **limits,
        )

    def schema(self, config: QuestionAnsweringConfig):
        """One question, context, id and title per example; at least one gold answer."""
        from pipeline.schema import new_schema, require_feature
        from serving import question_answering_features as features

        schema = new_schema()
        for name in (features.ID, features.TITLE, features.QUESTION, features.CONTEXT):
            require_feature(schema, name, "BYTES", dims=[1])
        require_feature(schema, features.ANSWER_TEXTS, "BYTES")
        require_feature(schema, features.ANSWER_STARTS, "INT")
        return schema

    def module_config(self, config: QuestionAnsweringConfig) -> dict[str, Any]:
        return {
            "max_query_length": config.windows.max_query_length,
            "doc_stride": config.windows.doc_stride,
            "n_best": config.decoding.n_best,
            "max_answer_length": config.decoding.max_answer_length,
        }

    def evaluator(self, config: QuestionAnsweringConfig, examples, model, baseline_model):
        from components.squad_evaluator.component import SquadEvaluator

        return SquadEvaluator(
            examples=examples,
            model=model,
            baseline_model=baseline_model,
            min_f1=config.evaluation.min_f1,
            min_exact_match=config.evaluation.min_exact_match,
            baseline_tolerance=config.evaluation.baseline_tolerance,
            batch_size=config.training.eval_batch_size,
        ).with_id("Evaluator")

    def read_evaluation(self, evaluation_uri: str) -> tuple[dict, dict, list[str]]:
        from components.squad_evaluator.executor import read_evaluation

        return read_evaluation(evaluation_uri)
