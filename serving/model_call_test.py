"""ModelCall: XLA calls padded to shape buckets give the unpadded call's outputs, and a
stream of request shapes compiles no more programs than `warmup_shapes` lists."""

import numpy as np
import pytest
import tensorflow as tf

from bert_keras.backbone import ConfigurableBertBackbone
from bert_keras.classifier import build_text_classifier
from bert_keras.token_classifier import build_token_classifier
from serving.model_call import CHUNK_ROWS, ModelCall, warmup_shapes

TINY = dict(vocabulary_size=40, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
            max_sequence_length=56, dropout=0.0)


def _features(batch: int, length: int, seed: int = 0) -> dict[str, tf.Tensor]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, length + 1, batch)
    lengths[0] = length  # the longest row fills the padded length, as the encoders pad
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    return {"token_ids": tf.constant(rng.integers(3, 40, (batch, length)) * mask, tf.int32),
            "segment_ids": tf.zeros((batch, length), tf.int32),
            "padding_mask": tf.constant(mask)}


def _models(token_outputs: bool, max_seq_length: int | None = None):
    import keras

    keras.utils.set_random_seed(0)
    build = build_token_classifier if token_outputs else build_text_classifier
    model = build(ConfigurableBertBackbone(**TINY), 3)
    plain = ModelCall(model, "float32", jit_compile=False)
    return plain, ModelCall(model, "float32", jit_compile=True, token_outputs=token_outputs,
                            max_seq_length=max_seq_length)


@pytest.mark.parametrize("token_outputs", [False, True])
def test_bucketed_xla_call_gives_the_unpadded_outputs(token_outputs):
    plain, compiled = _models(token_outputs)
    graph = tf.function(compiled.__call__)  # as in a SavedModel signature: shapes unknown
    for batch, length in [(1, 8), (3, 24), (5, 40), (CHUNK_ROWS + 7, 16), (2 * CHUNK_ROWS, 56)]:
        features = _features(batch, length, seed=batch)
        expected = plain(features).numpy()
        got = graph(features).numpy()
        assert got.shape == expected.shape == ((batch, length, 3) if token_outputs else (batch, 3))
        traced = graph.get_concrete_function(
            {name: tf.TensorSpec([None, None], tf.int32) for name in features}).structured_outputs
        assert traced.shape.as_list() == ([None, None, 3] if token_outputs else [None, 3])
        if token_outputs:  # a padded position's output means nothing: every task masks it
            real = features["padding_mask"].numpy() == 1
            got, expected = got[real], expected[real]
        np.testing.assert_allclose(got, expected, atol=2e-5, err_msg=f"{batch}x{length}")


def test_request_shapes_compile_only_the_warmup_shapes():
    _, compiled = _models(token_outputs=False)
    seen: list[tuple[int, int]] = []
    compiled._call = tf.function(  # records the shape of every program XLA is asked for
        lambda features: seen.append(tuple(features["token_ids"].shape)) or
        compiled._forward(features), jit_compile=True)
    for batch in (1, 2, 3, 5, 9, 17, 31, 32, 33, 70):
        for length in (8, 16, 24, 40, 48, 56):
            compiled(_features(batch, length))
    assert set(seen) <= set(warmup_shapes(56)), sorted(set(seen) - set(warmup_shapes(56)))
    assert len(seen) == len(set(seen))  # each shape traced (compiled) once
    assert {batch for batch, _ in seen} == {1, 2, 4, 8, 16}
    assert {length for _, length in seen} == {16, 32, 48, 56}


def test_warmup_shapes_cover_powers_of_two_and_the_length_buckets():
    assert warmup_shapes(64) == [(b, n) for b in (1, 2, 4, 8, 16) for n in (16, 32, 48, 64)]
    assert warmup_shapes(100)[-2:] == [(16, 96), (16, 100)]


def test_a_max_seq_length_between_buckets_compiles_only_its_warmup_shapes():
    """Requests of an encoder with max_seq_length 40 (not a bucket) are padded to 40 at most,
    the length its warm-up requests have, not to the next bucket (48)."""
    _, compiled = _models(token_outputs=False, max_seq_length=40)
    seen: list[tuple[int, int]] = []
    compiled._call = tf.function(
        lambda features: seen.append(tuple(features["token_ids"].shape)) or
        compiled._forward(features), jit_compile=True)
    for batch, length in [(1, 40), (3, 32), (20, 40)]:
        compiled(_features(batch, length))
    assert set(seen) <= set(warmup_shapes(40)), sorted(set(seen) - set(warmup_shapes(40)))
    assert (1, 40) in seen
