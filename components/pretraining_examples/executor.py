"""PretrainingExampleGen executor: runs `pretraining_data.GeneratePretrainingExamples`.

While it runs, the console shows the documents read and the examples made so far per split
(`pipeline.beam_progress`: a line every 10 s per worker process), and at the end the totals
over all workers.
"""

from __future__ import annotations

import os
import time
from typing import Any

from absl import logging
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components import common
from components.pretraining_examples import pretraining_data
from components.wordpiece_vocab import vocab_learning
from pipeline.beam_progress import rows_counted
from pipeline.console import console

# Channel keys.
EXAMPLES_KEY = "examples"
VOCABULARY_KEY = "vocabulary"
PRETRAINING_EXAMPLES_KEY = "pretraining_examples"
SCHEMA_KEY = "schema"
# Execution property keys.
MAX_SEQ_LENGTH_KEY = "max_seq_length"
MAX_PREDICTIONS_PER_SEQ_KEY = "max_predictions_per_seq"
MASKED_LM_PROB_KEY = "masked_lm_prob"
SHORT_SEQ_PROB_KEY = "short_seq_prob"
DUPE_FACTOR_KEY = "dupe_factor"
WHOLE_WORD_MASKING_KEY = "whole_word_masking"
RANDOM_SEED_KEY = "random_seed"
NUM_SHARDS_KEY = "num_shards"
VOCABULARY_SUBDIR = "vocabulary"


def config_from_exec_properties(exec_properties: dict[str, Any]) -> pretraining_data.PretrainingConfig:
    return pretraining_data.PretrainingConfig(
        max_seq_length=int(exec_properties[MAX_SEQ_LENGTH_KEY]),
        max_predictions_per_seq=int(exec_properties[MAX_PREDICTIONS_PER_SEQ_KEY]),
        masked_lm_prob=float(exec_properties[MASKED_LM_PROB_KEY]),
        short_seq_prob=float(exec_properties[SHORT_SEQ_PROB_KEY]),
        dupe_factor=int(exec_properties[DUPE_FACTOR_KEY]),
        whole_word_masking=bool(exec_properties[WHOLE_WORD_MASKING_KEY]),
        random_seed=int(exec_properties[RANDOM_SEED_KEY]),
    )


def progress_label(split: str) -> str:
    """The progress lines' first words for a split: `pretraining examples (train)`."""
    return f"pretraining examples ({split})"


def rows_summary(result: Any, splits: list[str], seconds: float) -> str:
    """The final line, totals over all Beam workers: `pretraining examples: train: 120
    documents -> 2,345 examples; eval: 12 documents -> 230 examples (in 14 s)`."""
    parts = []
    for split in splits:
        label = progress_label(split)
        parts.append(f"{split}: {rows_counted(result, f'{label} documents'):,} documents -> "
                     f"{rows_counted(result, f'{label} examples'):,} examples")
    return f"pretraining examples: {'; '.join(parts)} (in {seconds:.0f} s)"


class Executor(base_beam_executor.BaseBeamExecutor):
    """Turns each split of text documents into BERT pretraining examples."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        config = config_from_exec_properties(exec_properties)
        documents = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        vocabulary_dir = artifact_utils.get_single_uri(input_dict[VOCABULARY_KEY])
        output = artifact_utils.get_single_instance(output_dict[PRETRAINING_EXAMPLES_KEY])
        schema_uri = artifact_utils.get_single_uri(output_dict[SCHEMA_KEY])
        tokens, lower_case = vocab_learning.read_vocabulary_dir(vocabulary_dir)
        splits = artifact_utils.decode_split_names(documents.split_names)
        num_shards = int(exec_properties[NUM_SHARDS_KEY])

        logging.info("Generating pretraining examples for splits %s with %s.", splits, config)
        started = time.monotonic()
        with self._make_beam_pipeline() as pipeline:
            for split in splits:
                _ = pipeline | f"Generate[{split}]" >> pretraining_data.GeneratePretrainingExamples(
                    input_file_pattern=os.path.join(common.split_dir(documents.uri, split), "*"),
                    output_dir=common.split_dir(output.uri, split),
                    vocabulary=tokens,
                    lower_case=lower_case,
                    config=config,
                    num_shards=num_shards,
                    progress_label=progress_label(split),
                )
        print(rows_summary(pipeline.result, splits, time.monotonic() - started), file=console(),
              flush=True)

        # The schema goes to the Schema artifact (for Transform/Trainer) and, for people and
        # tools that only get the examples, next to the splits too.
        pretraining_data.write_schema(config, schema_uri)
        pretraining_data.write_schema(config, output.uri)
        # The ids mean nothing without their vocabulary: keep it with the examples, where a
        # Trainer (whose inputs are examples and schema) finds it.
        io_utils.copy_dir(vocabulary_dir, os.path.join(output.uri, VOCABULARY_SUBDIR))
        output.split_names = artifact_utils.encode_split_names(splits)
        examples_utils.set_payload_format(output, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(output, "tfrecords_gzip")
        for key in (
            MAX_SEQ_LENGTH_KEY,
            MAX_PREDICTIONS_PER_SEQ_KEY,
            DUPE_FACTOR_KEY,
            RANDOM_SEED_KEY,
        ):
            output.set_int_custom_property(key, int(exec_properties[key]))
        output.set_int_custom_property(WHOLE_WORD_MASKING_KEY, int(config.whole_word_masking))
