"""WordpieceVocab executor: learns a vocabulary on Beam, or imports one."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from bert_keras.vocabulary import read_vocabulary
from components import common
from components.wordpiece_vocab import vocab_learning

# Channel and execution property keys.
EXAMPLES_KEY = "examples"
VOCABULARY_KEY = "vocabulary"
VOCAB_SIZE_KEY = "vocab_size"
LOWER_CASE_KEY = "lower_case"
RESERVED_TOKENS_KEY = "reserved_tokens"
LEARN_FROM_SPLITS_KEY = "learn_from_splits"
IMPORTED_VOCAB_PATH_KEY = "imported_vocab_path"
IMPORTED_VOCAB_SHA256_KEY = "imported_vocab_sha256"

# Custom properties of the output artifact.
LOWER_CASE_PROPERTY = "lower_case"
VOCAB_SIZE_PROPERTY = "vocab_size"
SOURCE_PROPERTY = "source"


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes (any TF filesystem)."""
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Executor(base_beam_executor.BaseBeamExecutor):
    """Writes a WordpieceVocabulary: learned from `examples`, or the imported vocab.txt."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        vocabulary = artifact_utils.get_single_instance(output_dict[VOCABULARY_KEY])
        lower_case = bool(exec_properties[LOWER_CASE_KEY])
        if exec_properties.get(IMPORTED_VOCAB_PATH_KEY):
            self._import(exec_properties, vocabulary.uri, lower_case)
        else:
            self._learn(input_dict, exec_properties, vocabulary.uri, lower_case)
        tokens, _ = vocab_learning.read_vocabulary_dir(vocabulary.uri)
        source = vocab_learning.read_vocabulary_config(vocabulary.uri)["source"]
        vocabulary.set_int_custom_property(LOWER_CASE_PROPERTY, int(lower_case))
        vocabulary.set_int_custom_property(VOCAB_SIZE_PROPERTY, len(tokens))
        vocabulary.set_string_custom_property(SOURCE_PROPERTY, source)
        logging.info("Wrote a %s vocabulary of %d tokens to %s.", source, len(tokens), vocabulary.uri)

    @staticmethod
    def _import(exec_properties: dict[str, Any], output_uri: str, lower_case: bool) -> None:
        path = exec_properties[IMPORTED_VOCAB_PATH_KEY]
        expected_sha256 = exec_properties.get(IMPORTED_VOCAB_SHA256_KEY)
        if expected_sha256 and file_sha256(path) != expected_sha256:
            # The component recorded the file's hash when the pipeline was defined, and the
            # cache trusts it: a file changed since must not pass silently.
            raise ValueError(f"{path} changed since the pipeline was defined (its SHA-256 differs)")
        tokens = read_vocabulary(path)
        vocab_learning.validate_vocabulary(tokens)
        tf.io.gfile.makedirs(output_uri)
        # Copied byte for byte: the imported file stays the source of truth.
        tf.io.gfile.copy(path, os.path.join(output_uri, vocab_learning.VOCAB_FILE), overwrite=True)
        vocab_learning.write_vocabulary_config(output_uri, len(tokens), lower_case, vocab_learning.SOURCE_IMPORTED)

    def _learn(
        self,
        input_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
        output_uri: str,
        lower_case: bool,
    ) -> None:
        if not input_dict.get(EXAMPLES_KEY):
            raise ValueError("WordpieceVocab needs `examples` to learn from, or an imported vocab path")
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        available = artifact_utils.decode_split_names(examples.split_names)
        splits = list(exec_properties.get(LEARN_FROM_SPLITS_KEY) or ["train"])
        unknown = sorted(set(splits) - set(available))
        if unknown:
            raise ValueError(f"splits {unknown} are not in the examples, which have {available}")
        config = vocab_learning.VocabLearningConfig(
            vocab_size=int(exec_properties[VOCAB_SIZE_KEY]),
            lower_case=lower_case,
            reserved_tokens=tuple(exec_properties[RESERVED_TOKENS_KEY]),
        )
        patterns = [os.path.join(common.split_dir(examples.uri, split), "*") for split in splits]
        logging.info("Learning a vocabulary of up to %d tokens from %s.", config.vocab_size, patterns)
        with self._make_beam_pipeline() as pipeline:
            _ = pipeline | "LearnVocabulary" >> vocab_learning.LearnVocabularyFromTextExamples(
                patterns, config, output_uri
            )
