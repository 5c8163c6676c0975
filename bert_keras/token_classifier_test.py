import keras
import numpy as np
import pytest

from bert_keras.backbone import ConfigurableBertBackbone
from bert_keras.token_classifier import (
    BertTokenClassifier,
    build_token_classifier,
    token_classification_loss,
)

TINY = dict(
    vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
    max_sequence_length=10, dropout=0.0,
)


def _inputs(batch=6, length=10):
    rng = np.random.default_rng(0)
    mask = np.ones((batch, length), "int32")
    mask[::2, 7:] = 0
    return {
        "token_ids": (rng.integers(5, 30, (batch, length)) * mask).astype("int32"),
        "segment_ids": np.zeros((batch, length), "int32"),
        "padding_mask": mask,
    }


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_outputs_per_token_logits_of_the_sequence_output():
    keras.utils.set_random_seed(0)
    backbone = ConfigurableBertBackbone(**TINY)
    model = build_token_classifier(backbone, num_labels=5, dropout=0.2)
    assert isinstance(model, BertTokenClassifier) and model.backbone is backbone
    assert sorted(model.input) == ["padding_mask", "segment_ids", "token_ids"]
    inputs = _inputs()
    logits = _numpy(model(inputs, training=False))
    assert logits.shape == (6, 10, 5)
    sequence = _numpy(backbone(inputs)["sequence_output"])
    kernel, bias = model.get_layer("logits").get_weights()
    np.testing.assert_allclose(logits, sequence @ kernel + bias, atol=1e-5)
    # Any length up to the backbone's maximum (serving pads per batch).
    assert _numpy(model(_inputs(2, 8))).shape == (2, 8, 5)
    # The unused [CLS] pooler is frozen: the backbone's other weights plus kernel and bias.
    assert not backbone.pooled_dense.trainable
    assert len(model.trainable_weights) == len(backbone.trainable_weights) + 2


def test_keras_file_and_config_round_trip(tmp_path):
    model = build_token_classifier(ConfigurableBertBackbone(**TINY), num_labels=3, dropout=0.3)
    config = model.get_config()
    assert (config["num_labels"], config["dropout"]) == (3, 0.3)
    path = str(tmp_path / "token_classifier.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, BertTokenClassifier)
    assert isinstance(loaded.backbone, ConfigurableBertBackbone)
    assert (loaded.num_labels, loaded.dropout) == (3, 0.3)
    np.testing.assert_array_equal(_numpy(loaded(_inputs())), _numpy(model(_inputs())))


def test_loss_is_the_mean_over_weighted_positions_only():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 6, 4)).astype("float32")
    labels = rng.integers(0, 4, (2, 6)).astype("int32")
    weights = np.zeros((2, 6), "float32")
    weights[0, [1, 2]] = 1.0
    weights[1, [1, 4]] = 1.0
    loss = float(_numpy(token_classification_loss()(labels, logits, sample_weight=weights)))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    assert loss == pytest.approx((ce * weights).sum() / weights.sum(), rel=1e-5)
    # Whatever sits at weight-0 positions (labels or logits) does not change the loss.
    changed_labels, changed_logits = labels.copy(), logits.copy()
    changed_labels[weights == 0] = 3
    changed_logits[weights == 0] = 100.0
    again = token_classification_loss()(changed_labels, changed_logits, sample_weight=weights)
    assert float(_numpy(again)) == pytest.approx(loss, rel=1e-6)


def test_fits_on_first_piece_labels():
    keras.utils.set_random_seed(0)
    model = build_token_classifier(ConfigurableBertBackbone(**TINY), num_labels=3, dropout=0.0)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=token_classification_loss(),
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    inputs = _inputs()
    labels = (inputs["token_ids"] % 3).astype("int32")
    weights = inputs["padding_mask"].astype("float32")
    weights[:, 0] = 0.0
    history = model.fit(inputs, labels, sample_weight=weights, batch_size=6, epochs=10,
                        verbose=0).history
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.parametrize("num_labels, dropout", [(1, 0.1), (3, 1.0), (3, -0.1)])
def test_bad_arguments(num_labels, dropout):
    with pytest.raises(ValueError):
        build_token_classifier(ConfigurableBertBackbone(**TINY), num_labels, dropout)
