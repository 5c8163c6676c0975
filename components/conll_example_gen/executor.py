"""ConllExampleGen executor: the quarantining ExampleGen executor with a CoNLL reader.

`quarantine.ExampleGenExecutor` does everything but reading a file: TFX's splits, spans and
TFRecords, and the counting, quarantine file and threshold. This module says how one CoNLL
file becomes tf.Examples (one per sentence) and quarantined sentences (see `conll`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

import tensorflow as tf

from components import quarantine
from components.conll_example_gen import conll


def sentence_to_example(sentence: conll.Sentence, config: conll.ConllConfig) -> tf.train.Example:
    example = tf.train.Example()
    features = example.features.feature
    features[config.tokens_feature].bytes_list.value.extend(t.encode("utf-8") for t in sentence.tokens)
    features[config.tags_feature].bytes_list.value.extend(t.encode("utf-8") for t in sentence.tags)
    return example


class ConllReader:
    """reader(path, stream): the tf.Examples and QuarantinedRows of one CoNLL file."""

    def __init__(self, config: conll.ConllConfig, max_field_bytes: int):
        self._config = config
        self._max_field_bytes = max_field_bytes

    def __call__(self, path: str, stream: BinaryIO) -> Iterator[Any]:
        for item in conll.parse_conll(stream, path, self._config, self._max_field_bytes):
            if isinstance(item, quarantine.QuarantinedRow):
                yield item
            else:
                yield sentence_to_example(item, self._config)


class Executor(quarantine.ExampleGenExecutor):
    """TFX ExampleGen executor for CoNLL files (see `conll` for the format and the bad
    sentences, `quarantine` for what happens to them)."""

    def parse_settings(self, values: dict[str, Any]) -> conll.ConllConfig:
        if not values:
            raise ValueError("ConllExampleGen needs a custom_config with its CoNLL settings (entity_types, ...)")
        return conll.ConllConfig.from_dict(values)

    def make_reader(self, settings: conll.ConllConfig, limits: quarantine.QuarantineSettings) -> ConllReader:
        return ConllReader(settings, limits.max_field_bytes)
