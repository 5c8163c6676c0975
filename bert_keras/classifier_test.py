import keras
import keras_hub
import numpy as np
import pytest

from bert_keras.backbone import ConfigurableBertBackbone
from bert_keras.classifier import build_text_classifier

TINY = dict(
    vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
    max_sequence_length=10, dropout=0.0,
)


def _inputs(batch=6):
    rng = np.random.default_rng(0)
    mask = np.ones((batch, 10), "int32")
    mask[::2, 7:] = 0
    return {
        "token_ids": (rng.integers(5, 30, (batch, 10)) * mask).astype("int32"),
        "segment_ids": np.zeros((batch, 10), "int32"),
        "padding_mask": mask,
    }


def test_outputs_logits_for_the_encoder_inputs():
    keras.utils.set_random_seed(0)
    backbone = ConfigurableBertBackbone(**TINY)
    model = build_text_classifier(backbone, num_classes=3, dropout=0.2)
    assert isinstance(model, keras_hub.models.BertTextClassifier)
    assert model.preprocessor is None and model.backbone is backbone
    assert sorted(model.input) == ["padding_mask", "segment_ids", "token_ids"]
    logits = keras.ops.convert_to_numpy(model(_inputs(), training=False))
    assert logits.shape == (6, 3)
    # Logits, not probabilities: the last layer has no activation.
    assert model.get_layer("logits").activation in (None, keras.activations.linear)
    assert not np.allclose(logits.sum(-1), 1.0)
    # The output layer is logits = pooled_output @ W + b.
    pooled = keras.ops.convert_to_numpy(backbone(_inputs())["pooled_output"])
    kernel, bias = model.get_layer("logits").get_weights()
    np.testing.assert_allclose(logits, pooled @ kernel + bias, atol=1e-5)


def test_keras_file_round_trip(tmp_path):
    model = build_text_classifier(ConfigurableBertBackbone(**TINY), num_classes=2)
    path = str(tmp_path / "classifier.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.backbone, ConfigurableBertBackbone)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(_inputs())), keras.ops.convert_to_numpy(model(_inputs()))
    )


def test_fits_with_sparse_cross_entropy_from_logits():
    keras.utils.set_random_seed(0)
    model = build_text_classifier(ConfigurableBertBackbone(**TINY), num_classes=2, dropout=0.0)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    labels = np.array([0, 1, 0, 1, 0, 1])
    history = model.fit(_inputs(), labels, batch_size=6, epochs=8, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.parametrize("num_classes, dropout", [(1, 0.1), (2, 1.0), (2, -0.1)])
def test_bad_arguments(num_classes, dropout):
    with pytest.raises(ValueError):
        build_text_classifier(ConfigurableBertBackbone(**TINY), num_classes, dropout)


def test_mean_pooling_averages_unpadded_token_vectors(tmp_path):
    keras.utils.set_random_seed(0)
    backbone = ConfigurableBertBackbone(**TINY)
    model = build_text_classifier(backbone, num_classes=3, dropout=0.2, pooling="mean")
    inputs = _inputs()
    logits = keras.ops.convert_to_numpy(model(inputs, training=False))
    sequence = keras.ops.convert_to_numpy(backbone(inputs)["sequence_output"])
    mask = inputs["padding_mask"][..., None].astype("float32")
    mean = (sequence * mask).sum(1) / mask.sum(1)
    kernel, bias = model.get_layer("logits").get_weights()
    np.testing.assert_allclose(logits, mean @ kernel + bias, atol=1e-5)
    # Padded positions do not count: not the plain mean over all 10 positions.
    assert not np.allclose(logits[0], sequence[0].mean(0) @ kernel + bias, atol=1e-3)
    assert not backbone.pooled_dense.trainable  # unused by mean pooling
    assert len(model.trainable_weights) == len(backbone.trainable_weights) + 2
    path = str(tmp_path / "mean.keras")
    model.save(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.saving.load_model(path)(inputs)), logits, atol=1e-6
    )


def test_unknown_pooling():
    with pytest.raises(ValueError, match="pooling must be one of"):
        build_text_classifier(ConfigurableBertBackbone(**TINY), 2, pooling="max")
