"""BERT pretraining examples (masked LM + next sentence prediction) on Apache Beam.

The data logic of `PretrainingExampleGen`, free of TFX. It follows Google BERT's
`create_pretraining_data.py` recipe (github.com/google-research/bert; the `bert-tensorflow`
package on PyPI), step for step:

  - Each document is cut, `dupe_factor` times, into instances of about
    `max_seq_length - 3` tokens; a copy aims for a shorter random length with probability
    `short_seq_prob`. Segment A is the first 1..n-1 of a chunk of consecutive sentences;
    segment B is, half of the time, the rest of the chunk ("is next", label 0) and
    otherwise a run of sentences from a random point of a random OTHER document ("random
    next", label 1); then the unused sentences of the chunk are put back. The pair is
    trimmed to fit, one token at a time from a random end of the longer segment.
  - Masked LM: round(len(tokens) * masked_lm_prob) positions, at least 1 and at most
    `max_predictions_per_seq`, are picked among all but [CLS]/[SEP] (padding is added
    later and never picked); 80% become [MASK], 10% a random vocabulary token and 10% stay
    unchanged. With whole-word masking, a word's "##" pieces are picked together.

What differs, and why:

  - Randomness. Google draws everything from one sequential RNG over the shuffled corpus,
    which cannot be distributed. Here a document copy's chunking comes from an RNG seeded
    by a hash of (seed, doc_id, dupe index), and every instance gets a 64-bit key derived
    from that hash and its index; its trimming, masking and output position are hashes of
    that key (counter-based, `batched.uniform`), so they do not depend on which other
    instances are processed with it. Output is therefore byte-identical for the same seed
    whatever the number of workers, the bundle boundaries or the element order; the
    distributions are Google's.
  - Random-next segments. Google tries 10 random documents to find one that is not the
    current one (and would use the current one if all 10 fail). Here the other document is
    drawn uniformly among the OTHER documents of the split (so a split needs >= 2), from a
    side input listing all doc ids; its segments are then fetched by a join keyed by doc id
    (CoGroupByKey), so no worker ever needs the whole corpus in memory. The start sentence
    is drawn as a uniform fraction of the other document's length.
  - Whole-word masking: a "##" piece only joins the candidate of the piece right before
    it; Google's code also glued a segment-initial "##" piece to the last word before a
    [SEP].
  - Tokenization is serving's in-graph tokenizer (`serving.text_encoder`'s normalization,
    basic split and FastWordpieceTokenizer, as `BertTextEncoder.tokenize`), so ids match
    serving.

Speed: documents are tokenized many at once (one TF call per batch of documents), a
document is kept as one token array plus sentence boundaries, instances are token ranges
until they are assembled, masked and serialized in numpy for a whole batch at once
(`batched`), and what travels between Beam steps is batches of serialized examples per
output shard, not a Python object per example.

Output features (int64 unless noted), padded with 0 like Google's writer:
  input_ids, input_mask, segment_ids          [max_seq_length]
  masked_lm_positions, masked_lm_ids          [max_predictions_per_seq]
  masked_lm_weights (float)                   [max_predictions_per_seq]
  next_sentence_label                         [1]   1 = random next, 0 = actual next
(Google's files name the last one "next_sentence_labels".)
"""

from __future__ import annotations

import bisect
import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np

from components import common
from components.pretraining_examples import batched
from components.pretraining_examples.recipe import PretrainingConfig
from components.text_example_gen import text_ingestion

INPUT_IDS = "input_ids"
INPUT_MASK = "input_mask"
SEGMENT_IDS = "segment_ids"
MASKED_LM_POSITIONS = "masked_lm_positions"
MASKED_LM_IDS = "masked_lm_ids"
MASKED_LM_WEIGHTS = "masked_lm_weights"
NEXT_SENTENCE_LABEL = "next_sentence_label"

SCHEMA_FILE = "schema.pbtxt"

_TOKENIZE_BATCH_DOCUMENTS = 64  # Per TF tokenizer call: thousands of sentences.
_GROUP_BATCH = 256  # Random-next groups finished per numpy call.


@dataclasses.dataclass(frozen=True)
class MaskingVocabulary:
    """What masking needs to know about the vocabulary, in a compact picklable form."""

    size: int
    cls_id: int
    sep_id: int
    mask_id: int
    pad_id: int
    is_continuation: bytes  # 1 at the ids of "##" pieces.

    @classmethod
    def from_tokens(cls, tokens: list[str]) -> MaskingVocabulary:
        index = {token: i for i, token in enumerate(tokens)}
        for special in ("[PAD]", "[CLS]", "[SEP]", "[MASK]"):
            if special not in index:
                raise ValueError(f"vocabulary has no {special} token")
        return cls(
            size=len(tokens),
            cls_id=index["[CLS]"],
            sep_id=index["[SEP]"],
            mask_id=index["[MASK]"],
            pad_id=index["[PAD]"],
            is_continuation=bytes(token.startswith("##") for token in tokens),
        )

    def batched(self) -> batched.Vocab:
        """The numpy form that `batched.finish` takes."""
        return batched.Vocab(
            self.size, self.cls_id, self.sep_id, self.mask_id, self.pad_id,
            np.frombuffer(self.is_continuation, dtype=np.uint8).astype(bool),
        )  # fmt: skip


class TokenizedDocument(NamedTuple):
    doc_id: str
    segments: list[list[int]]  # One list of WordPiece ids per non-empty sentence.


class CompactDocument(NamedTuple):
    """A tokenized document as one array: cheap to pickle, sliceable without copies."""

    doc_id: str
    tokens: np.ndarray  # int32 [tokens]: all its sentences, in order.
    bounds: np.ndarray  # int64 [sentences + 1]: sentence i is tokens[bounds[i]:bounds[i + 1]].

    @classmethod
    def from_tokenized(cls, document: TokenizedDocument) -> CompactDocument:
        lengths = [len(segment) for segment in document.segments]
        tokens = np.fromiter((t for segment in document.segments for t in segment), dtype=np.int32)
        return cls(document.doc_id, tokens, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))

    def to_tokenized(self) -> TokenizedDocument:
        tokens, bounds = self.tokens.tolist(), self.bounds.tolist()
        return TokenizedDocument(self.doc_id, [tokens[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)])


class PendingInstance(NamedTuple):
    """An instance whose segment B still has to be fetched from another document."""

    doc_id: str
    dupe_index: int
    instance_index: int
    tokens_a: Sequence[int]
    random_doc_id: str
    random_start_fraction: float  # Start sentence = int(fraction * its sentence count).
    target_b_length: int
    key: int  # The instance's 64-bit key: its trimming and masking draws.


class PretrainingInstance(NamedTuple):
    """One finished training pair, before padding; `b_*` trace where segment B came from."""

    doc_id: str
    dupe_index: int
    instance_index: int
    input_ids: list[int]  # [CLS] A [SEP] B [SEP], masked.
    segment_ids: list[int]
    masked_lm_positions: list[int]  # Ascending.
    masked_lm_ids: list[int]  # The original ids at those positions.
    is_random_next: bool
    b_doc_id: str  # == doc_id when B is the actual next text.
    b_first_segment: int  # Index of B's first sentence in b_doc_id.


class DocumentIndex:
    """All doc ids of a split, for drawing random other documents reproducibly."""

    def __init__(self, doc_ids: Iterable[str]):
        self.doc_ids = sorted(set(doc_ids))
        self._position = {doc_id: i for i, doc_id in enumerate(self.doc_ids)}

    def __len__(self) -> int:
        return len(self.doc_ids)

    def random_other(self, doc_id: str, rng: Any) -> str:
        """A document other than `doc_id`, uniformly."""
        if len(self.doc_ids) < 2:
            raise ValueError(
                "next-sentence prediction needs at least 2 documents in a split to draw random "
                f"next segments from; this split has {len(self.doc_ids)}"
            )
        draw = rng.randrange(len(self.doc_ids) - 1)
        return self.doc_ids[draw if draw < self._position[doc_id] else draw + 1]


# ----------------------------------------------------------------------------- the recipe


class PlannedPair(NamedTuple):
    """An actual-next instance of a document copy, as token ranges of that document."""

    instance_index: int
    a_lo: int
    a_hi: int
    b_lo: int
    b_hi: int
    b_first_segment: int


class PlannedRandomNext(NamedTuple):
    """A random-next instance: segment A as a token range, segment B still to be drawn."""

    instance_index: int
    a_lo: int
    a_hi: int
    random_doc_id: str
    random_start_fraction: float
    target_b_length: int


def copy_hash(seed: int, doc_id: str, dupe_index: int) -> int:
    """The 64-bit hash from which a document copy's instance keys are derived."""
    return common.stable_hash64(seed, doc_id, dupe_index, "instances")


def plan_copy(
    doc_id: str, bounds: Sequence[int], dupe_index: int, config: PretrainingConfig, index: DocumentIndex
) -> list[PlannedPair | PlannedRandomNext]:
    """Google's `create_instances_from_document` for one copy of one document, on sentence
    boundaries (`bounds[i]` = first token of sentence i, `bounds[-1]` = the token count):
    instances in order, as token ranges, before trimming and masking."""
    rng = common.seeded_rng(config.random_seed, doc_id, dupe_index, "plan")
    max_num_tokens = config.max_num_tokens
    target_seq_length = max_num_tokens
    if rng.random() < config.short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)

    planned: list[PlannedPair | PlannedRandomNext] = []
    n_sentences = len(bounds) - 1
    chunk_start = 0  # First sentence of the current chunk.
    i = 0
    while i < n_sentences:
        if i == n_sentences - 1 or bounds[i + 1] - bounds[chunk_start] >= target_seq_length:
            chunk_sentences = i - chunk_start + 1
            a_end = 1
            if chunk_sentences >= 2:
                a_end = rng.randint(1, chunk_sentences - 1)
            a_lo, a_hi = bounds[chunk_start], bounds[chunk_start + a_end]
            if chunk_sentences == 1 or rng.random() < 0.5:
                random_doc_id = index.random_other(doc_id, rng)
                planned.append(PlannedRandomNext(
                    len(planned), a_lo, a_hi, random_doc_id, rng.random(), target_seq_length - (a_hi - a_lo)
                ))  # fmt: skip
                # The unused sentences are "put back" for the next instance.
                i -= chunk_sentences - a_end
            else:
                planned.append(PlannedPair(len(planned), a_lo, a_hi, a_hi, bounds[i + 1], chunk_start + a_end))
            chunk_start = i + 1
        i += 1
    return planned


def random_segment_range(bounds: Sequence[int], start_fraction: float, target_b_length: int) -> tuple[int, int, int]:
    """Google's random-next segment B on sentence boundaries: sentences from a random start
    until the target length is reached (at least one). Returns (first sentence, first
    token, end token)."""
    n_sentences = len(bounds) - 1
    start = min(int(start_fraction * n_sentences), n_sentences - 1)
    end = min(max(start + 1, bisect.bisect_left(bounds, bounds[start] + target_b_length)), n_sentences)
    return start, bounds[start], bounds[end]


def take_random_segment(
    segments: list[list[int]], start_fraction: float, target_b_length: int
) -> tuple[int, list[int]]:
    """`random_segment_range` on a list of sentences. Returns (index of the first sentence,
    tokens)."""
    bounds = np.concatenate([[0], np.cumsum([len(s) for s in segments])]).tolist()
    start, lo, hi = random_segment_range(bounds, start_fraction, target_b_length)
    tokens = [token for segment in segments for token in segment]
    return start, tokens[lo:hi]


def truncate_seq_pair(tokens_a: list[int], tokens_b: list[int], max_num_tokens: int, rng: Any) -> None:
    """Trims the longer segment, from a random end, until the pair fits (in place); the
    coin flips come from `rng` (a `random.Random`) through one 64-bit key."""
    key = np.array([rng.getrandbits(64)], dtype=np.uint64)
    a_lo, a_hi, b_lo, b_hi = (int(x[0]) for x in batched.truncate(
        [0], [len(tokens_a)], [0], [len(tokens_b)], max_num_tokens, key
    ))  # fmt: skip
    tokens_a[:] = tokens_a[a_lo:a_hi]
    tokens_b[:] = tokens_b[b_lo:b_hi]


def _finish_batch(pool, a_lo, a_hi, b_lo, b_hi, keys, is_random_next, config, vocab) -> batched.Finished:
    return batched.finish(
        pool, np.asarray(a_lo, dtype=np.int64), np.asarray(a_hi, dtype=np.int64),
        np.asarray(b_lo, dtype=np.int64), np.asarray(b_hi, dtype=np.int64),
        np.asarray(keys, dtype=np.uint64), np.asarray(is_random_next, dtype=bool),
        max_seq_length=config.max_seq_length, max_predictions_per_seq=config.max_predictions_per_seq,
        masked_lm_prob=config.masked_lm_prob, whole_word_masking=config.whole_word_masking, vocab=vocab,
    )  # fmt: skip


def create_masked_lm_predictions(
    token_ids: list[int], config: PretrainingConfig, vocab: MaskingVocabulary, rng: Any
) -> tuple[list[int], list[int], list[int]]:
    """Google's masked-LM step on one sequence (`batched.mask` on a batch of one), with
    draws from `rng` (a `random.Random`) through one 64-bit key. Returns (masked ids,
    ascending positions, original ids)."""
    ids = np.asarray([token_ids], dtype=np.int64)
    finished = batched.mask(
        ids, np.zeros_like(ids), np.array([len(token_ids)]), np.array([rng.getrandbits(64)], dtype=np.uint64),
        np.array([False]), max_predictions_per_seq=config.max_predictions_per_seq,
        masked_lm_prob=config.masked_lm_prob, whole_word_masking=config.whole_word_masking,
        vocab=vocab.batched(),
    )  # fmt: skip
    count = int(finished.masked_counts[0])
    return (
        finished.input_ids[0].tolist(),
        finished.masked_lm_positions[0, :count].tolist(),
        finished.masked_lm_ids[0, :count].tolist(),
    )


def _instance(finished: batched.Finished, row: int, doc_id: str, dupe_index: int, instance_index: int,
              b_doc_id: str, b_first_segment: int) -> PretrainingInstance:  # fmt: skip
    length, count = int(finished.lengths[row]), int(finished.masked_counts[row])
    return PretrainingInstance(
        doc_id=doc_id,
        dupe_index=dupe_index,
        instance_index=instance_index,
        input_ids=finished.input_ids[row, :length].tolist(),
        segment_ids=finished.segment_ids[row, :length].tolist(),
        masked_lm_positions=finished.masked_lm_positions[row, :count].tolist(),
        masked_lm_ids=finished.masked_lm_ids[row, :count].tolist(),
        is_random_next=bool(finished.is_random_next[row]),
        b_doc_id=b_doc_id,
        b_first_segment=b_first_segment,
    )


def instance_key(seed: int, doc_id: str, dupe_index: int, instance_index: int) -> int:
    """An instance's 64-bit key (its trimming, masking and output-order draws)."""
    return int(batched.instance_keys(copy_hash(seed, doc_id, dupe_index), np.array([instance_index]))[0])


def finish_instance(
    doc_id: str,
    dupe_index: int,
    instance_index: int,
    tokens_a: Sequence[int],
    tokens_b: Sequence[int],
    *,
    is_random_next: bool,
    b_doc_id: str,
    b_first_segment: int,
    config: PretrainingConfig,
    vocab: MaskingVocabulary,
) -> PretrainingInstance:
    """Trims, assembles [CLS] A [SEP] B [SEP] and masks one instance (`batched.finish` on a
    batch of one: the same result as in any batch)."""
    key = instance_key(config.random_seed, doc_id, dupe_index, instance_index)
    pool = np.concatenate([np.asarray(tokens_a, dtype=np.int64), np.asarray(tokens_b, dtype=np.int64)])
    la = len(tokens_a)
    finished = _finish_batch(pool, [0], [la], [la], [len(pool)], [key], [is_random_next], config, vocab.batched())
    return _instance(finished, 0, doc_id, dupe_index, instance_index, b_doc_id, b_first_segment)


def plan_document_instances(
    document: TokenizedDocument,
    dupe_index: int,
    config: PretrainingConfig,
    index: DocumentIndex,
    vocab: MaskingVocabulary,
) -> Iterator[PretrainingInstance | PendingInstance]:
    """`plan_copy` on a list-of-sentences document: finished instances for actual-next pairs
    and `PendingInstance`s for random-next pairs, whose segment B lives in another document."""
    compact = CompactDocument.from_tokenized(document)
    tokens, bounds = compact.tokens.tolist(), compact.bounds.tolist()
    for item in plan_copy(document.doc_id, bounds, dupe_index, config, index):
        if isinstance(item, PlannedRandomNext):
            yield PendingInstance(
                document.doc_id, dupe_index, item.instance_index, tokens[item.a_lo : item.a_hi],
                item.random_doc_id, item.random_start_fraction, item.target_b_length,
                instance_key(config.random_seed, document.doc_id, dupe_index, item.instance_index),
            )  # fmt: skip
        else:
            yield finish_instance(
                document.doc_id, dupe_index, item.instance_index, tokens[item.a_lo : item.a_hi],
                tokens[item.b_lo : item.b_hi], is_random_next=False, b_doc_id=document.doc_id,
                b_first_segment=item.b_first_segment, config=config, vocab=vocab,
            )  # fmt: skip


def finish_pending_instance(
    pending: PendingInstance,
    random_document: TokenizedDocument,
    config: PretrainingConfig,
    vocab: MaskingVocabulary,
) -> PretrainingInstance:
    """Completes a random-next instance with segment B from `random_document`."""
    b_first_segment, tokens_b = take_random_segment(
        random_document.segments, pending.random_start_fraction, pending.target_b_length
    )
    return finish_instance(
        pending.doc_id, pending.dupe_index, pending.instance_index, pending.tokens_a, tokens_b,
        is_random_next=True, b_doc_id=random_document.doc_id, b_first_segment=b_first_segment,
        config=config, vocab=vocab,
    )  # fmt: skip


# ----------------------------------------------------------------------------- encoding


def finished_to_examples(finished: batched.Finished, config: PretrainingConfig) -> list[bytes]:
    """Serialized tf.train.Examples of a batch of finished instances (the features in the
    module docstring; bytes as protobuf's deterministic serialization)."""
    pos = np.arange(config.max_seq_length)[None, :]
    slots = np.arange(config.max_predictions_per_seq)[None, :]
    return batched.encode_examples(
        {
            INPUT_IDS: finished.input_ids,
            INPUT_MASK: (pos < finished.lengths[:, None]).astype(np.int64),
            SEGMENT_IDS: finished.segment_ids,
            MASKED_LM_POSITIONS: finished.masked_lm_positions,
            MASKED_LM_IDS: finished.masked_lm_ids,
            NEXT_SENTENCE_LABEL: finished.is_random_next.astype(np.int64)[:, None],
        },
        {MASKED_LM_WEIGHTS: (slots < finished.masked_counts[:, None]).astype(np.float32)},
    )


def instance_to_example(instance: PretrainingInstance, config: PretrainingConfig, pad_id: int = 0) -> bytes:
    """Pads an instance to the fixed shapes and serializes it as a tf.train.Example."""
    length, count = len(instance.input_ids), len(instance.masked_lm_positions)
    input_ids = np.full((1, config.max_seq_length), pad_id, dtype=np.int64)
    input_ids[0, :length] = instance.input_ids
    segment_ids = np.zeros((1, config.max_seq_length), dtype=np.int64)
    segment_ids[0, :length] = instance.segment_ids
    positions = np.zeros((1, config.max_predictions_per_seq), dtype=np.int64)
    positions[0, :count] = instance.masked_lm_positions
    labels = np.zeros_like(positions)
    labels[0, :count] = instance.masked_lm_ids
    finished = batched.Finished(
        input_ids, segment_ids, np.array([length]), positions, labels, np.array([count]),
        np.array([instance.is_random_next]),
    )  # fmt: skip
    return finished_to_examples(finished, config)[0]


def sort_keys(keys: np.ndarray, identities: list[bytes]) -> tuple[np.ndarray, list[bytes]]:
    """(output-order hashes, unique sort keys) of instances: the keys' order is a seeded
    pseudo-random shuffle (Google shuffles its instances too, so that a document's
    instances are not adjacent); `identities` make them unique."""
    order = batched.mix64(np.asarray(keys, dtype=np.uint64) ^ batched.ORDER)
    prefixes = order.astype(">u8").tobytes()
    return order, [prefixes[8 * i : 8 * i + 8] + identity for i, identity in enumerate(identities)]


def _signed64(key: int) -> int:
    """A uint64 key as the int64 with the same bits (Beam's fast coder takes int64s)."""
    return key - (1 << 64) if key >= 1 << 63 else key


def _identity(doc_id: str, dupe_index: int, instance_index: int) -> bytes:
    return f"{doc_id}\x00{dupe_index}\x00{instance_index}".encode()


def pretraining_schema(config: PretrainingConfig) -> Any:
    """The TFMD schema (tensorflow_metadata Schema proto) of the output examples."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = schema_pb2.Schema()
    shapes = {
        INPUT_IDS: (schema_pb2.INT, config.max_seq_length),
        INPUT_MASK: (schema_pb2.INT, config.max_seq_length),
        SEGMENT_IDS: (schema_pb2.INT, config.max_seq_length),
        MASKED_LM_POSITIONS: (schema_pb2.INT, config.max_predictions_per_seq),
        MASKED_LM_IDS: (schema_pb2.INT, config.max_predictions_per_seq),
        MASKED_LM_WEIGHTS: (schema_pb2.FLOAT, config.max_predictions_per_seq),
        NEXT_SENTENCE_LABEL: (schema_pb2.INT, 1),
    }
    for name, (feature_type, length) in shapes.items():
        feature = schema.feature.add(name=name, type=feature_type)
        feature.shape.dim.add(size=length)
        feature.presence.min_fraction = 1.0
        feature.presence.min_count = 1
    return schema


def write_schema(config: PretrainingConfig, directory: str) -> str:
    """Writes `schema.pbtxt` (text format, as TFX's SchemaGen does) into `directory`."""
    from apache_beam.io.filesystems import FileSystems
    from google.protobuf import text_format

    path = f"{directory.rstrip('/')}/{SCHEMA_FILE}"
    with FileSystems.create(path) as out:
        out.write(text_format.MessageToString(pretraining_schema(config)).encode("utf-8"))
    return path


# ----------------------------------------------------------------------------- Beam


class _Progress:
    """Counts rows for `pipeline.beam_progress` (progress lines, a Beam counter) when a label
    is given; a no-op otherwise."""

    def __init__(self, label: str | None, noun: str):
        self._rows = None
        if label is not None:
            from pipeline.beam_progress import CountRows

            self._rows = CountRows(f"{label} {noun}", noun, stream="console")

    def add(self, rows: int) -> None:
        if self._rows is not None:
            self._rows.count(rows)


class Tokenizer:
    """Serving's tokenization (`serving.text_encoder.wordpiece_ids`, what
    `BertTextEncoder.tokenize` runs) without `BertTextEncoder`'s tf.Module, whose tracking of the 30k-token vocabulary list
    costs each worker a quarter of a second."""

    def __init__(self, vocabulary: list[str], lower_case: bool):
        from serving import text_encoder

        self._text_encoder = text_encoder
        self._lower_case = lower_case
        self._basic = text_encoder.basic_tokenizer()
        self._wordpiece = text_encoder.wordpiece_tokenizer(vocabulary)

    def __call__(self, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Sentences -> (int32 ids of all sentences, int64 row splits [sentences + 1])."""
        import tensorflow as tf

        pieces = self._text_encoder.wordpiece_ids(tf.constant(sentences), self._basic,
                                                  self._wordpiece, self._lower_case)
        return pieces.flat_values.numpy(), pieces.row_splits.numpy().astype(np.int64)


def compact_documents(
    documents: Sequence[text_ingestion.Document], tokenizer: Callable[[list[str]], tuple[np.ndarray, np.ndarray]]
) -> list[CompactDocument]:
    """Tokenizes documents in one tokenizer call; sentences without tokens are dropped, and
    documents left without any."""
    sentences = [sentence for document in documents for sentence in document.sentences]
    if not sentences:
        return []
    flat, splits = tokenizer(sentences)
    compact = []
    first = 0
    for document in documents:
        last = first + len(document.sentences)
        bounds = np.unique(splits[first : last + 1])  # Empty sentences repeat a boundary.
        first = last
        if bounds.size >= 2:
            compact.append(CompactDocument(document.doc_id, flat[bounds[0] : bounds[-1]].copy(), bounds - bounds[0]))
    return compact


class _TokenizeFn(beam.DoFn):
    """A batch of documents (`Document`s, or their serialized tf.Examples) -> one list of
    `CompactDocument`s."""

    def __init__(self, vocabulary: list[str], lower_case: bool, progress_label: str | None = None):
        # One string pickles in a blink; a list of 30k strings takes Beam's pickler ~1 s.
        self._vocabulary_lines = "\n".join(vocabulary)
        self._lower_case = lower_case
        self._progress_label = progress_label
        self._tokenizer = None
        self._tokens = beam.metrics.Metrics.counter("bertpipe", "input_tokens")

    def setup(self):
        self._tokenizer = Tokenizer(self._vocabulary_lines.split("\n"), self._lower_case)
        self._documents = _Progress(self._progress_label, "documents")

    def process(self, batch: list) -> Iterator[list[CompactDocument]]:
        documents = [text_ingestion.example_to_document(d) if isinstance(d, bytes) else d for d in batch]
        self._documents.add(len(documents))
        compact = compact_documents(documents, self._tokenizer)
        self._tokens.inc(sum(int(d.tokens.size) for d in compact))
        if compact:
            yield compact


class TokenizeDocuments(beam.PTransform):
    """PCollection[Document] -> PCollection[TokenizedDocument] (documents without any token
    are dropped)."""

    def __init__(self, vocabulary: list[str], lower_case: bool):
        super().__init__()
        self._vocabulary = vocabulary
        self._lower_case = lower_case

    def expand(self, documents: beam.PCollection) -> beam.PCollection:
        return (
            documents
            # Batching amortizes the per-call cost of the TF tokenizer; results do not depend
            # on how documents are batched.
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=_TOKENIZE_BATCH_DOCUMENTS)
            | "Tokenize" >> beam.ParDo(_TokenizeFn(self._vocabulary, self._lower_case))
            | "Unbatch" >> beam.FlatMap(lambda batch: [document.to_tokenized() for document in batch])
        )


class _Emitter:
    """What the instance steps output: `PretrainingInstance`s (for tests and tools), or
    per output shard one (shard, [(sort key, serialized tf.Example), ...]) element per batch
    (the pipeline: a few large elements instead of one Python object per example)."""

    def __init__(self, config: PretrainingConfig, num_shards: int | None, progress_label: str | None):
        self._config = config
        self._num_shards = num_shards
        self._progress_label = progress_label
        self._examples = None

    def setup(self) -> None:
        self._examples = _Progress(self._progress_label, "examples")

    def emit(self, finished: batched.Finished, keys: np.ndarray, meta: list[tuple]) -> Iterator[Any]:
        """`meta`: per row (doc_id, dupe_index, instance_index, b_doc_id, b_first_segment)."""
        self._examples.add(len(meta))
        if self._num_shards is None:
            for row, (doc_id, dupe, instance, b_doc_id, b_first) in enumerate(meta):
                yield _instance(finished, row, doc_id, dupe, instance, b_doc_id, b_first)
            return
        records = finished_to_examples(finished, self._config)
        order, keys_bytes = sort_keys(keys, [_identity(m[0], m[1], m[2]) for m in meta])
        shards = (order % np.uint64(self._num_shards)).astype(np.int64).tolist()
        by_shard: dict[int, list[tuple[bytes, bytes]]] = {}
        for shard, key, record in zip(shards, keys_bytes, records, strict=True):
            by_shard.setdefault(shard, []).append((key, record))
        yield from by_shard.items()


class _FinishingDoFn(beam.DoFn):
    """What the two instance-finishing steps share: the config, the masking vocabulary (its
    batched form built once per worker) and the emitter."""

    def __init__(self, config: PretrainingConfig, vocab: MaskingVocabulary, emitter: _Emitter):
        self._config = config
        self._vocab = vocab
        self._emitter = emitter

    def setup(self):
        self._batched_vocab = self._vocab.batched()
        self._emitter.setup()


class _PlanFn(_FinishingDoFn):
    """A batch of documents -> their finished actual-next instances (main output, as the
    emitter emits them) and (random doc id, pending tuple) pairs for the random-next ones
    (the tuple's fields: `_FinishRandomNextFn.process`)."""

    PENDING_TAG = "pending"

    def process(self, documents: list[CompactDocument], index: DocumentIndex) -> Iterator[Any]:
        config = self._config
        offsets = np.cumsum([0] + [d.tokens.size for d in documents]).tolist()
        pool = np.concatenate([d.tokens for d in documents])
        a_lo, a_hi, b_lo, b_hi, keys, meta = [], [], [], [], [], []
        for document, offset in zip(documents, offsets, strict=False):
            bounds = document.bounds.tolist()
            for dupe_index in range(config.dupe_factor):
                planned = plan_copy(document.doc_id, bounds, dupe_index, config, index)
                copy_keys = batched.instance_keys(
                    copy_hash(config.random_seed, document.doc_id, dupe_index), np.arange(len(planned))
                ).tolist()
                for item in planned:
                    key = copy_keys[item.instance_index]
                    if isinstance(item, PlannedRandomNext):
                        # Plain tuples of primitives: Beam's fast coder encodes them
                        # without pickling (a NamedTuple or numpy array would be pickled).
                        yield beam.pvalue.TaggedOutput(self.PENDING_TAG, (item.random_doc_id, (
                            document.doc_id, dupe_index, item.instance_index,
                            document.tokens[item.a_lo : item.a_hi].tobytes(), item.random_start_fraction,
                            item.target_b_length, _signed64(key),
                        )))  # fmt: skip
                    else:
                        a_lo.append(offset + item.a_lo)
                        a_hi.append(offset + item.a_hi)
                        b_lo.append(offset + item.b_lo)
                        b_hi.append(offset + item.b_hi)
                        keys.append(key)
                        meta.append((document.doc_id, dupe_index, item.instance_index, document.doc_id,
                                     item.b_first_segment))  # fmt: skip
        if meta:
            keys = np.array(keys, dtype=np.uint64)
            finished = _finish_batch(pool, a_lo, a_hi, b_lo, b_hi, keys, [False] * len(meta), config,
                                     self._batched_vocab)  # fmt: skip
            yield from self._emitter.emit(finished, keys, meta)


class _FinishRandomNextFn(_FinishingDoFn):
    """A batch of (doc id, {"document": [it], "pending": [...]}) joins -> the finished
    random-next instances whose segment B comes from that document."""

    def process(self, groups: list[tuple[str, dict[str, list]]]) -> Iterator[Any]:
        """`groups`: (doc id, {"document": [CompactDocument], "pending": [(doc_id,
        dupe_index, instance_index, segment A's int32 bytes, start fraction, target B
        length, signed key)...]})."""
        pieces, size = [], 0
        a_lo, a_hi, b_lo, b_hi, keys, meta = [], [], [], [], [], []
        for _, group in groups:
            if not group["pending"]:
                continue
            (document,) = group["document"]
            bounds = document.bounds.tolist()
            pieces.append(document.tokens)
            doc_offset, size = size, size + document.tokens.size
            for doc_id, dupe_index, instance_index, tokens_a, start_fraction, target_b_length, key in group["pending"]:
                first, lo, hi = random_segment_range(bounds, start_fraction, target_b_length)
                pieces.append(np.frombuffer(tokens_a, dtype=np.int32))
                a_lo.append(size)
                size += pieces[-1].size
                a_hi.append(size)
                b_lo.append(doc_offset + lo)
                b_hi.append(doc_offset + hi)
                keys.append(key)
                meta.append((doc_id, dupe_index, instance_index, document.doc_id, first))
        if meta:
            keys = np.array(keys, dtype=np.int64).view(np.uint64)
            finished = _finish_batch(np.concatenate(pieces), a_lo, a_hi, b_lo, b_hi, keys, [True] * len(meta),
                                     self._config, self._batched_vocab)  # fmt: skip
            yield from self._emitter.emit(finished, keys, meta)


class _CreateInstances(beam.PTransform):
    """PCollection[list[CompactDocument]] of one split -> what `emitter` emits.

    Random-next segments are taken from other documents of the same PCollection: the
    pending instances are joined with their random document by doc id (CoGroupByKey), so
    no worker ever needs the whole corpus in memory.
    """

    def __init__(self, config: PretrainingConfig, vocabulary: list[str], emitter: _Emitter):
        super().__init__()
        self._config = config
        self._vocab = MaskingVocabulary.from_tokens(vocabulary)
        self._emitter = emitter

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        index = (
            batches
            | "DocIds" >> beam.FlatMap(lambda batch: [document.doc_id for document in batch])
            | "CollectDocIds" >> beam.combiners.ToList()
            | "IndexDocIds" >> beam.Map(DocumentIndex)
        )
        planned = batches | "Plan" >> beam.ParDo(
            _PlanFn(self._config, self._vocab, self._emitter), index=beam.pvalue.AsSingleton(index)
        ).with_outputs(_PlanFn.PENDING_TAG, main="finished")
        random_next = (
            {
                "document": batches
                | "KeyById" >> beam.FlatMap(lambda batch: [(document.doc_id, document) for document in batch]),
                "pending": planned[_PlanFn.PENDING_TAG],
            }
            | "JoinRandomDocument" >> beam.CoGroupByKey()
            | "BatchJoined" >> beam.BatchElements(min_batch_size=1, max_batch_size=_GROUP_BATCH)
            | "FinishRandomNext" >> beam.ParDo(_FinishRandomNextFn(self._config, self._vocab, self._emitter))
        )
        return (planned.finished, random_next) | "AllInstances" >> beam.Flatten()


class CreatePretrainingInstances(beam.PTransform):
    """PCollection[TokenizedDocument] of one split -> PCollection[PretrainingInstance].

    Random-next segments are taken from other documents of the same PCollection.
    """

    def __init__(self, config: PretrainingConfig, vocabulary: list[str]):
        super().__init__()
        self._config = config
        self._vocabulary = vocabulary

    def expand(self, documents: beam.PCollection) -> beam.PCollection:
        return (
            documents
            | "Compact" >> beam.Map(CompactDocument.from_tokenized)
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=_TOKENIZE_BATCH_DOCUMENTS)
            | "Instances" >> _CreateInstances(self._config, self._vocabulary, _Emitter(self._config, None, None))
        )


class _WriteShardFn(beam.DoFn):
    """(shard, batches of (sort key, record)) -> that shard's GZIP TFRecord file, sorted by
    key (as `common.WriteSortedTFRecords`, which takes one element per record)."""

    def __init__(self, output_dir: str, num_shards: int):
        self._output_dir = output_dir
        self._num_shards = num_shards

    def process(self, shard_and_batches: tuple[int, Iterable[list[tuple[bytes, bytes]]]]) -> Iterator[str]:
        import tensorflow as tf  # Lazy: only workers that write pay for importing TF.

        shard, batches = shard_and_batches
        records = sorted(record for batch in batches for record in batch)  # Keys are unique.
        tf.io.gfile.makedirs(self._output_dir)
        path = os.path.join(self._output_dir, common.shard_file_name(shard, self._num_shards))
        # The whole shard is written in one go and overwrites any previous attempt, so a
        # retried bundle cannot leave duplicates behind. TF's GZIP writer leaves the gzip
        # header's mtime at 0, so equal records give byte-identical files. zlib level 1:
        # twice as fast as the default level 6 on these records, for files ~6% larger.
        options = tf.io.TFRecordOptions(compression_type="GZIP", compression_level=1)
        with tf.io.TFRecordWriter(path, options=options) as writer:
            for _, record in records:
                writer.write(record)
        beam.metrics.Metrics.counter("bertpipe", "records_written").inc(len(records))
        yield path


class GeneratePretrainingExamples(beam.PTransform):
    """Text-document TFRecords of one split (TextExampleGen's output) -> pretraining
    example TFRecords in `output_dir`, every shard file sorted by a seeded hash.

    Args:
        input_file_pattern: TFRecord files of `doc_id`/`sentences` tf.Examples.
        output_dir: where the shards go (a `Split-<name>` directory).
        vocabulary: WordPiece tokens, index = id.
        lower_case: whether the vocabulary is uncased.
        config: the recipe's parameters.
        num_shards: output files; each is sorted in one worker's memory.
        progress_label: when given, the documents read and the examples written are counted
            (`pipeline.beam_progress.CountRows`, lines on the console) under
            `<progress_label> documents` and `<progress_label> examples`; None: not counted.
    """

    def __init__(
        self,
        input_file_pattern: str,
        output_dir: str,
        vocabulary: list[str],
        lower_case: bool,
        config: PretrainingConfig,
        num_shards: int = 1,
        progress_label: str | None = None,
    ):
        super().__init__()
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        self._input_file_pattern = input_file_pattern
        self._output_dir = output_dir
        self._vocabulary = vocabulary
        self._lower_case = lower_case
        self._config = config
        self._num_shards = num_shards
        self._progress_label = progress_label

    def expand(self, pipeline: beam.pvalue.PBegin) -> beam.PCollection:
        emitter = _Emitter(self._config, self._num_shards, self._progress_label)
        records = (
            pipeline
            | "ReadDocuments" >> beam.io.ReadFromTFRecord(self._input_file_pattern)
            # A fusion break: a runner may read a file in one worker, but the documents
            # are then spread over all workers, so tokenization runs in parallel too.
            | "SpreadDocuments" >> beam.Reshuffle()
            | "BatchDocuments" >> beam.BatchElements(min_batch_size=1, max_batch_size=_TOKENIZE_BATCH_DOCUMENTS)
            | "Tokenize" >> beam.ParDo(_TokenizeFn(self._vocabulary, self._lower_case, self._progress_label))
            | "CreateInstances" >> _CreateInstances(self._config, self._vocabulary, emitter)
        )
        every_shard = pipeline | "ShardIds" >> beam.Create([(shard, []) for shard in range(self._num_shards)])
        return (
            (records, every_shard)
            | "WithEveryShard" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(_WriteShardFn(self._output_dir, self._num_shards))
        )
