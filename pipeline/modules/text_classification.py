"""Transform and Trainer functions of the text-classification pipeline.

Referenced by dotted path (`pipeline.modules.text_classification.preprocessing_fn` and
`.run_fn`), so TFX imports them from the installed package instead of packaging a module
file into a wheel and pip-installing it on every run. `custom_config` carries the settings
and a fingerprint of this package's code, so a code change invalidates the cache.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

import tensorflow as tf

from bert_keras.vocabulary import read_vocabulary
from pipeline.modules.common import gzip_records
from serving.text_encoder import BertTextEncoder

TOKEN_FEATURES = ("token_ids", "segment_ids", "padding_mask")


def _encoder(custom_config: dict[str, Any]) -> BertTextEncoder:
    vocabulary = read_vocabulary(os.path.join(custom_config["checkpoint_dir"], "vocab.txt"))
    return BertTextEncoder(
        vocabulary, custom_config["max_seq_length"], lower_case=custom_config["lower_case"]
    )


def preprocessing_fn(inputs: dict[str, tf.Tensor], custom_config: dict[str, Any]) -> dict:
    """Raw text + label -> fixed-length WordPiece ids, segment ids, padding mask, label."""
    encoder = _encoder(custom_config)
    texts = tf.reshape(inputs[custom_config["text_feature"]], [-1])
    second = custom_config.get("second_text_feature")
    second_texts = tf.reshape(inputs[second], [-1]) if second else None
    encoded = encoder(texts, second_texts)
    outputs = {name: tf.cast(encoded[name], tf.int64) for name in TOKEN_FEATURES}
    label = custom_config["label_feature"]
    outputs[label] = tf.reshape(tf.cast(inputs[label], tf.int64), [-1])
    return outputs


def _trim_batch(features: dict, label: tf.Tensor, buckets: list[int], max_len: int):
    """Cuts a batch to the smallest bucket length that holds its longest row."""
    longest = tf.reduce_max(tf.reduce_sum(features["padding_mask"], axis=1))
    candidates = tf.constant(sorted({*buckets, max_len}), dtype=longest.dtype)
    length = tf.reduce_min(tf.boolean_mask(candidates, candidates >= longest))
    return {name: tensor[:, :length] for name, tensor in features.items()}, label


def make_dataset(
    files: list[str],
    feature_spec: dict,
    label_feature: str,
    batch_size: int,
    max_seq_length: int,
    buckets: list[int],
    shuffle: bool,
    seed: int,
) -> tf.data.Dataset:
    """Transformed tf.Examples -> ({token_ids, segment_ids, padding_mask} int32, label).

    Rows are grouped by length so a batch of short sentences is not padded to the maximum;
    on SST-2 that makes training several times faster on a CPU.
    """
    dataset = gzip_records(files, "transformed examples")
    if shuffle:
        dataset = dataset.shuffle(20_000, seed=seed, reshuffle_each_iteration=True)

    def parse(record):
        parsed = tf.io.parse_single_example(record, feature_spec)
        features = {name: tf.cast(parsed[name], tf.int32) for name in TOKEN_FEATURES}
        return features, parsed[label_feature]

    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    boundaries = [b + 1 for b in sorted(buckets) if b < max_seq_length]
    dataset = dataset.bucket_by_sequence_length(
        lambda features, _: tf.reduce_sum(features["padding_mask"]),
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
    )
    dataset = dataset.map(lambda f, y: _trim_batch(f, y, buckets, max_seq_length))
    return dataset.prefetch(tf.data.AUTOTUNE)


def _count_records(files: list[str]) -> int:
    dataset = gzip_records(files, "transformed examples")
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def run_fn(fn_args) -> None:
    """TFX Trainer entry point: warm-start, fine-tune, export the serving SavedModel."""
    import keras
    import tensorflow_transform as tft

    from bert_keras.checkpoint import load_backbone
    from bert_keras.classifier import build_text_classifier
    from bert_keras.optimization import build_adamw
    from serving.export import export_saved_model

    config = fn_args.custom_config
    keras.utils.set_random_seed(config["seed"])
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    feature_spec = tft_output.transformed_feature_spec()
    max_len = config["max_seq_length"]

    def dataset(files, batch_size, shuffle):
        return make_dataset(
            files, feature_spec, config["label_feature"], batch_size, max_len,
            config["length_buckets"], shuffle, config["seed"],
        )

    train_rows = _count_records(fn_args.train_files)
    steps_per_epoch = math.ceil(train_rows / config["batch_size"]) + len(config["length_buckets"])
    total_steps = steps_per_epoch * config["epochs"]
    max_steps = config.get("max_steps")
    if max_steps is not None:  # 0 exports the warm-started model untrained (a baseline)
        total_steps = min(total_steps, max_steps)

    backbone, vocabulary, _ = load_backbone(config["checkpoint_dir"], dropout=config["dropout"])
    model = build_text_classifier(
        backbone, num_classes=len(config["classes"]), dropout=config["dropout"],
        pooling=config["pooling"],
    )
    model.compile(
        # BERT's recipe: AdamW, linear warm-up then linear decay, no decay on biases/LayerNorm.
        optimizer=build_adamw(config["learning_rate"], max(total_steps, 1),
                              config["warmup_fraction"], config["weight_decay"]),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    train = dataset(fn_args.train_files, config["batch_size"], shuffle=True)
    if max_steps is not None:
        train, epochs = train.repeat().take(total_steps), 1
    else:
        epochs = config["epochs"]
    logging.info("Training on %d rows: %d steps", train_rows, total_steps)
    history = {}
    if total_steps > 0:
        history = model.fit(
            train,
            epochs=epochs,
            validation_data=dataset(fn_args.eval_files, config["eval_batch_size"],
                                    shuffle=False),
            verbose=2,
        ).history
    os.makedirs(fn_args.model_run_dir, exist_ok=True)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, "history.json"), "w") as f:
        json.dump({k: [float(v) for v in vs] for k, vs in history.items()}, f)

    encoder = BertTextEncoder(vocabulary, max_len, lower_case=config["lower_case"])
    export_saved_model(
        model, encoder, config["classes"], fn_args.serving_model_dir,
        text_feature=config["text_feature"],
        second_text_feature=config.get("second_text_feature"),
    )
