"""TextExampleGen executor: runs `text_ingestion.IngestTextToExamples` on Beam."""

from __future__ import annotations

import collections
import json
import os
from typing import Any

from absl import logging
from tfx import types
from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.text_example_gen import text_ingestion

# Execution property keys (TFX's standard keys are reused where they mean the same thing).
INPUT_BASE_KEY = standard_component_specs.INPUT_BASE_KEY
INPUT_CONFIG_KEY = standard_component_specs.INPUT_CONFIG_KEY
OUTPUT_CONFIG_KEY = standard_component_specs.OUTPUT_CONFIG_KEY
RANGE_CONFIG_KEY = standard_component_specs.RANGE_CONFIG_KEY
DOCUMENT_MODE_KEY = "document_mode"
SENTENCE_SPLITTING_KEY = "sentence_splitting"
DOCUMENT_START_REGEX_KEY = "document_start_regex"
MAX_LINE_BYTES_KEY = "max_line_bytes"
NUM_SHARDS_KEY = "num_shards"
EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY

# Custom properties set on the output Examples artifact.
ISSUE_COUNT_PROPERTY = "ingestion_issue_count"
ISSUES_BY_KIND_PROPERTY = "ingestion_issues_by_kind"
REPORT_FILE_PROPERTY = "ingestion_report"

_MAX_ISSUES_LOGGED = 50


def resolve_input(
    input_base: str,
    input_config: example_gen_pb2.Input,
    range_config: range_config_pb2.RangeConfig | None = None,
) -> tuple[str, int, int | None]:
    """Resolves {SPAN}/{VERSION} (or date) specs in `input_config`'s patterns, in place, to
    the newest span (within `range_config`) and its newest version.

    Returns (input fingerprint, span, version). TFX's FileBasedDriver does the same before
    the executor runs in a pipeline; this is for running the executor on its own.
    """
    return example_gen_utils.calculate_splits_fingerprint_span_and_version(
        input_base, input_config.splits, range_config
    )


class Executor(base_beam_executor.BaseBeamExecutor):
    """Reads text files into train/eval splits of tf.Example documents (see text_ingestion)."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        input_base = exec_properties[INPUT_BASE_KEY]
        input_config = proto_utils.json_to_proto(exec_properties[INPUT_CONFIG_KEY], example_gen_pb2.Input())
        output_config = proto_utils.json_to_proto(
            exec_properties[OUTPUT_CONFIG_KEY], example_gen_pb2.Output()
        )
        if example_gen_utils.SPAN_PROPERTY_NAME not in exec_properties:
            # No driver ran (the executor is used on its own): resolve spans here.
            range_config = None
            if exec_properties.get(RANGE_CONFIG_KEY):
                range_config = proto_utils.json_to_proto(
                    exec_properties[RANGE_CONFIG_KEY], range_config_pb2.RangeConfig()
                )
            fingerprint, span, version = resolve_input(input_base, input_config, range_config)
            exec_properties = {
                **exec_properties,
                example_gen_utils.FINGERPRINT_PROPERTY_NAME: fingerprint,
                example_gen_utils.SPAN_PROPERTY_NAME: span,
                example_gen_utils.VERSION_PROPERTY_NAME: version,
            }

        config = text_ingestion.TextIngestionConfig(
            document_mode=exec_properties[DOCUMENT_MODE_KEY],
            sentence_splitting=exec_properties[SENTENCE_SPLITTING_KEY],
            document_start_regex=exec_properties.get(DOCUMENT_START_REGEX_KEY) or "",
            max_line_bytes=int(exec_properties[MAX_LINE_BYTES_KEY]),
        )
        split_names = example_gen_utils.generate_output_split_names(input_config, output_config)
        if len(input_config.splits) == 1:
            partition_feature = output_config.split_config.partition_feature_name
            if partition_feature not in ("", text_ingestion.DOC_ID_FEATURE):
                raise ValueError(
                    f"TextExampleGen always splits by {text_ingestion.DOC_ID_FEATURE!r}, "
                    f"not {partition_feature!r}"
                )
            paths = text_ingestion.match_files(input_base, [input_config.splits[0].pattern])
            inputs = [text_ingestion.SplitInput(None, paths)]
            hash_buckets = [split.hash_buckets for split in output_config.split_config.splits]
        else:
            inputs = [
                text_ingestion.SplitInput(split.name, text_ingestion.match_files(input_base, [split.pattern]))
                for split in input_config.splits
            ]
            hash_buckets = None
        for split, split_input in zip(input_config.splits, inputs, strict=True):
            if not split_input.paths:
                raise FileNotFoundError(f"no file matches {split.pattern!r} in {input_base}")

        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        logging.info("Ingesting %d text files into splits %s.", sum(len(i.paths) for i in inputs), split_names)
        with self._make_beam_pipeline() as pipeline:
            _ = pipeline | "IngestText" >> text_ingestion.IngestTextToExamples(
                inputs=inputs,
                input_base=input_base,
                output_uri=examples.uri,
                config=config,
                split_names=split_names,
                hash_buckets=hash_buckets,
                num_shards=int(exec_properties[NUM_SHARDS_KEY]),
            )

        examples.split_names = artifact_utils.encode_split_names(split_names)
        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
        example_gen_driver.update_output_artifact(exec_properties, examples.mlmd_artifact)
        self._report_issues(examples)

    @staticmethod
    def _report_issues(examples: types.Artifact) -> None:
        report_path = os.path.join(examples.uri, text_ingestion.INGESTION_REPORT_FILE)
        issues = text_ingestion.read_ingestion_report(report_path)
        by_kind = collections.Counter(issue.kind for issue in issues)
        examples.set_int_custom_property(ISSUE_COUNT_PROPERTY, len(issues))
        examples.set_string_custom_property(ISSUES_BY_KIND_PROPERTY, json.dumps(dict(sorted(by_kind.items()))))
        examples.set_string_custom_property(REPORT_FILE_PROPERTY, text_ingestion.INGESTION_REPORT_FILE)
        if not issues:
            logging.info("Text ingestion found no input problems.")
            return
        logging.warning(
            "Text ingestion found %d input problem(s) %s; all are listed in %s.",
            len(issues),
            dict(by_kind),
            report_path,
        )
        for issue in issues[:_MAX_ISSUES_LOGGED]:
            logging.warning("%s:%d: %s: %s", issue.file, issue.line, issue.kind, issue.detail)
