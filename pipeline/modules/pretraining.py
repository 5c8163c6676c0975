"""Trainer function of the pretraining pipeline: masked-LM + next-sentence BERT pretraining.

Training is cut into "epochs" of `checkpoint_every` steps over a repeated dataset, and
`AtomicBackup` saves weights and optimizer state (step counter included) after each, into
one file that is written under a temporary name and renamed: a run killed at any moment,
even during a write, leaves the previous checkpoint whole. The step to resume from is the
optimizer's own step counter in that file, so weights and step cannot disagree. The backup
lives outside the execution's output, under a key derived from the inputs and settings, so
when a run is interrupted and the pipeline is run again, the new Trainer execution resumes
from the last checkpoint instead of starting over.

The output (the Trainer's Model artifact) is an encoder checkpoint in bertpipe's format
(`encoder.json`, `encoder.weights.h5`, `vocab.txt`) plus `pretraining_metrics.json`
(eval metrics before and after, optimizer steps, and what the run actually trained with:
Keras's `jit_compile` and an encoder layer's compute and variable dtypes); the fine-tuning
pipeline warm-starts from it through `bert_keras.checkpoint.load_backbone`.

While it trains, the console shows the live progress (`pipeline.modules.progress`) and a line
per checkpoint; TensorBoard logs go to the Trainer's `model_run` directory.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from typing import Any

import keras
import tensorflow as tf

from pipeline.console import console
from pipeline.modules.common import gzip_records
from pipeline.modules.progress import TensorBoardLogs, TrainingProgress, summary_every

GOOGLE_TO_KERAS = {"input_ids": "token_ids", "input_mask": "padding_mask",
                   "segment_ids": "segment_ids"}
METRICS_FILE = "pretraining_metrics.json"
BACKUP_FILE = "latest.weights.h5"  # weights and optimizer state, step counter included


def _feature_spec(max_seq_length: int, max_predictions: int) -> dict:
    fixed = tf.io.FixedLenFeature
    return {
        "input_ids": fixed([max_seq_length], tf.int64),
        "input_mask": fixed([max_seq_length], tf.int64),
        "segment_ids": fixed([max_seq_length], tf.int64),
        "masked_lm_positions": fixed([max_predictions], tf.int64),
        "masked_lm_ids": fixed([max_predictions], tf.int64),
        "masked_lm_weights": fixed([max_predictions], tf.float32),
        "next_sentence_label": fixed([1], tf.int64),
    }


def make_dataset(files: list[str], config: dict[str, Any], training: bool) -> tf.data.Dataset:
    """Pretraining tf.Examples -> Keras (x, y, sample_weight) batches, int32 features."""
    from bert_keras.pretrainer import split_pretraining_features

    spec = _feature_spec(config["max_seq_length"], config["max_predictions_per_seq"])
    dataset = gzip_records(files, "pretraining examples")
    if training:
        dataset = dataset.shuffle(10_000, seed=config["seed"]).repeat()
    dataset = dataset.batch(config["batch_size"], drop_remainder=training)

    def parse(records):
        parsed = tf.io.parse_example(records, spec)
        features = {GOOGLE_TO_KERAS.get(k, k): v for k, v in parsed.items()}
        features = {k: v if v.dtype == tf.float32 else tf.cast(v, tf.int32)
                    for k, v in features.items()}
        features["next_sentence_label"] = tf.reshape(features["next_sentence_label"], [-1])
        return split_pretraining_features(features)

    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def backup_directory(config: dict[str, Any], examples_uri: str) -> str:
    """A stable directory for training checkpoints of these inputs and settings."""
    key = json.dumps({**config, "examples": examples_uri}, sort_keys=True)
    return os.path.join(config["backup_root"], hashlib.sha256(key.encode()).hexdigest()[:16])


def _examples_root(train_files: list[str]) -> str:
    # .../PretrainingExampleGen/pretraining_examples/<id>/Split-train/*
    return os.path.dirname(train_files[0].rstrip("*").rstrip("/"))


def _build_model(config: dict[str, Any], vocabulary: list[str]):
    from bert_keras.backbone import ConfigurableBertBackbone
    from bert_keras.checkpoint import load_backbone, resolve_checkpoint
    from bert_keras.pretrainer import BertPretrainer

    if config.get("init_checkpoint"):
        backbone, init_vocabulary, _ = load_backbone(
            resolve_checkpoint(config["init_checkpoint"]), dropout=config["dropout"]
        )
        if init_vocabulary != vocabulary:
            raise ValueError(
                f"init_checkpoint {config['init_checkpoint']!r} has another vocabulary than "
                "the pretraining examples: import its vocab.txt in the vocabulary section"
            )
    else:
        backbone = ConfigurableBertBackbone(
            vocabulary_size=len(vocabulary),
            num_layers=config["num_layers"],
            num_heads=config["num_heads"],
            hidden_dim=config["hidden_dim"],
            intermediate_dim=config["intermediate_dim"],
            max_sequence_length=config["max_seq_length"],
            dropout=config["dropout"],
        )
    return backbone, BertPretrainer(backbone)


def _replace_atomically(temporary: str, path: str) -> None:
    """Renames a fully written `temporary` to `path` (one rename: old or new, never half)."""
    with open(temporary, "rb") as f:
        os.fsync(f.fileno())
    os.replace(temporary, path)
    directory = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _write_json_atomically(value: Any, path: str) -> None:
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w") as f:
        json.dump(value, f)
    _replace_atomically(temporary, path)


def restore_backup(model: keras.Model, backup_dir: str) -> int:
    """Loads the last checkpoint in `backup_dir`, if any; returns its optimizer step (0 if
    none). The model must be built; its optimizer is built here so its state loads too."""
    for stale in glob.glob(os.path.join(backup_dir, "saving-*.weights.h5")):
        os.remove(stale)  # a write that a crash cut short; the checkpoint is intact
    path = os.path.join(backup_dir, BACKUP_FILE)
    if not os.path.exists(path):
        return 0
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
    return int(model.optimizer.iterations.numpy())


class AtomicBackup(keras.callbacks.Callback):
    """Saves weights and optimizer state to `<backup_dir>/latest.weights.h5` after each
    epoch: written under a temporary name, then renamed over the previous checkpoint."""

    def __init__(self, backup_dir: str):
        super().__init__()
        self.backup_dir = backup_dir

    def on_epoch_end(self, epoch, logs=None):
        path = os.path.join(self.backup_dir, BACKUP_FILE)
        # save_weights wants the ".weights.h5" ending; the name is unique to this process.
        temporary = os.path.join(self.backup_dir, f"saving-{os.getpid()}.weights.h5")
        self.model.save_weights(temporary, overwrite=True)
        _replace_atomically(temporary, path)


def _precision_report(backbone, features: dict) -> dict:
    """What the encoder computes in and stores its weights in, observed on a batch."""
    layer = backbone.transformer_layers[0]
    inputs = {name: features[name] for name in ("token_ids", "segment_ids", "padding_mask")}
    return {
        "encoder_layer": layer.name,
        "encoder_layer_compute_dtype": layer.compute_dtype,
        "encoder_layer_variable_dtypes": sorted({str(v.dtype) for v in layer.weights}),
        "sequence_output_dtype": keras.backend.standardize_dtype(
            backbone(inputs)["sequence_output"].dtype),
    }


class CheckpointLog(keras.callbacks.Callback):
    """Prints each saved checkpoint's step and metrics on the console (the resume test waits
    for it), through the live progress line's `message` so a terminal's line stays whole."""

    def __init__(self, every: int, progress: TrainingProgress | None = None):
        super().__init__()
        self.every = every
        self.progress = progress

    def on_epoch_end(self, epoch, logs=None):
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items())
        text = f"pretraining: checkpoint saved at step {(epoch + 1) * self.every}: {metrics}"
        if self.progress is not None:
            self.progress.message(text)
        else:
            print(text, file=console(), flush=True)


def run_fn(fn_args) -> None:
    """TFX Trainer entry point: pretrain (or resume), evaluate, write the encoder checkpoint."""
    from bert_keras.checkpoint import save_encoder_checkpoint
    from bert_keras.optimization import build_adamw
    from components.wordpiece_vocab.vocab_learning import read_vocabulary_dir

    config = fn_args.custom_config
    keras.utils.set_random_seed(config["seed"])
    keras.mixed_precision.set_global_policy(config["precision"])
    examples_root = _examples_root(fn_args.train_files)
    vocabulary, lower_case = read_vocabulary_dir(os.path.join(examples_root, "vocabulary"))
    backbone, model = _build_model(config, vocabulary)
    steps, every = config["train_steps"], config["checkpoint_every"]
    model.compile(
        optimizer=build_adamw(config["learning_rate"], steps, config["warmup_fraction"],
                              config["weight_decay"]),
        jit_compile=config["jit_compile"],
    )
    eval_data = make_dataset(fn_args.eval_files, config, training=False).take(
        config["eval_batches"])
    train_data = make_dataset(fn_args.train_files, config, training=True)
    first_batch = next(iter(train_data))[0]
    model(first_batch)  # build, so the checkpoint can load into it

    backup_dir = backup_directory(config, examples_root)
    os.makedirs(backup_dir, exist_ok=True)
    initial_metrics_path = os.path.join(backup_dir, "initial_metrics.json")
    if os.path.exists(initial_metrics_path):
        with open(initial_metrics_path) as f:
            initial = json.load(f)
    else:  # before any checkpoint: the freshly initialized model
        initial = model.evaluate(eval_data, return_dict=True, verbose=0)
        _write_json_atomically(initial, initial_metrics_path)
    resumed_step = restore_backup(model, backup_dir)
    if resumed_step:
        print(f"pretraining: resuming from the checkpoint at step {resumed_step} "
              f"in {backup_dir}", file=console(), flush=True)
    if resumed_step % every:
        raise ValueError(f"the checkpoint in {backup_dir} is at step {resumed_step}, not a "
                         f"multiple of checkpoint_every={every}")
    logging.info("pretraining: %d steps, checkpoint every %d, backup in %s", steps, every,
                 backup_dir)
    # Epochs are checkpoint intervals here: CheckpointLog prints their metrics.
    progress = TrainingProgress(steps, config["batch_size"], label="pretraining",
                                initial_step=resumed_step, epoch_lines=False)
    callbacks = [AtomicBackup(backup_dir), CheckpointLog(every, progress), progress]
    model_run_dir = getattr(fn_args, "model_run_dir", None)  # None: run_fn called directly
    if model_run_dir:
        callbacks.append(TensorBoardLogs(model_run_dir, summary_every(steps),
                                         initial_step=resumed_step))
    model.fit(
        train_data.skip(resumed_step),  # do not train twice on the batches already seen
        steps_per_epoch=every,
        epochs=steps // every,
        initial_epoch=resumed_step // every,
        callbacks=callbacks,
        verbose=0,
    )
    final = model.evaluate(eval_data, return_dict=True, verbose=0)
    trained_steps = int(model.optimizer.iterations.numpy())
    save_encoder_checkpoint(backbone, vocabulary, lower_case, fn_args.serving_model_dir)
    report = {"initial": initial, "final": final, "optimizer_steps": trained_steps,
              "resumed_from_step": resumed_step,
              # As Keras resolved it (it turns XLA off for a model that cannot use it).
              "jit_compile": bool(model.jit_compile),
              **_precision_report(backbone, first_batch)}
    with tf.io.gfile.GFile(os.path.join(fn_args.serving_model_dir, METRICS_FILE), "w") as f:
        json.dump(report, f, indent=2)
    print(f"pretraining: done after {trained_steps} optimizer steps; "
          f"eval before {initial} after {final}", file=console(), flush=True)
