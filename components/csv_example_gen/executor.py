"""CsvExampleGen executor: the quarantining ExampleGen executor with the CSV reader.

`quarantine.ExampleGenExecutor` does everything but reading a file: TFX's splits, spans and
TFRecords, and the counting, quarantine file and threshold. This module says how one CSV
file becomes tf.Examples and `QuarantinedRow`s (see `csv_rows`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

import tensorflow as tf

from components import quarantine
from components.csv_example_gen import csv_rows


def row_to_example(row: csv_rows.Row) -> tf.train.Example:
    """Bytes features for text columns, int64 features for integer columns."""
    example = tf.train.Example()
    features = example.features.feature
    for name, value in row.values.items():
        if isinstance(value, int):
            features[name].int64_list.value.append(value)
        else:
            features[name].bytes_list.value.append(value)
    return example


class CsvReader:
    """reader(path, stream): the tf.Examples and QuarantinedRows of one CSV file."""

    def __init__(self, config: csv_rows.CsvConfig, max_field_bytes: int):
        self._config = config
        self._max_field_bytes = max_field_bytes

    def __call__(self, path: str, stream: BinaryIO) -> Iterator[Any]:
        for item in csv_rows.parse_csv(stream, path, self._config, self._max_field_bytes):
            yield item if isinstance(item, quarantine.QuarantinedRow) else row_to_example(item)


class Executor(quarantine.ExampleGenExecutor):
    """TFX ExampleGen executor for CSV files (see `csv_rows` for the format and the bad
    rows, `quarantine` for what happens to them)."""

    def parse_settings(self, values: dict[str, Any]) -> csv_rows.CsvConfig:
        return csv_rows.CsvConfig.from_dict(values)

    def make_reader(self, settings: csv_rows.CsvConfig, limits: quarantine.QuarantineSettings) -> CsvReader:
        return CsvReader(settings, limits.max_field_bytes)
