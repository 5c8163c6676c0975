"""PretrainingExampleGen: BERT masked-LM + next-sentence examples (spec + component)."""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.pretraining_examples import executor, pretraining_data
from components.wordpiece_vocab.artifacts import WordpieceVocabulary


class PretrainingExampleGenSpec(ComponentSpec):
    """Parameters, inputs and outputs of PretrainingExampleGen."""

    PARAMETERS = {
        executor.MAX_SEQ_LENGTH_KEY: ExecutionParameter(type=int),
        executor.MAX_PREDICTIONS_PER_SEQ_KEY: ExecutionParameter(type=int),
        executor.MASKED_LM_PROB_KEY: ExecutionParameter(type=float),
        executor.SHORT_SEQ_PROB_KEY: ExecutionParameter(type=float),
        executor.DUPE_FACTOR_KEY: ExecutionParameter(type=int),
        executor.WHOLE_WORD_MASKING_KEY: ExecutionParameter(type=bool),
        executor.RANDOM_SEED_KEY: ExecutionParameter(type=int),
        executor.NUM_SHARDS_KEY: ExecutionParameter(type=int),
    }
    INPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.VOCABULARY_KEY: ChannelParameter(type=WordpieceVocabulary),
    }
    OUTPUTS = {
        executor.PRETRAINING_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema),
    }


class PretrainingExampleGen(base_beam_component.BaseBeamComponent):
    """Generates BERT pretraining examples (masked LM + next sentence prediction).

    Follows Google BERT's create_pretraining_data.py recipe on Beam, with every random
    decision derived from a hash of (seed, document, copy, position): the same seed gives
    byte-identical output whatever the runner's parallelism. See `pretraining_data`.

    Each split of `examples` (TextExampleGen's `doc_id`/`sentences` documents) becomes the
    same split of `pretraining_examples`: GZIP TFRecords of tf.Examples with int64
    `input_ids`, `input_mask`, `segment_ids` [max_seq_length], `masked_lm_positions`,
    `masked_lm_ids` [max_predictions_per_seq], float `masked_lm_weights`
    [max_predictions_per_seq] and `next_sentence_label` [1] (1 = random next), sorted in a
    seeded shuffled order. The `schema` output holds their TFMD schema (schema.pbtxt),
    for Transform/Trainer; a copy sits at the root of `pretraining_examples`.

    Example:
        pretraining_data = PretrainingExampleGen(
            examples=text_gen.outputs["examples"], vocabulary=vocab.outputs["vocabulary"],
            max_seq_length=128, max_predictions_per_seq=20, dupe_factor=10)
        trainer = Trainer(examples=pretraining_data.outputs["pretraining_examples"],
                          schema=pretraining_data.outputs["schema"], ...)

    Outputs:
        pretraining_examples: `standard_artifacts.Examples`.
        schema: `standard_artifacts.Schema`.
    """

    SPEC_CLASS = PretrainingExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        vocabulary: types.BaseChannel,
        *,
        max_seq_length: int = 128,
        max_predictions_per_seq: int = 20,
        masked_lm_prob: float = 0.15,
        short_seq_prob: float = 0.1,
        dupe_factor: int = 10,
        whole_word_masking: bool = False,
        random_seed: int = 12345,
        num_shards: int = 1,
    ):
        """Constructs a PretrainingExampleGen; defaults are Google's.

        Args:
            examples: TextExampleGen's output (documents of sentences), per split.
            vocabulary: a WordpieceVocabulary (WordpieceVocab's output); its lower_case
                flag decides the tokenizer's casing.
            max_seq_length: tokens per example, [CLS] and [SEP]s included.
            max_predictions_per_seq: the most masked positions per example.
            masked_lm_prob: the share of tokens to mask.
            short_seq_prob: the probability that a document copy aims for shorter examples.
            dupe_factor: copies of the corpus, each with different segments and masks.
            whole_word_masking: mask all WordPieces of a word together.
            random_seed: the seed of every random decision.
            num_shards: output files per split; each is sorted in one worker's memory.
        """
        pretraining_data.PretrainingConfig(  # Fail at definition time on bad values.
            max_seq_length=max_seq_length,
            max_predictions_per_seq=max_predictions_per_seq,
            masked_lm_prob=masked_lm_prob,
            short_seq_prob=short_seq_prob,
            dupe_factor=dupe_factor,
            whole_word_masking=whole_word_masking,
            random_seed=random_seed,
        )
        spec = PretrainingExampleGenSpec(
            examples=examples,
            vocabulary=vocabulary,
            max_seq_length=max_seq_length,
            max_predictions_per_seq=max_predictions_per_seq,
            masked_lm_prob=masked_lm_prob,
            short_seq_prob=short_seq_prob,
            dupe_factor=dupe_factor,
            whole_word_masking=whole_word_masking,
            random_seed=random_seed,
            num_shards=num_shards,
            pretraining_examples=types.Channel(type=standard_artifacts.Examples),
            schema=types.Channel(type=standard_artifacts.Schema),
        )
        super().__init__(spec=spec)
