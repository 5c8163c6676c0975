"""CsvExampleGen: TFX's FileBasedExampleGen with the quarantining CSV executor."""

from __future__ import annotations

from collections.abc import Sequence

from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.proto import example_gen_pb2, range_config_pb2

from components import quarantine
from components.csv_example_gen import csv_rows, executor


class CsvExampleGen(FileBasedExampleGen):
    """Ingests CSV files as tf.Examples, one per record; bad rows are quarantined.

    The first line of each file is the header. Integer columns (`label_column`,
    `integer_columns`) become int64 features, every other column a bytes feature (an empty
    field is left out, a missing value). Everything else is TFX's file-based ExampleGen:
    `input_config` split patterns (with `{SPAN}`/`{VERSION}`, resolved by TFX's driver
    within `range_config`), `output_config` hash splits, GZIP TFRecords in `Split-<name>/`,
    and the `span`, `version` and `input_fingerprint` properties. Its default id is
    "CsvExampleGen", as TFX's own.

    A record that cannot be read (not UTF-8, a field over `max_field_bytes`, a column
    count other than the header's, an unterminated quote, a label that is not an integer
    in [0, num_classes)) is quarantined (see `csv_rows` and `components.quarantine`): the
    other rows go on, the Examples artifact gets `rows_read`, `rows_kept`,
    `rows_quarantined` and `quarantine_file`, and the run stops with
    `quarantine.TooManyBadRowsError` only if the quarantined share of the rows read is
    above `max_bad_fraction` (default 0.0: any bad row stops it).

    Example:
        example_gen = CsvExampleGen(
            input_base="data/sst2",
            input_config=example_gen_pb2.Input(splits=[
                example_gen_pb2.Input.Split(name="train", pattern="train/*.csv"),
                example_gen_pb2.Input.Split(name="eval", pattern="eval/*.csv"),
            ]),
            label_column="label",
            num_classes=2,
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
        label_column: str | None = None,
        num_classes: int | None = None,
        integer_columns: Sequence[str] = (),
        max_bad_fraction: float = quarantine.DEFAULT_MAX_BAD_FRACTION,
        max_field_bytes: int = quarantine.DEFAULT_MAX_FIELD_BYTES,
        range_config: range_config_pb2.RangeConfig | None = None,
    ):
        """Constructs a CsvExampleGen.

        Args:
            input_base: directory holding the CSV files.
            input_config: TFX `example_gen_pb2.Input`; default: every file under
                `input_base` as one split, hash-split into the output splits.
            output_config: TFX `example_gen_pb2.Output`; default: the input splits as they
                are if there are several, else train:eval = 2:1 by hash (TFX's default).
            label_column: the label's column (an integer class index) that every file's
                header must have; None for unlabelled data.
            num_classes: the label must lie in [0, num_classes); None: any integer.
            integer_columns: other columns that must hold an integer in every row.
            max_bad_fraction: the run fails when quarantined rows / rows read is above
                this (0.0: any bad row fails it).
            max_field_bytes: a field or record longer than this is a bad row.
            range_config: TFX `range_config_pb2.RangeConfig` limiting the spans used.
        """
        # Validated here, when the pipeline is defined, rather than in the executor.
        config = csv_rows.CsvConfig(
            label_column=label_column, num_classes=num_classes, integer_columns=integer_columns)
        limits = quarantine.QuarantineSettings(max_bad_fraction, max_field_bytes)
        input_config = input_config or example_gen_utils.make_default_input_config()
        super().__init__(
            input_base=input_base,
            input_config=input_config,
            output_config=output_config,
            range_config=range_config,
            **quarantine.example_gen_arguments(executor.Executor, config.to_dict(), limits),
        )
