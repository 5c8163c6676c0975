"""Transform and Trainer functions of the text-classification pipeline.

Referenced by dotted path (`pipeline.modules.text_classification.preprocessing_fn` and
`.run_fn`), so TFX imports them from the installed package instead of packaging a module
file into a wheel and pip-installing it on every run. `custom_config` carries the settings
and a fingerprint of this package's code, so a code change invalidates the cache.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from pipeline.modules.common import (
    batch_by_length,
    checkpoint_backbone,
    checkpoint_vocabulary,
    compile_and_fit,
    export_precision,
    gzip_records,
    total_training_steps,
)
from serving.text_encoder import BertTextEncoder

TOKEN_FEATURES = ("token_ids", "segment_ids", "padding_mask")


def _encoder(custom_config: dict[str, Any]) -> BertTextEncoder:
    vocabulary = checkpoint_vocabulary(custom_config)
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

    Rows are grouped by length (`batch_by_length`).
    """
    dataset = gzip_records(files, "transformed examples")
    if shuffle:
        dataset = dataset.shuffle(20_000, seed=seed, reshuffle_each_iteration=True)

    def parse(record):
        parsed = tf.io.parse_single_example(record, feature_spec)
        features = {name: tf.cast(parsed[name], tf.int32) for name in TOKEN_FEATURES}
        return features, parsed[label_feature]

    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = batch_by_length(dataset, batch_size, max_seq_length, buckets)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _count_records(files: list[str]) -> int:
    dataset = gzip_records(files, "transformed examples")
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def run_fn(fn_args) -> None:
    """TFX Trainer entry point: warm-start, fine-tune, export the serving SavedModel."""
    import keras
    import tensorflow_transform as tft

    from bert_keras.classifier import build_text_classifier
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

    total_steps = total_training_steps(_count_records(fn_args.train_files), config)

    backbone, vocabulary, _ = checkpoint_backbone(config)
    model = build_text_classifier(
        backbone, num_classes=len(config["classes"]), dropout=config["dropout"],
        pooling=config["pooling"],
    )
    compile_and_fit(
        model,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        {"metrics": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]},
        dataset, fn_args, total_steps,
    )

    encoder = BertTextEncoder(vocabulary, max_len, lower_case=config["lower_case"])
    export_saved_model(
        model, encoder, config["classes"], fn_args.serving_model_dir,
        text_feature=config["text_feature"],
        second_text_feature=config.get("second_text_feature"),
        **export_precision(config),
    )
