"""Helpers shared by the Trainer functions in `pipeline.modules`."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from typing import Any

import tensorflow as tf


def checkpoint_vocabulary(custom_config: dict[str, Any]) -> list[str]:
    """`model.checkpoint`'s WordPiece vocabulary (local, or copied from a URI)."""
    from bert_keras.vocabulary import read_vocabulary
    from pipeline.checkpoint_copy import local_checkpoint

    directory = local_checkpoint(custom_config["checkpoint_dir"], metadata_only=True)
    return read_vocabulary(os.path.join(directory, "vocab.txt"))


def checkpoint_backbone(custom_config: dict[str, Any]):
    """`bert_keras.checkpoint.load_backbone` of `model.checkpoint` (local, or copied from a
    URI): (backbone, vocabulary, lower_case)."""
    from bert_keras.checkpoint import load_backbone
    from pipeline.checkpoint_copy import local_checkpoint

    return load_backbone(local_checkpoint(custom_config["checkpoint_dir"]),
                         dropout=custom_config["dropout"])


def expand_file_patterns(patterns: list[str], what: str) -> list[str]:
    """The sorted files behind TFX's `.../Split-<name>/*` patterns.

    Raises:
        FileNotFoundError: nothing matches; the message names `what` and the patterns.
    """
    files = sorted(f for pattern in patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no {what} match {patterns}")
    return files


def gzip_records(patterns: list[str], what: str) -> tf.data.TFRecordDataset:
    """The records of TFX's GZIP-compressed TFRecord outputs behind `patterns`."""
    return tf.data.TFRecordDataset(expand_file_patterns(patterns, what), compression_type="GZIP")


def batch_by_length(
    dataset: tf.data.Dataset,
    batch_size: int,
    max_seq_length: int,
    buckets: list[int],
    per_token_targets: bool = False,
) -> tf.data.Dataset:
    """Batches `(features, *targets)` rows of `max_seq_length` grouped by length.

    Rows whose `features["padding_mask"]` counts fall in the same bucket (lengths up to each
    of `buckets`, then up to `max_seq_length`) are batched together, and each batch is cut
    to the smallest bucket length that holds its longest row, so a batch of short sentences
    is not padded to the maximum; on SST-2 that makes training several times faster on a
    CPU. With `per_token_targets`, the targets ([batch, seq] labels, weights) are cut too.
    """
    boundaries = [b + 1 for b in sorted(buckets) if b < max_seq_length]
    lengths = tf.constant(sorted({*buckets, max_seq_length}), tf.int32)

    def trim(features, *targets):
        longest = tf.reduce_max(tf.reduce_sum(tf.cast(features["padding_mask"], tf.int32), 1))
        length = tf.reduce_min(tf.boolean_mask(lengths, lengths >= longest))
        features = {name: tensor[:, :length] for name, tensor in features.items()}
        if per_token_targets:
            targets = tuple(target[:, :length] for target in targets)
        return (features, *targets)

    dataset = dataset.bucket_by_sequence_length(
        lambda features, *_: tf.reduce_sum(features["padding_mask"]),
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
    )
    return dataset.map(trim)


def total_training_steps(train_rows: int, config: dict[str, Any]) -> int:
    """Optimizer steps of a run: `epochs` over the data, capped by `max_steps` (0: none).

    Length bucketing can leave one partial batch per bucket, hence the extra steps.
    """
    steps_per_epoch = math.ceil(train_rows / config["batch_size"]) + len(config["length_buckets"])
    total = steps_per_epoch * config["epochs"]
    max_steps = config.get("max_steps")
    return total if max_steps is None else min(total, max_steps)


# Beside `Format-Serving/` in the Trainer's Model artifact: the fine-tuned Keras weights, which
# the next run of the pipeline warm-starts from (`model.warm_start: latest_blessed`). Not
# pushed: TF Serving only needs the SavedModel.
KERAS_WEIGHTS_PATH = os.path.join("Format-Keras", "model.weights.h5")
# In the Trainer's ModelRun artifact: where this run's weights came from, for the report.
WARM_START_FILE = "warm_start.json"


def base_model_weights(fn_args: Any) -> str | None:
    """The Keras weights of the latest blessed model given to the Trainer as `base_model`
    (only with `model.warm_start: latest_blessed`), or None (first run: none blessed yet)."""
    base_model = getattr(fn_args, "base_model", None)
    if not base_model or fn_args.custom_config.get("warm_start") != "latest_blessed":
        return None
    # fn_args.base_model is the blessed artifact's `<uri>/Format-Serving`.
    path = os.path.join(os.path.dirname(base_model.rstrip("/")), KERAS_WEIGHTS_PATH)
    return path if tf.io.gfile.exists(path) else None


def warm_start(model, fn_args: Any) -> dict[str, str]:
    """Loads the latest blessed model's weights into `model` when asked to and possible;
    returns (and writes to the ModelRun artifact) where the weights came from.

    The model was built from `model.checkpoint`, which is also the fallback: on the first run,
    or when the blessed model's weights do not fit (e.g. `data.classes` changed), with a
    warning saying why.
    """
    config = fn_args.custom_config
    source = {"from": "checkpoint", "path": config["checkpoint_dir"]}
    weights = base_model_weights(fn_args)
    if weights is not None:
        local = os.path.join(fn_args.model_run_dir, "base_model.weights.h5")
        os.makedirs(fn_args.model_run_dir, exist_ok=True)
        tf.io.gfile.copy(weights, local, overwrite=True)  # Keras reads local files only
        try:
            model.load_weights(local)
            source = {"from": "latest_blessed", "path": weights}
        except ValueError as error:
            logging.warning("warm start: the latest blessed model's weights (%s) do not fit "
                            "this model (%s); starting from model.checkpoint instead",
                            weights, error)
            source["note"] = f"latest blessed model's weights do not fit: {error}"
        finally:
            os.remove(local)
    elif config.get("warm_start") == "latest_blessed":
        source["note"] = "no blessed model yet"
    logging.info("warm start: %s", source)
    os.makedirs(fn_args.model_run_dir, exist_ok=True)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, WARM_START_FILE), "w") as f:
        json.dump(source, f)
    return source


def save_weights(model, fn_args: Any) -> None:
    """Writes the fine-tuned weights beside the serving SavedModel (KERAS_WEIGHTS_PATH)."""
    model_dir = os.path.dirname(fn_args.serving_model_dir.rstrip("/"))
    path = os.path.join(model_dir, KERAS_WEIGHTS_PATH)
    local = os.path.join(fn_args.model_run_dir, "model.weights.h5")
    os.makedirs(fn_args.model_run_dir, exist_ok=True)
    model.save_weights(local)
    tf.io.gfile.makedirs(os.path.dirname(path))
    tf.io.gfile.copy(local, path, overwrite=True)
    os.remove(local)


def export_precision(custom_config: dict[str, Any]) -> dict[str, Any]:
    """The export functions' `precision` and `jit_compile` arguments: config
    `serving.precision` and `serving.jit_compile` (float32, no XLA when absent)."""
    return {"precision": custom_config.get("serving_precision", "float32"),
            "jit_compile": bool(custom_config.get("serving_jit_compile", False))}


def compile_for_training(
    model, loss, metrics: dict[str, list], config: dict[str, Any], total_steps: int
) -> None:
    """`model.compile` as the Trainer trains: BERT's optimizer (AdamW, linear warm-up then
    linear decay, no decay on biases/LayerNorm) over `total_steps`, in `training.precision`
    (`bert_keras.precision`) and with `training.jit_compile`; the optimizer's variables are
    created here, before the first step (see below). Also used by `bench/finetune_vs_hf.py`.
    """
    from bert_keras.optimization import build_adamw
    from bert_keras.precision import set_precision

    # training.precision: the encoder in bfloat16 or float32, the head in float32; set on
    # the built model's layers (not Keras's global policy), so it also holds for a
    # checkpoint whose stored config names a dtype.
    set_precision(model, config.get("precision", "float32"))
    model.compile(
        optimizer=build_adamw(config["learning_rate"], max(total_steps, 1),
                              config["warmup_fraction"], config["weight_decay"]),
        loss=loss,
        # XLA-compiles the train step (training.jit_compile); Keras turns it off by itself
        # for a model XLA cannot compile. XLA compiles once per input shape: with length
        # buckets that is once per bucket (and per partial batch size).
        jit_compile=bool(config.get("jit_compile", False)),
        **metrics,
    )
    if model.built:
        # Without a distribution strategy, Keras (TensorFlow backend) creates the optimizer's
        # slot variables inside the first trace of the train step, and a tf.function that
        # creates variables is traced a second time: creating them now saves that second
        # trace of the whole train step (the first step's largest cost after Grappler).
        model.optimizer.build(model.trainable_variables)


def compile_and_fit(
    model,
    loss,
    metrics: dict[str, list],
    make_dataset: Callable[[list[str], int, bool], tf.data.Dataset],
    fn_args: Any,
    total_steps: int,
) -> dict[str, list[float]]:
    """Compiles with BERT's optimizer in `training.precision` (`bert_keras.precision`) and
    with `training.jit_compile`, trains `total_steps` steps (none for 0: the
    warm-started model is exported untrained), writes `history.json`; returns the history.

    While it trains, the console shows the live progress and each epoch's metrics, and
    TensorBoard logs go to `fn_args.model_run_dir` (`pipeline.modules.progress`).

    `make_dataset(files, batch_size, shuffle)` builds a split's batches; `metrics` are
    `model.compile` keyword arguments (`metrics=[...]` or `weighted_metrics=[...]`).
    """
    from pipeline.modules.progress import TensorBoardLogs, TrainingProgress, summary_every

    config = fn_args.custom_config
    warm_start(model, fn_args)
    compile_for_training(model, loss, metrics, config, total_steps)
    train = make_dataset(fn_args.train_files, config["batch_size"], True)
    if config.get("max_steps") is not None:
        train, epochs = train.repeat().take(total_steps), 1
    else:
        epochs = config["epochs"]
    logging.info("Training: %d steps", total_steps)
    history = {}
    if total_steps > 0:
        history = model.fit(
            train,
            epochs=epochs,
            validation_data=make_dataset(fn_args.eval_files, config["eval_batch_size"], False),
            # Our progress line on the console replaces Keras's progress bar.
            callbacks=[
                TrainingProgress(total_steps, config["batch_size"]),
                TensorBoardLogs(fn_args.model_run_dir, summary_every(total_steps)),
            ],
            verbose=0,
        ).history
    history = {k: [float(v) for v in vs] for k, vs in history.items()}
    save_weights(model, fn_args)
    os.makedirs(fn_args.model_run_dir, exist_ok=True)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, "history.json"), "w") as f:
        json.dump(history, f)
    return history
