"""SquadExampleGen executor: the quarantining ExampleGen executor with a SQuAD v1.1 reader.

`quarantine.ExampleGenExecutor` does everything but reading a file: TFX's splits, spans and
TFRecords, and the counting, quarantine file and threshold. This module says how one SQuAD
file becomes tf.Examples (one per question) and quarantined records (see `squad`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

import tensorflow as tf

from components import quarantine
from components.squad_example_gen import squad
from serving import question_answering_features as features


def question_to_example(question: squad.Question) -> tf.train.Example:
    """The tf.Example of one question, with the feature names of
    `serving.question_answering_features` (the contract with Transform and the evaluator)."""
    example = tf.train.Example()
    feature = example.features.feature

    def text(name: str, value: str) -> None:
        feature[name].bytes_list.value.append(value.encode("utf-8"))

    text(features.ID, question.id)
    text(features.TITLE, question.title)
    text(features.QUESTION, question.question)
    text(features.CONTEXT, question.context)
    feature[features.ANSWER_TEXTS].bytes_list.value.extend(
        answer.encode("utf-8") for answer in question.answer_texts
    )
    feature[features.ANSWER_STARTS].int64_list.value.extend(question.answer_starts)
    return example


class SquadReader:
    """reader(path, stream): the tf.Examples and QuarantinedRows of one SQuAD file (a JSON
    document, read whole)."""

    def __init__(self, max_field_bytes: int):
        self._max_field_bytes = max_field_bytes

    def __call__(self, path: str, stream: BinaryIO) -> Iterator[Any]:
        for item in squad.parse_squad(stream.read(), path, self._max_field_bytes):
            yield item if isinstance(item, quarantine.QuarantinedRow) else question_to_example(item)


class Executor(quarantine.ExampleGenExecutor):
    """TFX ExampleGen executor for SQuAD v1.1 JSON files (see `squad` for the format and the
    bad records, `quarantine` for what happens to them)."""

    def parse_settings(self, values: dict[str, Any]) -> None:
        if values:
            raise ValueError(f"unknown SquadExampleGen settings: {sorted(values)}")

    def make_reader(self, settings: None, limits: quarantine.QuarantineSettings) -> SquadReader:
        return SquadReader(limits.max_field_bytes)
