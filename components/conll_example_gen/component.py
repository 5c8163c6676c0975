"""ConllExampleGen: TFX's FileBasedExampleGen with the CoNLL executor (see `conll`)."""

from __future__ import annotations

from collections.abc import Sequence

from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.proto import example_gen_pb2, range_config_pb2

from components import quarantine
from components.conll_example_gen import conll, executor


class ConllExampleGen(FileBasedExampleGen):
    """Ingests CoNLL-style token/tag files as tf.Examples, one per sentence.

    Each output example has `tokens` (bytes list, the words) and `tags` (bytes list, their
    IOB2 tags); the feature names are configurable. Everything else is TFX's file-based
    ExampleGen: `input_config` split patterns (with `{SPAN}`/`{VERSION}`, resolved by
    TFX's driver within `range_config`), `output_config` hash splits (by the whole example
    unless `partition_feature_name` says otherwise), GZIP TFRecords in
    `Split-<name>/`, and the `span`, `version` and `input_fingerprint` properties.

    A malformed line (see `conll`) quarantines its sentence (see `components.quarantine`):
    the other sentences go on, the Examples artifact gets `rows_read`, `rows_kept`,
    `rows_quarantined` (sentences) and `quarantine_file`, and the run stops with
    `quarantine.TooManyBadRowsError`, naming the quarantine file and the first bad lines as
    `path:line: reason`, only if the quarantined share of the sentences read is above
    `max_bad_fraction` (default 0.0: any bad line stops it).

    Example:
        example_gen = ConllExampleGen(
            input_base="data/wnut17",
            input_config=example_gen_pb2.Input(splits=[
                example_gen_pb2.Input.Split(name="train", pattern="train.conll"),
                example_gen_pb2.Input.Split(name="eval", pattern="eval.conll"),
            ]),
            entity_types=["person", "location", "group", "creative-work", "corporation", "product"],
            max_bad_fraction=0.001,
        )
        example_gen.outputs["examples"]
    """

    def __init__(
        self,
        input_base: str,
        input_config: example_gen_pb2.Input | None = None,
        output_config: example_gen_pb2.Output | None = None,
        *,
        entity_types: Sequence[str],
        tag_column: int = -1,
        tokens_feature: str = "tokens",
        tags_feature: str = "tags",
        max_bad_fraction: float = quarantine.DEFAULT_MAX_BAD_FRACTION,
        max_field_bytes: int = quarantine.DEFAULT_MAX_FIELD_BYTES,
        range_config: range_config_pb2.RangeConfig | None = None,
    ):
        """Constructs a ConllExampleGen.

        Args:
            input_base: directory holding the CoNLL files.
            input_config: TFX `example_gen_pb2.Input`; default: every file under
                `input_base` as one split, hash-split into the output splits.
            output_config: TFX `example_gen_pb2.Output`; default: the input splits as they
                are if there are several, else train:eval = 2:1 by hash (TFX's default).
            entity_types: the entity types tags may carry, e.g. ["PER", "ORG", "LOC",
                "MISC"]; a tag of any other type is a malformed line. The model's tag
                vocabulary is `pipeline.tasks.iob.tag_names(entity_types)`.
            tag_column: the column holding the tag (0 is the token; negative counts from
                the end, so the default -1 is the last column).
            tokens_feature, tags_feature: names of the output features.
            max_bad_fraction: the run fails when quarantined sentences / sentences read is
                above this (0.0: any bad line fails it).
            max_field_bytes: a line longer than this is a bad line.
            range_config: TFX `range_config_pb2.RangeConfig` limiting the spans used.
        """
        # Validated here, when the pipeline is defined, rather than in the executor.
        config = conll.ConllConfig(
            entity_types=entity_types,
            tag_column=tag_column,
            tokens_feature=tokens_feature,
            tags_feature=tags_feature,
        )
        limits = quarantine.QuarantineSettings(max_bad_fraction, max_field_bytes)
        input_config = input_config or example_gen_utils.make_default_input_config()
        super().__init__(
            input_base=input_base,
            input_config=input_config,
            output_config=output_config,
            range_config=range_config,
            **quarantine.example_gen_arguments(executor.Executor, config.to_dict(), limits),
        )
