"""SquadExampleGen: TFX's FileBasedExampleGen with the SQuAD v1.1 executor (see `squad`)."""

from __future__ import annotations

from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.proto import example_gen_pb2, range_config_pb2

from components import quarantine
from components.squad_example_gen import executor
from serving import question_answering_features as features

# Hash buckets of the default output splits (train:eval = 4:1, by article).
TRAIN_BUCKETS = 4
EVAL_BUCKETS = 1


def make_default_output_config(input_config: example_gen_pb2.Input) -> example_gen_pb2.Output:
    """The input splits as they are if there are several; else train:eval = 4:1 by a hash
    of the article title.

    Questions about one paragraph (and one article) share their answers' context, so a
    split by question would put near-copies of eval questions into training; TFX's
    `partition_feature_name` keeps every question of an article in one split.
    """
    if len(input_config.splits) > 1:
        return example_gen_pb2.Output()
    return example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=TRAIN_BUCKETS),
                example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=EVAL_BUCKETS),
            ],
            partition_feature_name=features.TITLE,
        )
    )


def check_output_config(output_config: example_gen_pb2.Output) -> None:
    """Raises ValueError for hash output splits that are not made by article title (TFX
    would otherwise hash each question on its own, leaking articles across splits)."""
    split_config = output_config.split_config
    if split_config.splits and split_config.partition_feature_name != features.TITLE:
        got = split_config.partition_feature_name or "none (the whole example)"
        raise ValueError(
            f"SquadExampleGen's output splits must be made by article: set "
            f"output_config.split_config.partition_feature_name to {features.TITLE!r} "
            f"(got {got}), so no article has questions in two splits"
        )


class SquadExampleGen(FileBasedExampleGen):
    """Ingests SQuAD v1.1 JSON files as tf.Examples, one per question.

    Each output example has the features of `serving.question_answering_features`: `id`,
    `title`, `question`, `context` (bytes), `answer_texts` (bytes list, every gold answer
    in the file's order) and `answer_starts` (int64 list, offsets into `context` in Unicode
    code points). Everything else is TFX's file-based ExampleGen: `input_config` split
    patterns (with `{SPAN}`/`{VERSION}`, resolved by TFX's driver within `range_config`),
    `output_config` hash splits, GZIP TFRecords in `Split-<name>/`, and the `span`,
    `version` and `input_fingerprint` properties. Hash splits are always by article title
    (see `make_default_output_config`).

    A bad record (see `squad`) is quarantined (see `components.quarantine`): the other
    questions go on, the Examples artifact gets `rows_read`, `rows_kept`,
    `rows_quarantined` and `quarantine_file`, and the run stops with
    `quarantine.TooManyBadRowsError`, naming the quarantine file and the first bad records
    as `path:line: data[i].paragraphs[j].qas[k] (id ...): reason` (or `path:line: not valid
    JSON at column C: ...` for a file that does not parse), only if the quarantined share
    of the rows read is above `max_bad_fraction` (default 0.0: any bad record stops it).

    Example:
        example_gen = SquadExampleGen(
            input_base="data/squad",
            input_config=example_gen_pb2.Input(splits=[
                example_gen_pb2.Input.Split(name="train", pattern="train.json"),
                example_gen_pb2.Input.Split(name="eval", pattern="eval.json"),
            ]),
        )
        example_gen.outputs["examples"]
    """

    def __init__(
        self,
        input_base: str,
        input_config: example_gen_pb2.Input | None = None,
        output_config: example_gen_pb2.Output | None = None,
        range_config: range_config_pb2.RangeConfig | None = None,
        *,
        max_bad_fraction: float = quarantine.DEFAULT_MAX_BAD_FRACTION,
        max_field_bytes: int = quarantine.DEFAULT_MAX_FIELD_BYTES,
    ):
        """Constructs a SquadExampleGen.

        Args:
            input_base: directory holding the SQuAD JSON files.
            input_config: TFX `example_gen_pb2.Input`; default: every file under
                `input_base` as one split, hash-split into the output splits.
            output_config: TFX `example_gen_pb2.Output`; default: the input splits as they
                are if there are several, else train:eval = 4:1 by a hash of the title.
                Hash splits must set `partition_feature_name` to "title".
            range_config: TFX `range_config_pb2.RangeConfig` limiting the spans used.
            max_bad_fraction: the run fails when quarantined records / rows read is above
                this (0.0: any bad record fails it).
            max_field_bytes: a string (context, question, answer, title, id) longer than
                this many bytes makes its record bad.

        Raises:
            ValueError: `output_config` hash-splits by something other than the title.
        """
        input_config = input_config or example_gen_utils.make_default_input_config()
        if output_config is None:
            output_config = make_default_output_config(input_config)
        # Checked here, when the pipeline is defined, rather than in the executor.
        check_output_config(output_config)
        limits = quarantine.QuarantineSettings(max_bad_fraction, max_field_bytes)
        super().__init__(
            input_base=input_base,
            input_config=input_config,
            output_config=output_config,
            range_config=range_config,
            **quarantine.example_gen_arguments(executor.Executor, {}, limits),
        )
