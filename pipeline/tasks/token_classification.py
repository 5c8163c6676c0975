"""Token classification (named-entity recognition): CoNLL files -> entities with offsets.

Ingestion: `ConllExampleGen` (one token per line, the tag in `data.tag_column`, blank line
between sentences; IOB1 or IOB2, normalised to IOB2; one tf.Example per sentence with
`tokens` and `tags`; a sentence with a bad line is quarantined, see `components.quarantine`,
and the run stops only above `data.max_bad_fraction`). Schema: both lists present in every
sentence. Preprocessing: each word is WordPiece-tokenized in the graph and its tag sits on
its first piece (other pieces and special tokens weigh 0); words beyond
`model.max_seq_length` are counted, not hidden.
Evaluation: `EntityEvaluator` (seqeval's entity precision/recall/F1, a minimum F1 and the
latest blessed model as baseline). Export contract: `serving.token_classification_export`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pipeline.config import FinetuneConfig, Float, IngestionSection, Int, Section, Str
from pipeline.tasks.base import Task, register_task
from pipeline.tasks.iob import tag_names


class TokenClassificationData(IngestionSection):
    entity_types: list[Str]  # e.g. [PER, ORG, LOC, MISC]; tags are O, B-TYPE, I-TYPE
    splits: dict[Str, Str] = Field(
        default_factory=lambda: {"train": "train/*.conll", "eval": "eval/*.conll"})
    tag_column: Int = -1  # column of the tag in a CoNLL line (the token is column 0)
    tokens_feature: Str = "tokens"
    tags_feature: Str = "tags"


class TokenClassificationEvaluation(Section):
    min_f1: Float = 0.0  # entity-level micro F1 on the eval split
    # The candidate must reach the latest blessed model's F1 minus this tolerance.
    baseline_tolerance: Float = 0.0


class TokenClassificationConfig(FinetuneConfig):
    task: Literal["token_classification"]
    data: TokenClassificationData
    evaluation: TokenClassificationEvaluation = Field(
        default_factory=TokenClassificationEvaluation)

    def check(self, fail) -> None:
        self.data.check_ingestion(list(self.data.splits.values()), fail)
        types = self.data.entity_types
        if not types:
            fail("data.entity_types", "needs at least one entity type")
        if len(set(types)) != len(types):
            fail("data.entity_types", "entity types must be unique")
        if "train" not in self.data.splits or "eval" not in self.data.splits:
            fail("data.splits", "needs a 'train' and an 'eval' pattern")
        if not 0.0 <= self.evaluation.min_f1 <= 1.0:
            fail("evaluation.min_f1", "must be in [0, 1]")
        super().check(fail)


@register_task
class TokenClassificationTask(Task):
    name = "token_classification"
    config_class = TokenClassificationConfig
    module = "pipeline.modules.token_classification"

    def example_gen(self, config: TokenClassificationConfig):
        from tfx import v1 as tfx

        from components.conll_example_gen.component import ConllExampleGen

        return ConllExampleGen(
            input_base=config.data.input_dir,
            input_config=tfx.proto.Input(splits=[
                tfx.proto.Input.Split(name=name, pattern=pattern)
                for name, pattern in config.data.splits.items()
            ]),
            tag_column=config.data.tag_column,
            entity_types=list(config.data.entity_types),
            tokens_feature=config.data.tokens_feature,
            tags_feature=config.data.tags_feature,
            max_bad_fraction=config.data.max_bad_fraction,
            max_field_bytes=config.data.max_field_bytes,
        )

    def schema(self, config: TokenClassificationConfig):
        """Every sentence has words and tags; tags are strings (checked at ingestion)."""
        from pipeline.schema import new_schema, require_feature

        schema = new_schema()
        require_feature(schema, config.data.tokens_feature, "BYTES")
        require_feature(schema, config.data.tags_feature, "BYTES")
        return schema

    def module_config(self, config: TokenClassificationConfig) -> dict[str, Any]:
        return {
            "tokens_feature": config.data.tokens_feature,
            "tags_feature": config.data.tags_feature,
            "tags": tag_names(list(config.data.entity_types)),
        }

    def evaluator(self, config: TokenClassificationConfig, examples, model, baseline_model):
        from components.entity_evaluator.component import EntityEvaluator

        return EntityEvaluator(
            examples=examples,
            model=model,
            baseline_model=baseline_model,
            tokens_feature=config.data.tokens_feature,
            tags_feature=config.data.tags_feature,
            min_f1=config.evaluation.min_f1,
            baseline_tolerance=config.evaluation.baseline_tolerance,
            batch_size=config.training.eval_batch_size,
        ).with_id("Evaluator")

    def read_evaluation(self, evaluation_uri: str) -> tuple[dict, dict, list[str]]:
        from components.entity_evaluator.executor import read_evaluation

        return read_evaluation(evaluation_uri)
