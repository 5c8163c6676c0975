"""The pretraining pipeline: raw text -> vocabulary -> masked-LM/NSP examples -> encoder.

TextExampleGen (newest span of plain-text files, one example per document) -> WordpieceVocab
(learned with Beam, or imported) -> PretrainingExampleGen (BERT's recipe on Beam) -> Trainer
(Keras 3 BertPretrainer, resumable) -> AtomicPusher (the encoder checkpoint, versioned under
`encoder_dir`, where a fine-tuning config's `model.checkpoint` can point).
"""

from __future__ import annotations

import dataclasses
import os

from pipeline.config import PretrainConfig
from pipeline.finetune import code_fingerprint

MODULE = "pipeline.modules.pretraining"


def trainer_config(config: PretrainConfig) -> dict:
    return {
        **config.encoder.model_dump(),
        **config.training.model_dump(),
        "max_seq_length": config.examples.max_seq_length,
        "max_predictions_per_seq": config.examples.max_predictions_per_seq,
        "backup_root": os.path.join(config.pipeline.root, "training_backups"),
        "code_fingerprint": code_fingerprint(),
    }


def create_pipeline(config: PretrainConfig, enable_cache: bool | None = None):
    """Builds the TFX pretraining pipeline (imports TFX)."""
    from tfx import v1 as tfx
    from tfx.proto import example_gen_pb2

    from components.atomic_pusher.component import AtomicPusher
    from components.pretraining_examples.component import PretrainingExampleGen
    from components.text_example_gen.component import TextExampleGen
    from components.wordpiece_vocab.component import WordpieceVocab

    eval_buckets = max(1, round(config.text.eval_fraction * 100))
    text_gen = TextExampleGen(
        input_base=config.text.input_dir,
        input_pattern=config.text.input_pattern,
        document_mode=config.text.document_mode,
        document_start_regex=config.text.document_start_regex,
        sentence_splitting=config.text.sentence_splitting,
        max_line_bytes=config.text.max_line_bytes,
        output_config=example_gen_pb2.Output(
            split_config=example_gen_pb2.SplitConfig(
                splits=[
                    example_gen_pb2.SplitConfig.Split(name="train",
                                                      hash_buckets=100 - eval_buckets),
                    example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=eval_buckets),
                ]
            )
        ),
    )
    if config.vocabulary.import_path:
        vocabulary = WordpieceVocab(imported_vocab_path=config.vocabulary.import_path,
                                    lower_case=config.vocabulary.lower_case)
    else:
        vocabulary = WordpieceVocab(examples=text_gen.outputs["examples"],
                                    vocab_size=config.vocabulary.size,
                                    lower_case=config.vocabulary.lower_case)
    pretraining_examples = PretrainingExampleGen(
        examples=text_gen.outputs["examples"],
        vocabulary=vocabulary.outputs["vocabulary"],
        **dataclasses.asdict(config.examples),
    )
    trainer = tfx.components.Trainer(
        run_fn=f"{MODULE}.run_fn",
        examples=pretraining_examples.outputs["pretraining_examples"],
        schema=pretraining_examples.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=trainer_config(config),
    )
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.encoder_dir)
        ),
    )
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline.name,
        pipeline_root=config.pipeline.root,
        components=[text_gen, vocabulary, pretraining_examples, trainer, pusher],
        enable_cache=config.pipeline.enable_cache if enable_cache is None else enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path
        ),
        beam_pipeline_args=list(config.pipeline.beam_args),
    )
