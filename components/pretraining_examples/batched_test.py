"""Tests of the vectorised recipe steps (components/pretraining_examples/batched.py)."""

from __future__ import annotations

import numpy as np
import pytest

from components.pretraining_examples import batched

VOCAB_SIZE = 1000
VOCAB = batched.Vocab(
    size=VOCAB_SIZE, cls_id=2, sep_id=3, mask_id=4, pad_id=0,
    is_continuation=np.arange(VOCAB_SIZE) >= 900,  # Ids 900.. are "##" pieces.
)  # fmt: skip


def _keys(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**63, n).astype(np.uint64) * np.uint64(2) + np.uint64(1)


def _finish(pool, a_lo, a_hi, b_lo, b_hi, keys, whole_word=False, max_seq_length=32, max_predictions=5):
    return batched.finish(
        np.asarray(pool), np.asarray(a_lo), np.asarray(a_hi), np.asarray(b_lo), np.asarray(b_hi), keys,
        np.zeros(len(keys), dtype=bool), max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions,
        masked_lm_prob=0.15, whole_word_masking=whole_word, vocab=VOCAB,
    )  # fmt: skip


def test_uniform_is_uniform_and_a_function_of_key_and_counter_only():
    keys = _keys(2000)
    draws = batched.uniform(keys[:, None], batched.MASK_ORDER, np.arange(50)[None, :])
    assert draws.shape == (2000, 50) and 0 <= draws.min() and draws.max() < 1
    assert draws.mean() == pytest.approx(0.5, abs=0.005)
    assert np.histogram(draws, bins=10, range=(0, 1))[0].min() > 0.095 * draws.size
    # The same (key, counter) gives the same number in any company; purposes differ.
    alone = batched.uniform(keys[7:8, None], batched.MASK_ORDER, np.arange(50)[None, :])
    assert np.array_equal(alone[0], draws[7])
    assert not np.array_equal(batched.uniform(keys[:5], batched.MASK_KIND, 0), draws[:5, 0])


def test_truncate_cuts_the_longer_segment_like_googles_loop():
    rng = np.random.default_rng(1)
    for max_num_tokens in (2, 7, 20, 125):
        la, lb = rng.integers(1, 300, 3000), rng.integers(1, 300, 3000)
        a_lo, a_hi, b_lo, b_hi = batched.truncate(np.zeros(3000), la, np.zeros(3000), lb, max_num_tokens, _keys(3000))
        for i in range(3000):
            x, y = int(la[i]), int(lb[i])
            while x + y > max_num_tokens:  # Google's truncate_seq_pair, lengths only.
                if x > y:
                    x -= 1
                else:
                    y -= 1
            assert (a_hi[i] - a_lo[i], b_hi[i] - b_lo[i]) == (x, y)
        assert (a_lo >= 0).all() and (a_hi <= la).all() and (b_lo >= 0).all() and (b_hi <= lb).all()


def test_truncate_cuts_front_and_back_by_fair_coins():
    n = 4000
    a_lo, a_hi, _, _ = batched.truncate(np.zeros(n), np.full(n, 100), np.zeros(n), np.full(n, 10), 50, _keys(n))
    fronts = a_lo  # 60 cuts each, so Binomial(60, 1/2) at the front.
    assert np.all(a_hi - a_lo == 40)
    assert fronts.mean() == pytest.approx(30, abs=0.3)
    assert fronts.var() == pytest.approx(15, rel=0.15)


def test_a_rows_result_does_not_depend_on_its_batch():
    rng = np.random.default_rng(2)
    n = 300
    pool = rng.integers(5, VOCAB_SIZE, 20_000)
    a_lo = rng.integers(0, 10_000, n)
    a_hi = a_lo + rng.integers(1, 40, n)
    b_lo = rng.integers(10_000, 19_000, n)
    b_hi = b_lo + rng.integers(1, 40, n)
    keys = _keys(n)
    for whole_word in (False, True):
        together = _finish(pool, a_lo, a_hi, b_lo, b_hi, keys, whole_word)
        for i in (0, 17, 299):
            alone = _finish(pool, a_lo[i : i + 1], a_hi[i : i + 1], b_lo[i : i + 1], b_hi[i : i + 1], keys[i : i + 1],
                            whole_word)  # fmt: skip
            for name, column in together._asdict().items():
                assert np.array_equal(column[i], getattr(alone, name)[0]), (name, whole_word)


def test_assembly_segments_and_masking_recipe():
    rng = np.random.default_rng(3)
    n = 20_000
    pool = rng.integers(5, 900, 200)  # No "##" pieces, no specials.
    la, lb = rng.integers(1, 60, n), rng.integers(1, 60, n)
    finished = _finish(pool, np.zeros(n, int), la, np.full(n, 100), 100 + lb, _keys(n), max_seq_length=128,
                       max_predictions=20)  # fmt: skip
    ids, original = finished.input_ids, finished.input_ids.copy()
    rows = np.repeat(np.arange(n), finished.masked_counts)
    slots = np.concatenate([np.arange(c) for c in finished.masked_counts])
    positions = finished.masked_lm_positions[rows, slots]
    original[rows, positions] = finished.masked_lm_ids[rows, slots]
    lengths = np.minimum(la + lb, 125) + 3
    assert np.array_equal(finished.lengths, lengths)
    for i in range(0, n, 997):  # [CLS] A [SEP] B [SEP] then padding, A and B from the pool.
        length, a = int(lengths[i]), int(np.argmax(original[i] == VOCAB.sep_id))
        assert original[i, 0] == VOCAB.cls_id and original[i, length - 1] == VOCAB.sep_id
        assert np.all(original[i, length:] == 0) and np.all(finished.segment_ids[i, length:] == 0)
        assert finished.segment_ids[i, : a + 1].sum() == 0 and finished.segment_ids[i, a + 1 : length].all()
        segment_a, segment_b = original[i, 1:a], original[i, a + 1 : length - 1]
        assert any(np.array_equal(segment_a, pool[s : s + a - 1]) for s in range(200 - a + 2))
        assert any(np.array_equal(segment_b, pool[100 + s : 100 + s + len(segment_b)]) for s in range(60))
        masked = finished.masked_lm_positions[i, : finished.masked_counts[i]]
        assert list(masked) == sorted(set(masked)) and all(0 < p < length - 1 and p != a for p in masked)
    # Google's count, then 80% [MASK], 10% random (over the whole vocabulary), 10% kept.
    expected = np.minimum(20, np.maximum(1, np.round(lengths * 0.15)))
    assert np.array_equal(finished.masked_counts, expected)
    new = ids[rows, positions]
    kept = new == finished.masked_lm_ids[rows, slots]
    is_mask = new == VOCAB.mask_id
    assert is_mask.mean() == pytest.approx(0.8, abs=0.005)
    assert kept.mean() == pytest.approx(0.1, abs=0.005)
    random_ids = new[~kept & ~is_mask]
    assert np.histogram(random_ids, bins=4, range=(0, VOCAB_SIZE))[0].min() > 0.23 * random_ids.size
    # Every candidate position is as likely to be picked: the first and last real tokens too.
    picked = np.zeros(128)
    np.add.at(picked, positions, 1)
    assert picked[1] / picked[2] == pytest.approx(1, abs=0.1)


def test_whole_word_masking_takes_all_pieces_of_a_word_and_respects_the_budget():
    rng = np.random.default_rng(4)
    n = 2000
    pool = np.where(rng.random(5000) < 0.4, rng.integers(900, 1000, 5000), rng.integers(5, 900, 5000))
    a_lo = rng.integers(0, 2000, n)
    b_lo = rng.integers(2500, 4500, n)
    finished = _finish(pool, a_lo, a_lo + 60, b_lo, b_lo + 60, _keys(n), whole_word=True, max_seq_length=128,
                       max_predictions=20)  # fmt: skip
    multi = 0
    for i in range(n):
        positions = finished.masked_lm_positions[i, : finished.masked_counts[i]]
        masked = set(positions.tolist())
        assert 0 < len(masked) <= 19  # round(128 * 0.15) = 19
        ids = finished.input_ids[i].copy()
        ids[positions] = finished.masked_lm_ids[i, : len(masked)]
        for p in masked:  # A masked piece's word is masked whole: neighbours in the same word too.
            if VOCAB.is_continuation[ids[p]] and ids[p - 1] not in (VOCAB.cls_id, VOCAB.sep_id):
                assert p - 1 in masked
                multi += 1
            if p + 1 < 128 and VOCAB.is_continuation[ids[p + 1]] and ids[p + 1] != VOCAB.sep_id:
                assert p + 1 in masked
    assert multi > 1000


def test_encode_examples_is_protobufs_deterministic_serialization():
    from tensorflow.core.example import example_pb2

    rng = np.random.default_rng(5)
    n = 200
    ints = {
        "input_ids": rng.integers(0, 30_522, (n, 128)),
        "a_flag": rng.integers(0, 2, (n, 1)),
        "wide": rng.integers(0, 2**62, (n, 3)),
        "zeros": np.zeros((n, 4), dtype=np.int64),
        "z_long": rng.integers(0, 300, (n, 200)),  # Lengths over 127 bytes: 2-byte varints.
    }
    floats = {"weights": rng.integers(0, 2, (n, 20)).astype(np.float32), "normal": rng.normal(size=(n, 3))}
    encoded = batched.encode_examples(ints, floats)
    for i in range(n):
        example = example_pb2.Example()
        for name, values in ints.items():
            example.features.feature[name].int64_list.value.extend(values[i].tolist())
        for name, values in floats.items():
            example.features.feature[name].float_list.value.extend(values[i].astype(np.float32).tolist())
        assert encoded[i] == example.SerializeToString(deterministic=True)
    with pytest.raises(ValueError, match="negative"):
        batched.encode_examples({"x": np.array([[-1]])}, {})
