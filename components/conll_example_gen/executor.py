"""ConllExampleGen executor: TFX's file-based ExampleGen executor with a CoNLL reader.

`BaseExampleGenExecutor` does what every TFX ExampleGen does (input splits or hash-split
output splits, partition features, span/version, TFRecord writing); this module supplies
the per-split PTransform that turns the files of one split pattern into tf.Examples, and
collects the bad lines of all splits into `bad_lines.jsonl` in the output artifact before
failing the run with one `ConllFormatError`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import apache_beam as beam
import tensorflow as tf
from absl import logging
from apache_beam.io.filesystems import FileSystems
from google.protobuf import json_format, struct_pb2
from tfx import types
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs

from components.conll_example_gen import conll

INPUT_BASE_KEY = standard_component_specs.INPUT_BASE_KEY
CUSTOM_CONFIG_KEY = standard_component_specs.CUSTOM_CONFIG_KEY
EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY

# Written at the root of the output Examples artifact (next to Split-*/): every bad line
# of every split as JSON lines (see conll.BadLine.to_json), sorted by file and line.
BAD_LINES_FILE = "bad_lines.jsonl"
# Custom property of the output artifact.
BAD_LINE_COUNT_PROPERTY = "bad_line_count"

_METRICS_NAMESPACE = "bertpipe.ConllExampleGen"


def make_custom_config(config: conll.ConllConfig) -> example_gen_pb2.CustomConfig:
    """Packs the CoNLL settings into TFX's ExampleGen custom_config (a Struct in an Any),
    so they reach the executor, and the cache key, like any other execution property."""
    struct = struct_pb2.Struct()
    struct.update(config.to_dict())
    custom_config = example_gen_pb2.CustomConfig()
    custom_config.custom_config.Pack(struct)
    return custom_config


def parse_custom_config(value: str | example_gen_pb2.CustomConfig | None) -> conll.ConllConfig:
    """The CoNLL settings from the `custom_config` execution property (the JSON string TFX
    passes to executors, or the proto itself)."""
    if not value:
        raise ValueError("ConllExampleGen needs a custom_config with its CoNLL settings (entity_types, ...)")
    custom_config = value
    if isinstance(value, str):
        custom_config = json_format.Parse(value, example_gen_pb2.CustomConfig())
    struct = struct_pb2.Struct()
    if not custom_config.custom_config.Unpack(struct):
        raise ValueError(
            f"ConllExampleGen's custom_config must hold a google.protobuf.Struct, "
            f"got {custom_config.custom_config.type_url!r}"
        )
    return conll.ConllConfig.from_dict(json_format.MessageToDict(struct))


def sentence_to_example(sentence: conll.Sentence, config: conll.ConllConfig) -> tf.train.Example:
    example = tf.train.Example()
    features = example.features.feature
    features[config.tokens_feature].bytes_list.value.extend(t.encode("utf-8") for t in sentence.tokens)
    features[config.tags_feature].bytes_list.value.extend(t.encode("utf-8") for t in sentence.tags)
    return example


class _ParseFileFn(beam.DoFn):
    """Reads one CoNLL file: sentences on the main output, `BadLine`s on BAD_LINES."""

    BAD_LINES = "bad_lines"

    def __init__(self, config: conll.ConllConfig):
        self._config = config
        self._sentences = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "sentences")
        self._bad_lines = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "bad_lines")

    def process(self, path: str) -> Any:
        bad_lines: list[conll.BadLine] = []
        # AUTO compression: "train.conll.gz" reads like "train.conll".
        with FileSystems.open(path) as stream:
            for sentence in conll.parse_conll(iter(stream.readline, b""), path, self._config, bad_lines):
                self._sentences.inc()
                yield sentence
        self._bad_lines.inc(len(bad_lines))
        for bad in bad_lines:
            yield beam.pvalue.TaggedOutput(self.BAD_LINES, bad)


class ConllToExample(beam.PTransform):
    """The files of one split pattern -> tf.Examples (one per sentence).

    Called by `BaseExampleGenExecutor.GenerateExamplesByBeam` as
    `ConllToExample(exec_properties, split_pattern)`. The bad lines go to `bad_lines_sink`
    (a list the executor gives, which receives this split's PCollection of `BadLine`s),
    because the base class only passes the examples on.
    """

    def __init__(
        self,
        exec_properties: dict[str, Any],
        split_pattern: str,
        bad_lines_sink: list[beam.PCollection] | None = None,
    ):
        super().__init__()
        self._pattern = os.path.join(exec_properties[INPUT_BASE_KEY], split_pattern)
        self._config = parse_custom_config(exec_properties.get(CUSTOM_CONFIG_KEY))
        self._bad_lines_sink = bad_lines_sink

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
        paths = sorted(m.path for result in FileSystems.match([self._pattern]) for m in result.metadata_list)
        if not paths:
            raise FileNotFoundError(f"no file matches the split pattern {self._pattern!r}")
        logging.info("Reading %d CoNLL files matching %s.", len(paths), self._pattern)
        parsed = (
            pipeline
            | "ListFiles" >> beam.Create(paths)
            # Each file is read whole by one worker (a sentence must not be cut); the
            # reshuffle spreads many files over the workers.
            | "SpreadFiles" >> beam.Reshuffle()
            | "ParseFiles"
            >> beam.ParDo(_ParseFileFn(self._config)).with_outputs(_ParseFileFn.BAD_LINES, main="sentences")
        )
        if self._bad_lines_sink is not None:
            self._bad_lines_sink.append(parsed[_ParseFileFn.BAD_LINES])
        return parsed.sentences | "ToTFExample" >> beam.Map(sentence_to_example, self._config)


def _write_bad_lines(bad_lines: list[conll.BadLine], path: str) -> int:
    with FileSystems.create(path) as stream:
        return conll.write_bad_lines(bad_lines, stream)


def read_bad_lines_file(path: str) -> tuple[list[conll.BadLine], int]:
    """The first `conll.MAX_REPORTED_BAD_LINES` records of a bad-lines file, and the count."""
    first: list[conll.BadLine] = []
    total = 0
    with FileSystems.open(path, compression_type="uncompressed") as stream:
        for bad in conll.read_bad_lines(stream):
            if total < conll.MAX_REPORTED_BAD_LINES:
                first.append(bad)
            total += 1
    return first, total


class Executor(BaseExampleGenExecutor):
    """TFX ExampleGen executor for CoNLL files (see `conll` for the format).

    Fails with `conll.ConllFormatError` if any line is malformed, after writing all of them
    to `bad_lines.jsonl` in the output artifact. (In a pipeline TFX then deletes the failed
    execution's output directory; the error message lists the first bad lines.)
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._bad_lines_sink: list[beam.PCollection] = []
        self._bad_lines_path: str | None = None

    def GetInputSourceToExamplePTransform(self) -> Any:
        sink = self._bad_lines_sink

        def make_transform(exec_properties: dict[str, Any], split_pattern: str) -> ConllToExample:
            return ConllToExample(exec_properties, split_pattern, bad_lines_sink=sink)

        return make_transform

    def GenerateExamplesByBeam(
        self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
    ) -> dict[str, beam.PCollection]:
        self._bad_lines_sink.clear()
        splits = super().GenerateExamplesByBeam(pipeline, exec_properties)
        if self._bad_lines_path is not None:
            _ = (
                tuple(self._bad_lines_sink)
                | "FlattenBadLines" >> beam.Flatten(pipeline=pipeline)
                # Few in practice, and sorted output is easier to read and to diff.
                | "CollectBadLines" >> beam.combiners.ToList()
                | "WriteBadLines" >> beam.Map(_write_bad_lines, self._bad_lines_path)
            )
        return splits

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        # Checked before Beam starts, so a config mistake is not reported as a Beam error.
        config = parse_custom_config(exec_properties.get(CUSTOM_CONFIG_KEY))
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        self._bad_lines_path = os.path.join(examples.uri, BAD_LINES_FILE)
        logging.info("CoNLL settings: %s", json.dumps(config.to_dict()))
        super().Do(input_dict, output_dict, exec_properties)

        first, total = read_bad_lines_file(self._bad_lines_path)
        examples.set_int_custom_property(BAD_LINE_COUNT_PROPERTY, total)
        if total:
            raise conll.ConllFormatError(first, total)
