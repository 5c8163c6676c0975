import keras
import numpy as np

from bert_keras.backbone import ConfigurableBertBackbone
from bert_keras.pretrainer import BertPretrainer, split_pretraining_features

VOCAB, HIDDEN, SEQ, PREDICTIONS, BATCH = 40, 16, 12, 4, 8
TINY = dict(
    vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=HIDDEN, intermediate_dim=32,
    max_sequence_length=SEQ, dropout=0.0,
)


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return BertPretrainer(ConfigurableBertBackbone(**TINY))


def _features(seed=0, google_names=False):
    """A batch of pretraining examples; token 39 never occurs in it."""
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(5, VOCAB - 1, (BATCH, SEQ)).astype("int32")
    mask = np.ones((BATCH, SEQ), "int32")
    mask[::2, 9:] = 0
    token_ids *= mask
    positions = np.stack([rng.choice(8, PREDICTIONS, replace=False) + 1 for _ in range(BATCH)])
    weights = np.ones((BATCH, PREDICTIONS), "float32")
    weights[:, 3] = 0.0  # one padded prediction slot per example
    positions[:, 3] = 0
    ids = np.take_along_axis(token_ids, positions, axis=1).astype("int32")
    ids[:, 3] = 0
    features = {
        "token_ids": token_ids,
        "segment_ids": ((np.arange(SEQ) >= 5)[None] * mask).astype("int32"),
        "padding_mask": mask,
        "masked_lm_positions": positions.astype("int32"),
        "masked_lm_ids": ids,
        "masked_lm_weights": weights,
        "next_sentence_label": rng.integers(0, 2, (BATCH,)).astype("int32"),
    }
    if google_names:
        features["input_ids"] = features.pop("token_ids")
        features["input_mask"] = features.pop("padding_mask")
        features["next_sentence_label"] = features["next_sentence_label"][:, None]
    return features


def _numpy(outputs):
    return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}


def test_output_shapes():
    model = _model()
    x, _, _ = split_pretraining_features(_features())
    outputs = _numpy(model(x))
    assert outputs["mlm_logits"].shape == (BATCH, PREDICTIONS, VOCAB)
    assert outputs["nsp_logits"].shape == (BATCH, 2)


def test_masked_lm_head_is_tied_to_the_token_embedding():
    model = _model()
    embedding = model.backbone.token_embedding.embeddings
    head = model.masked_lm_head
    # The head has no [vocab, hidden] / [hidden, vocab] kernel of its own: its only
    # vocabulary-sized weights are the backbone's embedding itself and a [vocab] bias.
    own = [w for w in head.weights if w.path != embedding.path]
    assert sorted(tuple(w.shape) for w in own) == sorted(
        [(HIDDEN, HIDDEN), (HIDDEN,), (HIDDEN,), (HIDDEN,), (VOCAB,)]
    )
    backbone_size = sum(int(np.prod(w.shape)) for w in model.backbone.weights)
    head_size = HIDDEN * HIDDEN + 3 * HIDDEN + VOCAB
    nsp_size = 2 * HIDDEN + 2
    assert len({w.path for w in model.weights}) == len(model.weights)
    assert sum(int(np.prod(w.shape)) for w in model.weights) == backbone_size + head_size + nsp_size

    # Changing the embedding row of a token absent from the inputs leaves the encoder's
    # output alone but changes exactly that token's MLM logits.
    x, _, _ = split_pretraining_features(_features())
    unused = VOCAB - 1
    assert not (x["token_ids"] == unused).any()
    before = _numpy(model(x))
    table = keras.ops.convert_to_numpy(embedding)
    table[unused] += np.random.default_rng(1).normal(0, 1.0, HIDDEN)
    embedding.assign(table)
    after = _numpy(model(x))
    np.testing.assert_array_equal(after["nsp_logits"], before["nsp_logits"])
    np.testing.assert_array_equal(after["mlm_logits"][..., :unused], before["mlm_logits"][..., :unused])
    assert np.abs(after["mlm_logits"][..., unused] - before["mlm_logits"][..., unused]).min() > 1e-4


def test_config_and_keras_file_round_trip(tmp_path):
    model = _model()
    x, _, _ = split_pretraining_features(_features())
    expected = _numpy(model(x))
    clone = BertPretrainer.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    for key, value in _numpy(clone(x)).items():
        np.testing.assert_array_equal(value, expected[key])
    path = str(tmp_path / "pretrainer.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, BertPretrainer)
    assert loaded.masked_lm_head.token_embedding is loaded.backbone.token_embedding
    for key, value in _numpy(loaded(x)).items():
        np.testing.assert_array_equal(value, expected[key])


def _cross_entropy(logits, labels):
    logits = logits - logits.max(-1, keepdims=True)
    log_probabilities = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(log_probabilities, labels[..., None], -1)[..., 0]


def test_fit_reduces_loss_and_losses_metrics_are_weighted():
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    features = _features()
    x, y, sample_weight = split_pretraining_features(features)

    # Before training: the compiled loss and metrics against a NumPy computation.
    results = model.evaluate(x, y, sample_weight=sample_weight, batch_size=BATCH,
                             verbose=0, return_dict=True)
    outputs = _numpy(model(x))
    weights = features["masked_lm_weights"]
    mlm_losses = _cross_entropy(outputs["mlm_logits"], y["mlm_logits"])
    mlm_loss = (mlm_losses * weights).sum() / weights.sum()
    nsp_loss = _cross_entropy(outputs["nsp_logits"], y["nsp_logits"]).mean()
    mlm_accuracy = ((outputs["mlm_logits"].argmax(-1) == y["mlm_logits"]) * weights).sum() / weights.sum()
    nsp_accuracy = (outputs["nsp_logits"].argmax(-1) == y["nsp_logits"]).mean()
    np.testing.assert_allclose(results["loss"], mlm_loss + nsp_loss, rtol=1e-5)
    np.testing.assert_allclose(results["mlm_logits_accuracy"], mlm_accuracy, rtol=1e-6)
    np.testing.assert_allclose(results["nsp_logits_accuracy"], nsp_accuracy, rtol=1e-6)
    # Labels at padded prediction slots (weight 0) do not matter.
    y_changed = {**y, "mlm_logits": np.where(weights > 0, y["mlm_logits"], 7).astype("int32")}
    changed = model.evaluate(x, y_changed, sample_weight=sample_weight, batch_size=BATCH,
                             verbose=0, return_dict=True)
    np.testing.assert_allclose(changed["loss"], results["loss"], rtol=1e-6)

    history = model.fit(x, y, sample_weight=sample_weight, batch_size=BATCH, epochs=12,
                        verbose=0).history
    assert history["loss"][-1] < 0.6 * history["loss"][0], history["loss"]
    assert history["mlm_logits_accuracy"][-1] > history["mlm_logits_accuracy"][0]


def test_split_pretraining_features_in_tf_data_with_google_names():
    import tensorflow as tf  # only this test's input pipeline; bert_keras itself has no TF

    features = _features(google_names=True)
    dataset = tf.data.Dataset.from_tensor_slices(features).map(split_pretraining_features)
    x, y, sample_weight = next(iter(dataset.batch(BATCH)))
    expected_x, expected_y, expected_weights = split_pretraining_features(_features())
    for key in expected_x:
        np.testing.assert_array_equal(x[key].numpy(), expected_x[key])
    for key in expected_y:
        np.testing.assert_array_equal(y[key].numpy(), expected_y[key])
        np.testing.assert_array_equal(sample_weight[key].numpy(), expected_weights[key])
    np.testing.assert_array_equal(expected_weights["nsp_logits"], np.ones(BATCH, "float32"))
