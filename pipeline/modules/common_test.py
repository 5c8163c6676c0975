"""pipeline.modules.common.batch_by_length: rows batched by length and cut to their bucket."""

import tensorflow as tf

from pipeline.modules.common import batch_by_length


def _rows(lengths, max_len=16):
    masks = [[1] * n + [0] * (max_len - n) for n in lengths]
    features = {"token_ids": tf.constant(masks) * 7, "padding_mask": tf.constant(masks)}
    labels = tf.constant([[n] * max_len for n in lengths])
    return tf.data.Dataset.from_tensor_slices((features, labels, tf.constant(lengths)))


def test_rows_of_one_bucket_are_batched_and_cut_to_it():
    batches = list(batch_by_length(_rows([3, 10, 4, 12, 2, 16]), 2, 16, [4, 8]))
    seen = []
    for features, labels, lengths in batches:
        width = features["token_ids"].shape[1]
        longest = int(tf.reduce_max(lengths))
        # The smallest of 4, 8, 16 that holds the batch's longest row.
        assert width == min(b for b in (4, 8, 16) if b >= longest)
        assert features["padding_mask"].shape[1] == width
        assert labels.shape[1] == 16  # not per-token targets: left alone
        assert all((n <= 4) == (longest <= 4) for n in lengths.numpy())  # one bucket
        seen += lengths.numpy().tolist()
    assert sorted(seen) == [2, 3, 4, 10, 12, 16]


def test_per_token_targets_are_cut_with_the_features():
    rows = _rows([3, 2, 4]).map(lambda features, labels, _: (features, labels, labels * 0))
    batches = list(batch_by_length(rows, 4, 16, [4, 8], per_token_targets=True))
    (features, labels, weights), = batches
    assert features["token_ids"].shape == labels.shape == weights.shape == (3, 4)
    assert labels.numpy()[:, 0].tolist() == [3, 2, 4]


def _tiny_training(tmp_path, rows: int, length: int, pooling: str = "cls", **training):
    """A 1-layer BERT classifier, `rows` random rows of `length` tokens, the Trainer's
    `make_dataset` over them and its fn_args (training config plus `training`)."""
    import types

    import keras
    import numpy as np

    from bert_keras.backbone import ConfigurableBertBackbone
    from bert_keras.classifier import build_text_classifier

    keras.utils.set_random_seed(0)
    backbone = ConfigurableBertBackbone(vocabulary_size=50, num_layers=1, num_heads=2,
                                        hidden_dim=16, intermediate_dim=32,
                                        max_sequence_length=12)
    model = build_text_classifier(backbone, num_classes=2, pooling=pooling)
    features = {"token_ids": np.random.randint(5, 50, (rows, length)).astype("int32"),
                "segment_ids": np.zeros((rows, length), "int32"),
                "padding_mask": np.ones((rows, length), "int32")}
    labels = np.random.randint(0, 2, rows)

    def make_dataset(files, batch_size, shuffle):
        return tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch_size)

    config = {"batch_size": 4, "eval_batch_size": 8, "epochs": 1, "learning_rate": 1e-3,
              "warmup_fraction": 0.1, "weight_decay": 0.01, "checkpoint_dir": "unused",
              **training}
    fn_args = types.SimpleNamespace(custom_config=config, train_files=[], eval_files=[],
                                    model_run_dir=str(tmp_path / "model_run"),
                                    serving_model_dir=str(tmp_path / "model" / "Format-Serving"))
    return model, backbone, features, make_dataset, fn_args


def test_compile_and_fit_trains_in_the_configured_precision_and_compilation(tmp_path):
    """training.precision mixed_bfloat16: the encoder computes in bfloat16, the head in
    float32, the weights stay float32; training.jit_compile: Keras compiles the train step
    with XLA. A tiny BERT classifier, 4 steps."""
    import keras
    import numpy as np

    from pipeline.modules.common import compile_and_fit

    model, backbone, features, make_dataset, fn_args = _tiny_training(
        tmp_path, 16, 12, pooling="mean", precision="mixed_bfloat16", jit_compile=True)
    history = compile_and_fit(model, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              {"metrics": ["accuracy"]}, make_dataset, fn_args, 4)
    assert np.isfinite(history["loss"]).all()
    assert model.jit_compile is True
    assert backbone.compute_dtype == "bfloat16"
    assert backbone.transformer_layers[0].compute_dtype == "bfloat16"
    assert model.get_layer("logits").compute_dtype == "float32"
    assert {v.dtype for v in model.weights} == {"float32"}
    sequence = backbone({name: value[:2] for name, value in features.items()})["sequence_output"]
    assert sequence.dtype == "bfloat16"


def test_compile_and_fit_traces_the_train_step_once(tmp_path):
    """The optimizer's variables exist before fit, so Keras's first trace of the train step
    creates none and TensorFlow does not trace it a second time. (Metric objects, as the task
    modules pass, create theirs when constructed; a metric named by a string would still
    create its variables in the first trace.)"""
    import keras

    from pipeline.modules.common import compile_and_fit

    model, _, _, make_dataset, fn_args = _tiny_training(tmp_path, 12, 8)
    traces = []
    train_step = model.train_step

    def counting_train_step(data):
        traces.append(1)  # runs when traced, not per step
        return train_step(data)

    model.train_step = counting_train_step
    compile_and_fit(model, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    {"metrics": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]},
                    make_dataset, fn_args, 3)
    assert model.optimizer.iterations.numpy() == 3
    assert len(traces) == 1
