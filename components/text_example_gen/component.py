"""TextExampleGen: a TFX ExampleGen for plain-text corpora (spec + component)."""

from __future__ import annotations

from tfx import types
from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.text_example_gen import executor, text_ingestion


class TextExampleGenSpec(ComponentSpec):
    """Parameters and outputs of TextExampleGen."""

    PARAMETERS = {
        executor.INPUT_BASE_KEY: ExecutionParameter(type=str),
        executor.INPUT_CONFIG_KEY: ExecutionParameter(type=example_gen_pb2.Input),
        executor.OUTPUT_CONFIG_KEY: ExecutionParameter(type=example_gen_pb2.Output),
        executor.RANGE_CONFIG_KEY: ExecutionParameter(type=range_config_pb2.RangeConfig, optional=True),
        executor.DOCUMENT_MODE_KEY: ExecutionParameter(type=str),
        executor.SENTENCE_SPLITTING_KEY: ExecutionParameter(type=str),
        executor.DOCUMENT_START_REGEX_KEY: ExecutionParameter(type=str, optional=True),
        executor.MAX_LINE_BYTES_KEY: ExecutionParameter(type=int),
        executor.NUM_SHARDS_KEY: ExecutionParameter(type=int),
    }
    INPUTS = {}
    OUTPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
    }


def make_train_eval_output_config(train_buckets: int = 9, eval_buckets: int = 1) -> example_gen_pb2.Output:
    """An output config splitting documents by a hash of doc_id, train:eval = the buckets."""
    return example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=train_buckets),
                example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=eval_buckets),
            ],
            partition_feature_name=text_ingestion.DOC_ID_FEATURE,
        )
    )


class TextExampleGen(base_beam_component.BaseBeamComponent):
    """Ingests plain-text files as tf.Examples of documents, one sentence list each.

    Each output example has `doc_id` (bytes) and `sentences` (bytes list). Documents are
    hash-split by doc_id into the output splits (train:eval 9:1 unless `output_config`
    says otherwise), written as GZIP TFRecords in the Examples layout
    (`Split-<name>/data_tfrecord-SSSSS-of-NNNNN.gz`), sorted by doc_id. Input problems
    (invalid UTF-8, over-long lines, empty files) are written to `ingestion_report.jsonl`
    in the artifact, logged, and counted in the custom properties `ingestion_issue_count`
    and `ingestion_issues_by_kind`; see `text_ingestion` for the policy.

    Span and version work as in TFX's file-based ExampleGens: with `{SPAN}` (and optionally
    `{VERSION}`) in the input pattern, a run picks the newest span (within `range_config`),
    and the output artifact carries the `span`, `version` and `input_fingerprint` custom
    properties. Unchanged input files give an unchanged fingerprint, so a re-run is cached.

    Example:
        text_gen = TextExampleGen(
            input_base="gs://bucket/corpus", input_pattern="span-{SPAN}/*.txt",
            document_mode="blank_line")
        text_gen.outputs["examples"]

    Outputs:
        examples: `standard_artifacts.Examples`.
    """

    SPEC_CLASS = TextExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = example_gen_driver.FileBasedDriver

    def __init__(
        self,
        input_base: str,
        input_pattern: str = "*",
        *,
        document_mode: str = "blank_line",
        sentence_splitting: str = "rules",
        document_start_regex: str = "",
        max_line_bytes: int = 65536,
        num_shards: int = 1,
        input_config: example_gen_pb2.Input | None = None,
        output_config: example_gen_pb2.Output | None = None,
        range_config: range_config_pb2.RangeConfig | None = None,
    ):
        """Constructs a TextExampleGen.

        Args:
            input_base: directory holding the text files.
            input_pattern: glob of the files under `input_base`, may contain {SPAN} and
                {VERSION}; ignored when `input_config` is given.
            document_mode: "file" (one document per file), "blank_line" (documents are
                separated by blank lines) or "regex" (a line matching
                `document_start_regex` starts a document).
            sentence_splitting: "rules" (rule-based splitter) or "line" (one sentence a
                line, for input that is already split).
            document_start_regex: Python regex for document_mode "regex" (searched in each
                stripped line), e.g. r"^CHAPTER\\s+[0-9IVXLC]+\\.?$".
            max_line_bytes: longer lines are skipped and reported.
            num_shards: TFRecord files per output split.
            input_config: TFX `example_gen_pb2.Input`; one split (hash-split into the
                output splits) or several (kept as they are).
            output_config: TFX `example_gen_pb2.Output` with hash buckets per split;
                default train:eval = 9:1. The partition feature is always doc_id.
            range_config: TFX `range_config_pb2.RangeConfig` limiting which spans are used.
        """
        # Validate early, at pipeline definition time, rather than in the executor.
        text_ingestion.TextIngestionConfig(
            document_mode=document_mode,
            sentence_splitting=sentence_splitting,
            document_start_regex=document_start_regex,
            max_line_bytes=max_line_bytes,
        )
        input_config = input_config or example_gen_utils.make_default_input_config(input_pattern)
        if output_config is None:
            if len(input_config.splits) == 1:
                output_config = make_train_eval_output_config()
            else:
                output_config = example_gen_pb2.Output()
        spec = TextExampleGenSpec(
            input_base=input_base,
            input_config=input_config,
            output_config=output_config,
            range_config=range_config,
            document_mode=document_mode,
            sentence_splitting=sentence_splitting,
            document_start_regex=document_start_regex,
            max_line_bytes=max_line_bytes,
            num_shards=num_shards,
            examples=types.Channel(type=standard_artifacts.Examples),
        )
        super().__init__(spec=spec)
