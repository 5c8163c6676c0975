"""The per-instance steps of BERT's recipe, vectorised over many instances with numpy.

Trimming, assembling [CLS] A [SEP] B [SEP], masking and tf.Example serialization run on
whole batches of instances at once, so the per-token work happens in numpy rather than in
Python loops; this is what makes pretraining-data generation fast.

Randomness is counter-based: every random number is a hash (SplitMix64's finalizer) of an
instance's 64-bit key, a purpose and a position. An instance's draws therefore depend on its
key only, never on which other instances share its batch, so output stays byte-identical
whatever the batch sizes, bundles or number of workers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
# One stream per purpose: the key is xor-ed with the purpose's constant before mixing.
TRIM, MASK_ORDER, MASK_KIND, MASK_KEEP, MASK_RANDOM, ORDER, TRIM_B = (
    np.uint64(0x5A17_0000_0000_0000 + i * 0x0101_0101) for i in range(1, 8)
)


def mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64s: a bijection that scatters nearby inputs."""
    z = np.atleast_1d(np.asarray(values, dtype=np.uint64)) + _GOLDEN  # uint64 arrays wrap, as SplitMix64 needs.
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def uniform(keys: np.ndarray, purpose: np.uint64, counters: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1), one per (key, counter): `keys` and `counters` broadcast."""
    base = mix64(np.asarray(keys, dtype=np.uint64) ^ purpose)
    z = mix64(base + np.atleast_1d(np.asarray(counters, dtype=np.uint64)) * _GOLDEN)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def instance_keys(copy_hash: int, instance_indices: np.ndarray) -> np.ndarray:
    """The keys of a document copy's instances, from the copy's 64-bit hash."""
    return mix64(np.uint64(copy_hash) + (np.asarray(instance_indices, dtype=np.uint64) + np.uint64(1)) * _GOLDEN)


class Vocab(NamedTuple):
    """What masking needs of the vocabulary, as numbers and a numpy lookup table."""

    size: int
    cls_id: int
    sep_id: int
    mask_id: int
    pad_id: int
    is_continuation: np.ndarray  # bool [size]: True at the ids of "##" pieces.


class Finished(NamedTuple):
    """A batch of finished instances, padded: int64 arrays, N rows."""

    input_ids: np.ndarray  # [N, max_seq_length], masked, padded with the pad id.
    segment_ids: np.ndarray  # [N, max_seq_length]
    lengths: np.ndarray  # [N] real tokens per row, [CLS] and [SEP]s included.
    masked_lm_positions: np.ndarray  # [N, max_predictions_per_seq], ascending, padded with 0.
    masked_lm_ids: np.ndarray  # [N, max_predictions_per_seq], the original ids.
    masked_counts: np.ndarray  # [N]
    is_random_next: np.ndarray  # [N] bool


def truncate(
    a_lo: np.ndarray, a_hi: np.ndarray, b_lo: np.ndarray, b_hi: np.ndarray, max_num_tokens: int, keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Google's `truncate_seq_pair` on token ranges, in closed form.

    Google drops one token at a time from the longer segment (B on a tie), at its front or
    back by a fair coin, until the pair fits. Which segment loses how many tokens depends
    on the lengths only: the longer one is cut down to the shorter, then they alternate, so
    A keeps min(len A, max(ceil(max / 2), max - len B)) tokens. Each of its cuts is an
    independent coin, so the front cuts are the heads among that many flips.
    Returns the new (a_lo, a_hi, b_lo, b_hi) int64 arrays.
    """
    a_lo, a_hi, b_lo, b_hi = (np.array(x, dtype=np.int64) for x in (a_lo, a_hi, b_lo, b_hi))
    keys = np.asarray(keys, dtype=np.uint64)
    la, lb = a_hi - a_lo, b_hi - b_lo
    rows = np.flatnonzero(la + lb > max_num_tokens)
    if rows.size == 0:
        return a_lo, a_hi, b_lo, b_hi
    la, lb = la[rows], lb[rows]
    keep_a = np.minimum(la, np.maximum((max_num_tokens + 1) // 2, max_num_tokens - lb))
    cut_a, cut_b = la - keep_a, lb - (max_num_tokens - keep_a)
    flips = np.arange(max(int(cut_a.max()), int(cut_b.max()), 1))[None, :]
    heads = uniform(keys[rows][:, None], TRIM, flips) < 0.5
    front_a = (heads & (flips < cut_a[:, None])).sum(axis=1)
    # B's flips come from a stream of their own: a row's draws must never depend on the
    # other rows of its batch (an offset of A's stream by the batch's longest cut would).
    heads_b = uniform(keys[rows][:, None], TRIM_B, flips) < 0.5
    front_b = (heads_b & (flips < cut_b[:, None])).sum(axis=1)
    a_lo[rows] += front_a
    a_hi[rows] -= cut_a - front_a
    b_lo[rows] += front_b
    b_hi[rows] -= cut_b - front_b
    return a_lo, a_hi, b_lo, b_hi


def finish(
    pool: np.ndarray,
    a_lo: np.ndarray,
    a_hi: np.ndarray,
    b_lo: np.ndarray,
    b_hi: np.ndarray,
    keys: np.ndarray,
    is_random_next: np.ndarray,
    *,
    max_seq_length: int,
    max_predictions_per_seq: int,
    masked_lm_prob: float,
    whole_word_masking: bool,
    vocab: Vocab,
) -> Finished:
    """Trims, assembles [CLS] A [SEP] B [SEP] and masks (`mask`) N instances whose
    segments are the token ranges [a_lo, a_hi) and [b_lo, b_hi) of `pool`."""
    n_rows = len(keys)
    a_lo, a_hi, b_lo, b_hi = truncate(a_lo, a_hi, b_lo, b_hi, max_seq_length - 3, keys)
    la, lb = a_hi - a_lo, b_hi - b_lo
    if n_rows and (la.min() < 1 or lb.min() < 1):
        raise AssertionError("the recipe never leaves a segment empty")
    lengths = la + lb + 3
    pos = np.arange(max_seq_length, dtype=np.int64)[None, :]
    b_start = (la + 2)[:, None]
    in_a = (pos >= 1) & (pos <= la[:, None])
    in_b = (pos >= b_start) & (pos < b_start + lb[:, None])
    source = np.where(in_a, a_lo[:, None] + pos - 1, np.where(in_b, b_lo[:, None] + pos - b_start, 0))
    pool = np.asarray(pool, dtype=np.int64)
    original = np.where(in_a | in_b, pool[source] if pool.size else 0, vocab.pad_id)
    rows = np.arange(n_rows)
    original[:, 0] = vocab.cls_id
    original[rows, la + 1] = vocab.sep_id
    original[rows, lengths - 1] = vocab.sep_id
    segment_ids = ((pos >= b_start) & (pos < lengths[:, None])).astype(np.int64)

    return mask(
        original, segment_ids, lengths, keys, is_random_next,
        max_predictions_per_seq=max_predictions_per_seq, masked_lm_prob=masked_lm_prob,
        whole_word_masking=whole_word_masking, vocab=vocab,
    )  # fmt: skip


def mask(
    original: np.ndarray,
    segment_ids: np.ndarray,
    lengths: np.ndarray,
    keys: np.ndarray,
    is_random_next: np.ndarray,
    *,
    max_predictions_per_seq: int,
    masked_lm_prob: float,
    whole_word_masking: bool,
    vocab: Vocab,
) -> Finished:
    """Google's masked-LM step on N assembled rows ([N, L] ids, the first `lengths` real).

    round(len * masked_lm_prob) positions (at least 1, at most `max_predictions_per_seq`)
    among all real tokens but [CLS]/[SEP], a uniformly random subset (a random order of the
    candidates, then the first ones); 80% become [MASK], 10% stay and 10% become a
    uniformly random id. With whole-word masking the candidates are words, taken in random
    order while they fit the budget.
    """
    n_rows, width = original.shape
    rows = np.arange(n_rows)
    pos = np.arange(width, dtype=np.int64)[None, :]
    keys = np.asarray(keys, dtype=np.uint64)
    # Candidates by value, as Google's code: every real token but [CLS] and [SEP].
    candidate = (pos < lengths[:, None]) & (original != vocab.cls_id) & (original != vocab.sep_id)
    budget = np.minimum(
        max_predictions_per_seq, np.maximum(1, np.round(lengths * masked_lm_prob).astype(np.int64))
    )
    order_keys = uniform(keys[:, None], MASK_ORDER, pos)
    if whole_word_masking:
        selected = _select_whole_words(original, candidate, order_keys, budget, vocab)
    else:
        budget = np.minimum(budget, candidate.sum(axis=1))
        order_keys = np.where(candidate, order_keys, 2.0)
        rank = np.empty(original.shape, dtype=np.int64)
        rank[rows[:, None], np.argsort(order_keys, axis=1)] = pos
        selected = rank < budget[:, None]

    sel_rows, sel_cols = np.nonzero(selected)  # Row-major: positions ascend within a row.
    counts = selected.sum(axis=1)
    slots = np.arange(sel_rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    sel_keys = keys[sel_rows]
    kind = uniform(sel_keys, MASK_KIND, sel_cols)
    keep = uniform(sel_keys, MASK_KEEP, sel_cols)
    random_ids = (uniform(sel_keys, MASK_RANDOM, sel_cols) * vocab.size).astype(np.int64)
    labels = original[sel_rows, sel_cols]
    replacement = np.where(kind < 0.8, vocab.mask_id, np.where(keep < 0.5, labels, random_ids))
    input_ids = original.copy()
    input_ids[sel_rows, sel_cols] = replacement
    positions = np.zeros((n_rows, max_predictions_per_seq), dtype=np.int64)
    masked_ids = np.zeros_like(positions)
    positions[sel_rows, slots] = sel_cols
    masked_ids[sel_rows, slots] = labels
    return Finished(
        input_ids, segment_ids, lengths, positions, masked_ids, counts, np.asarray(is_random_next, dtype=bool)
    )


def _select_whole_words(original, candidate, order_keys, budget, vocab: Vocab) -> np.ndarray:
    """Whole-word masking: per row, words (a piece and the "##" pieces right after it) in a
    random order (the key of their first piece), each taken if it still fits the budget (a
    word that would overshoot is skipped, as in Google's code). Python per row: an option,
    not the default path."""
    selected = np.zeros(original.shape, dtype=bool)
    continuation = vocab.is_continuation[original] & candidate
    for row in range(original.shape[0]):
        words: list[list[int]] = []
        for position in np.flatnonzero(candidate[row]).tolist():
            if continuation[row, position] and words and words[-1][-1] == position - 1:
                words[-1].append(position)
            else:
                words.append([position])
        keys = order_keys[row]
        words.sort(key=lambda word: keys[word[0]])
        taken, limit = 0, int(budget[row])
        for word in words:
            if taken >= limit:
                break
            if taken + len(word) > limit:
                continue
            selected[row, word] = True
            taken += len(word)
    return selected


# ----------------------------------------------------------------------------- tf.Example


def _varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Base-128 varints of non-negative [N, K] ints in fixed-width slots: (bytes [N, K*w],
    keep mask [N, K*w], byte counts [N, K]); the unused slot bytes are masked out. The
    width is that of the largest value, so small-valued features stay one byte a value."""
    values = np.asarray(values)
    n_rows = values.shape[0]
    largest = int(values.max()) if values.size else 0
    if values.size and int(values.min()) < 0:
        raise ValueError("varints of negative values are not supported")
    values = values.astype(np.uint32 if largest < 1 << 32 else np.uint64)
    lengths = np.ones(values.shape, dtype=np.int64)
    width = 1
    while largest >= 1 << (7 * width):
        lengths += values >= (1 << (7 * width))
        width += 1
    if width == 1:  # Every value < 128 is its own single byte.
        return values.astype(np.uint8), np.ones(values.shape, dtype=bool), lengths
    data = np.empty((*values.shape, width), dtype=np.uint8)
    keep = np.empty((*values.shape, width), dtype=bool)
    for j in range(width):
        group = ((values >> (7 * j)) & 0x7F).astype(np.uint8)
        data[..., j] = np.where(lengths > j + 1, group | 0x80, group)
        keep[..., j] = lengths > j
    return data.reshape(n_rows, -1), keep.reshape(n_rows, -1), lengths


class _Pieces:
    """A row layout under construction: byte columns, each with a keep mask."""

    def __init__(self, n_rows: int):
        self.n_rows = n_rows
        self.data: list[np.ndarray] = []
        self.keep: list[np.ndarray] = []
        self.size = np.zeros(n_rows, dtype=np.int64)

    def constant(self, raw: bytes) -> None:
        block = np.frombuffer(raw, dtype=np.uint8)
        self.data.append(np.broadcast_to(block, (self.n_rows, block.size)))
        self.keep.append(np.ones((self.n_rows, block.size), dtype=bool))
        self.size += block.size

    def raw(self, block: np.ndarray) -> None:
        self.data.append(block)
        self.keep.append(np.ones(block.shape, dtype=bool))
        self.size += block.shape[1]

    def varint(self, values: np.ndarray) -> None:
        data, keep, lengths = _varints(values.reshape(self.n_rows, -1))
        self.data.append(data)
        self.keep.append(keep)
        self.size += lengths.sum(axis=1)

    def extend(self, other: _Pieces) -> None:
        self.data += other.data
        self.keep += other.keep
        self.size += other.size


def encode_examples(int_features: dict[str, np.ndarray], float_features: dict[str, np.ndarray]) -> list[bytes]:
    """Serializes N tf.train.Examples of fixed-length features ([N, K] arrays; ints must be
    non-negative), byte for byte what `Example.SerializeToString(deterministic=True)` gives
    (map entries in key order, packed lists), without a protobuf object per example."""
    names = sorted({**int_features, **float_features})
    n_rows = next(iter((int_features or float_features).values())).shape[0]
    features = _Pieces(n_rows)
    for name in names:
        body = _Pieces(n_rows)
        if name in int_features:
            body.varint(np.asarray(int_features[name]))
            list_tag = b"\x1a"  # Feature.int64_list = 3
        else:
            values = np.ascontiguousarray(float_features[name], dtype="<f4")
            body.raw(values.view(np.uint8).reshape(n_rows, -1))
            list_tag = b"\x12"  # Feature.float_list = 2
        # Int64List/FloatList {value = 1 [packed]}, inside Feature, inside the map entry.
        value_list = _Pieces(n_rows)
        value_list.constant(b"\x0a")
        value_list.varint(body.size.copy())
        value_list.extend(body)
        feature = _Pieces(n_rows)
        feature.constant(list_tag)
        feature.varint(value_list.size.copy())
        feature.extend(value_list)
        key = name.encode("utf-8")
        entry = _Pieces(n_rows)
        entry.constant(b"\x0a" + bytes([len(key)]) + key + b"\x12")  # key = 1, value = 2
        entry.varint(feature.size.copy())
        entry.extend(feature)
        features.constant(b"\x0a")  # Features.feature = 1 (a map entry)
        features.varint(entry.size.copy())
        features.extend(entry)
    example = _Pieces(n_rows)
    example.constant(b"\x0a")  # Example.features = 1
    example.varint(features.size.copy())
    example.extend(features)
    data = np.concatenate(example.data, axis=1)
    flat = data[np.concatenate(example.keep, axis=1)].tobytes()
    ends = np.cumsum(example.size).tolist()
    starts = [0, *ends[:-1]]
    return [flat[start:end] for start, end in zip(starts, ends, strict=True)]
