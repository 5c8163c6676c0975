"""WordpieceVocab: learns or imports a BERT WordPiece vocabulary (spec + component)."""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.wordpiece_vocab import executor, vocab_learning
from components.wordpiece_vocab.artifacts import WordpieceVocabulary


class WordpieceVocabSpec(ComponentSpec):
    """Parameters, inputs and outputs of WordpieceVocab."""

    PARAMETERS = {
        executor.VOCAB_SIZE_KEY: ExecutionParameter(type=int),
        executor.LOWER_CASE_KEY: ExecutionParameter(type=bool),
        executor.RESERVED_TOKENS_KEY: ExecutionParameter(type=list[str]),
        executor.LEARN_FROM_SPLITS_KEY: ExecutionParameter(type=list[str]),
        executor.IMPORTED_VOCAB_PATH_KEY: ExecutionParameter(type=str, optional=True),
        executor.IMPORTED_VOCAB_SHA256_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
    }
    OUTPUTS = {
        executor.VOCABULARY_KEY: ChannelParameter(type=WordpieceVocabulary),
    }


class WordpieceVocab(base_beam_component.BaseBeamComponent):
    """Learns a WordPiece vocabulary from text examples, or passes an imported one through.

    Learning runs tf-text's WordPiece learner (the `bert_vocab_from_dataset` algorithm) on
    word counts computed with Beam from TextExampleGen's `sentences`. Importing copies a
    BERT vocab.txt byte for byte. Either way the output is a `WordpieceVocabulary`
    directory with `vocab.txt` and `vocab_config.json` (lower_case, vocab_size, source).

    Example:
        vocab = WordpieceVocab(examples=text_gen.outputs["examples"], vocab_size=30522)
        # or
        vocab = WordpieceVocab(imported_vocab_path=".../vocab.txt", lower_case=True)
        vocab.outputs["vocabulary"]

    Outputs:
        vocabulary: `WordpieceVocabulary`.
    """

    SPEC_CLASS = WordpieceVocabSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel | None = None,
        *,
        vocab_size: int = 30522,
        lower_case: bool = True,
        reserved_tokens: list[str] | tuple[str, ...] = vocab_learning.DEFAULT_RESERVED_TOKENS,
        learn_from_splits: list[str] | tuple[str, ...] = ("train",),
        imported_vocab_path: str | None = None,
    ):
        """Constructs a WordpieceVocab.

        Args:
            examples: TextExampleGen's output to learn from; leave out when importing.
            vocab_size: the most tokens to learn (reserved tokens included).
            lower_case: learn an uncased vocabulary; when importing, whether the imported
                vocabulary is uncased (recorded for the tokenizer downstream).
            reserved_tokens: tokens that come first, in order ([PAD] first gives it id 0).
            learn_from_splits: the splits whose text is learned from.
            imported_vocab_path: a BERT vocab.txt to pass through instead of learning.
                Its SHA-256 is recorded now, so that the cache notices a changed file and
                the run fails if the file changes between definition and run.
        """
        if (examples is None) == (imported_vocab_path is None):
            raise ValueError("give exactly one of `examples` (to learn) or `imported_vocab_path`")
        imported_vocab_sha256 = None
        if imported_vocab_path is not None:
            imported_vocab_sha256 = executor.file_sha256(imported_vocab_path)
        else:
            vocab_learning.VocabLearningConfig(
                vocab_size=vocab_size, lower_case=lower_case, reserved_tokens=tuple(reserved_tokens)
            )
        spec = WordpieceVocabSpec(
            examples=examples,
            vocab_size=vocab_size,
            lower_case=lower_case,
            reserved_tokens=list(reserved_tokens),
            learn_from_splits=list(learn_from_splits),
            imported_vocab_path=imported_vocab_path,
            imported_vocab_sha256=imported_vocab_sha256,
            vocabulary=types.Channel(type=WordpieceVocabulary),
        )
        super().__init__(spec=spec)
