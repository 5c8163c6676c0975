import keras
import keras_hub
import numpy as np
import pytest

from bert_keras.backbone import ConfigurableBertBackbone, backbone_config

TINY = dict(
    vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16,
    max_sequence_length=10, dropout=0.0,
)


def _inputs(batch=3, length=10, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, length), "int32")
    mask[0, 6:] = 0
    return {
        "token_ids": rng.integers(0, TINY["vocabulary_size"], (batch, length)).astype("int32"),
        "segment_ids": (np.arange(length) >= 5).astype("int32")[None].repeat(batch, 0),
        "padding_mask": mask,
    }


def _outputs(model, x):
    out = model(x, training=False)
    return {k: keras.ops.convert_to_numpy(v) for k, v in out.items()}


def test_is_a_keras_hub_bert_backbone_with_its_weight_layout():
    ours = ConfigurableBertBackbone(**TINY)
    theirs = keras_hub.models.BertBackbone(**TINY)
    assert isinstance(ours, keras_hub.models.BertBackbone)
    assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]
    assert [w.shape for w in ours.weights] == [w.shape for w in theirs.weights]


def test_gelu_approximate_reproduces_keras_hub_and_exact_gelu_differs():
    x = _inputs()
    reference = keras_hub.models.BertBackbone(**TINY)
    # Large weights, so that the GELU variants differ visibly.
    for w in reference.weights:
        w.assign(np.random.default_rng(1).normal(0, 0.5, w.shape).astype("float32"))
    expected = _outputs(reference, x)
    approximate = ConfigurableBertBackbone(**TINY, hidden_activation="gelu_approximate")
    approximate.set_weights(reference.get_weights())
    exact = ConfigurableBertBackbone(**TINY, hidden_activation="gelu")
    exact.set_weights(reference.get_weights())
    np.testing.assert_allclose(_outputs(approximate, x)["sequence_output"],
                               expected["sequence_output"], atol=1e-6)
    assert np.abs(_outputs(exact, x)["sequence_output"] - expected["sequence_output"]).max() > 1e-5
    # What each block's feed-forward layer computes: GELU(1) = 0.5 (1 + erf(1 / sqrt(2))).
    one = np.ones((1,), "float32")
    for block in exact.transformer_layers:
        activation = block._feedforward_intermediate_dense.activation
        np.testing.assert_allclose(keras.ops.convert_to_numpy(activation(one)), [0.8413447], atol=1e-6)
    for block in approximate.transformer_layers:
        activation = block._feedforward_intermediate_dense.activation
        np.testing.assert_allclose(keras.ops.convert_to_numpy(activation(one)), [0.8411920], atol=1e-6)


def test_layer_norm_epsilon_is_applied():
    x = _inputs()
    small = ConfigurableBertBackbone(**TINY)
    large = ConfigurableBertBackbone(**TINY, layer_norm_epsilon=10.0)
    large.set_weights(small.get_weights())
    assert np.abs(_outputs(small, x)["sequence_output"]
                  - _outputs(large, x)["sequence_output"]).max() > 1e-2


@pytest.mark.parametrize("activation", ["gelu", "gelu_approximate", "relu"])
def test_config_round_trip(activation):
    backbone = ConfigurableBertBackbone(**TINY, hidden_activation=activation,
                                        layer_norm_epsilon=1e-5)
    config = backbone.get_config()
    assert config["hidden_activation"] == activation and config["layer_norm_epsilon"] == 1e-5
    clone = ConfigurableBertBackbone.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(backbone.get_weights())
    x = _inputs()
    np.testing.assert_array_equal(_outputs(clone, x)["sequence_output"],
                                  _outputs(backbone, x)["sequence_output"])


def test_keras_file_round_trip(tmp_path):
    backbone = ConfigurableBertBackbone(**TINY, hidden_activation="gelu_approximate")
    path = str(tmp_path / "backbone.keras")
    backbone.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is ConfigurableBertBackbone
    assert loaded.hidden_activation == "gelu_approximate"
    x = _inputs()
    np.testing.assert_array_equal(_outputs(loaded, x)["pooled_output"],
                                  _outputs(backbone, x)["pooled_output"])


def test_backbone_config_spells_out_keras_hub_defaults():
    plain = keras_hub.models.BertBackbone(**TINY)
    config = backbone_config(plain)
    assert config["hidden_activation"] == "gelu_approximate"
    clone = ConfigurableBertBackbone.from_config(config)
    clone.set_weights(plain.get_weights())
    x = _inputs()
    np.testing.assert_allclose(_outputs(clone, x)["sequence_output"],
                               _outputs(plain, x)["sequence_output"], atol=1e-6)


def test_unknown_activation_is_an_error():
    with pytest.raises(ValueError, match="no_such_activation"):
        ConfigurableBertBackbone(**TINY, hidden_activation="no_such_activation")
