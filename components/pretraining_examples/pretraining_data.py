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
    which cannot be distributed. Here every random decision comes from an RNG seeded by a
    hash of (seed, doc_id, dupe index[, instance index], purpose): a document copy's
    chunking from (seed, doc_id, dupe), an instance's trimming and masking from (seed,
    doc_id, dupe, instance), the output order from a hash too. Output is therefore
    byte-identical for the same seed whatever the number of workers, the bundle
    boundaries or the element order; the distributions are Google's.
  - Random-next segments. Google tries 10 random documents to find one that is not the
    current one (and would use the current one if all 10 fail). Here the other document is
    drawn uniformly among the OTHER documents of the split (so a split needs >= 2), from a
    side input listing all doc ids; its segments are then fetched by a join keyed by doc id
    (CoGroupByKey), so no worker ever needs the whole corpus in memory. The start sentence
    is drawn as a uniform fraction of the other document's length.
  - Whole-word masking: a "##" piece only joins the candidate of the piece right before
    it; Google's code also glued a segment-initial "##" piece to the last word before a
    [SEP].
  - Tokenization is serving's in-graph `BertTextEncoder.tokenize`, so ids match serving.

Output features (int64 unless noted), padded with 0 like Google's writer:
  input_ids, input_mask, segment_ids          [max_seq_length]
  masked_lm_positions, masked_lm_ids          [max_predictions_per_seq]
  masked_lm_weights (float)                   [max_predictions_per_seq]
  next_sentence_label                         [1]   1 = random next, 0 = actual next
(Google's files name the last one "next_sentence_labels".)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import apache_beam as beam

from components import common
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

_TOKENIZE_BATCH_DOCUMENTS = 32


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


class TokenizedDocument(NamedTuple):
    doc_id: str
    segments: list[list[int]]  # One list of WordPiece ids per non-empty sentence.


class PendingInstance(NamedTuple):
    """An instance whose segment B still has to be fetched from another document."""

    doc_id: str
    dupe_index: int
    instance_index: int
    tokens_a: list[int]
    random_doc_id: str
    random_start_fraction: float  # Start sentence = int(fraction * its sentence count).
    target_b_length: int


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


def plan_document_instances(
    document: TokenizedDocument,
    dupe_index: int,
    config: PretrainingConfig,
    index: DocumentIndex,
    vocab: MaskingVocabulary,
) -> Iterator[PretrainingInstance | PendingInstance]:
    """Google's `create_instances_from_document` for one copy of one document.

    Yields finished instances for actual-next pairs and `PendingInstance`s for random-next
    pairs, whose segment B lives in another document.
    """
    segments = document.segments
    rng = common.seeded_rng(config.random_seed, document.doc_id, dupe_index, "plan")
    max_num_tokens = config.max_num_tokens
    target_seq_length = max_num_tokens
    if rng.random() < config.short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)

    instance_index = 0
    current_chunk: list[list[int]] = []
    current_length = 0
    i = 0
    while i < len(segments):
        current_chunk.append(segments[i])
        current_length += len(segments[i])
        if i == len(segments) - 1 or current_length >= target_seq_length:
            a_end = 1
            if len(current_chunk) >= 2:
                a_end = rng.randint(1, len(current_chunk) - 1)
            tokens_a = [token for segment in current_chunk[:a_end] for token in segment]
            if len(current_chunk) == 1 or rng.random() < 0.5:
                yield PendingInstance(
                    doc_id=document.doc_id,
                    dupe_index=dupe_index,
                    instance_index=instance_index,
                    tokens_a=tokens_a,
                    random_doc_id=index.random_other(document.doc_id, rng),
                    random_start_fraction=rng.random(),
                    target_b_length=target_seq_length - len(tokens_a),
                )
                # The unused sentences are "put back" for the next instance.
                i -= len(current_chunk) - a_end
            else:
                tokens_b = [token for segment in current_chunk[a_end:] for token in segment]
                b_first_segment = i - len(current_chunk) + 1 + a_end
                yield finish_instance(
                    document.doc_id, dupe_index, instance_index, tokens_a, tokens_b,
                    is_random_next=False, b_doc_id=document.doc_id,
                    b_first_segment=b_first_segment, config=config, vocab=vocab,
                )  # fmt: skip
            instance_index += 1
            current_chunk = []
            current_length = 0
        i += 1


def take_random_segment(
    segments: list[list[int]], start_fraction: float, target_b_length: int
) -> tuple[int, list[int]]:
    """Google's random-next segment B: sentences from a random start until the target length
    is reached. Returns (index of the first sentence, tokens)."""
    start = min(int(start_fraction * len(segments)), len(segments) - 1)
    tokens_b: list[int] = []
    for segment in segments[start:]:
        tokens_b.extend(segment)
        if len(tokens_b) >= target_b_length:
            break
    return start, tokens_b


def truncate_seq_pair(tokens_a: list[int], tokens_b: list[int], max_num_tokens: int, rng: Any) -> None:
    """Trims the longer segment, from a random end, until the pair fits (in place)."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def create_masked_lm_predictions(
    token_ids: list[int], config: PretrainingConfig, vocab: MaskingVocabulary, rng: Any
) -> tuple[list[int], list[int], list[int]]:
    """Google's masked-LM step. Returns (masked ids, ascending positions, original ids)."""
    candidates: list[list[int]] = []
    for position, token in enumerate(token_ids):
        if token == vocab.cls_id or token == vocab.sep_id:
            continue
        if (
            config.whole_word_masking
            and vocab.is_continuation[token]
            and candidates
            and candidates[-1][-1] == position - 1
        ):
            candidates[-1].append(position)
        else:
            candidates.append([position])
    rng.shuffle(candidates)

    num_to_predict = min(
        config.max_predictions_per_seq, max(1, int(round(len(token_ids) * config.masked_lm_prob)))
    )
    output = list(token_ids)
    masked: list[tuple[int, int]] = []
    for word in candidates:
        if len(masked) >= num_to_predict:
            break
        # A whole word that would overshoot the budget is skipped, as in Google's code.
        if len(masked) + len(word) > num_to_predict:
            continue
        for position in word:
            if rng.random() < 0.8:
                replacement = vocab.mask_id
            elif rng.random() < 0.5:
                replacement = token_ids[position]
            else:
                replacement = rng.randint(0, vocab.size - 1)
            output[position] = replacement
            masked.append((position, token_ids[position]))
    masked.sort()
    return output, [position for position, _ in masked], [label for _, label in masked]


def finish_instance(
    doc_id: str,
    dupe_index: int,
    instance_index: int,
    tokens_a: list[int],
    tokens_b: list[int],
    *,
    is_random_next: bool,
    b_doc_id: str,
    b_first_segment: int,
    config: PretrainingConfig,
    vocab: MaskingVocabulary,
) -> PretrainingInstance:
    """Trims, assembles [CLS] A [SEP] B [SEP] and masks one instance."""
    rng = common.seeded_rng(config.random_seed, doc_id, dupe_index, instance_index, "finish")
    tokens_a, tokens_b = list(tokens_a), list(tokens_b)
    truncate_seq_pair(tokens_a, tokens_b, config.max_num_tokens, rng)
    assert tokens_a and tokens_b, "the recipe never leaves a segment empty"
    token_ids = [vocab.cls_id, *tokens_a, vocab.sep_id, *tokens_b, vocab.sep_id]
    segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
    input_ids, positions, labels = create_masked_lm_predictions(token_ids, config, vocab, rng)
    return PretrainingInstance(
        doc_id=doc_id,
        dupe_index=dupe_index,
        instance_index=instance_index,
        input_ids=input_ids,
        segment_ids=segment_ids,
        masked_lm_positions=positions,
        masked_lm_ids=labels,
        is_random_next=is_random_next,
        b_doc_id=b_doc_id,
        b_first_segment=b_first_segment,
    )


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


def instance_sort_key(instance: PretrainingInstance, seed: int) -> bytes:
    """A unique key whose order is a seeded pseudo-random shuffle of the instances (Google
    shuffles its instances too, so that a document's instances are not adjacent)."""
    shuffle = common.stable_hash64(seed, instance.doc_id, instance.dupe_index, instance.instance_index, "order")
    identity = f"{instance.doc_id}\x00{instance.dupe_index}\x00{instance.instance_index}"
    return shuffle.to_bytes(8, "big") + identity.encode("utf-8")


def instance_to_example(instance: PretrainingInstance, config: PretrainingConfig, pad_id: int = 0) -> bytes:
    """Pads an instance to the fixed shapes and serializes it as a tf.train.Example."""
    from tensorflow.core.example import example_pb2  # Lazy: TF only on the workers.

    seq_padding = [pad_id] * (config.max_seq_length - len(instance.input_ids))
    prediction_padding = [0] * (config.max_predictions_per_seq - len(instance.masked_lm_positions))
    example = example_pb2.Example()
    features = example.features.feature
    features[INPUT_IDS].int64_list.value.extend(instance.input_ids + seq_padding)
    features[INPUT_MASK].int64_list.value.extend([1] * len(instance.input_ids) + [0] * len(seq_padding))
    features[SEGMENT_IDS].int64_list.value.extend(instance.segment_ids + [0] * len(seq_padding))
    features[MASKED_LM_POSITIONS].int64_list.value.extend(instance.masked_lm_positions + prediction_padding)
    features[MASKED_LM_IDS].int64_list.value.extend(instance.masked_lm_ids + prediction_padding)
    features[MASKED_LM_WEIGHTS].float_list.value.extend(
        [1.0] * len(instance.masked_lm_ids) + [0.0] * len(prediction_padding)
    )
    features[NEXT_SENTENCE_LABEL].int64_list.value.append(int(instance.is_random_next))
    # deterministic=True fixes the order of the feature map, so bytes repeat across runs.
    return example.SerializeToString(deterministic=True)


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


class _TokenizeDocumentsFn(beam.DoFn):
    """Batches of `Document`s -> `TokenizedDocument`s, with serving's in-graph tokenizer."""

    def __init__(self, vocabulary: list[str], lower_case: bool):
        # One string pickles in a blink; a list of 30k strings takes Beam's pickler ~1 s.
        self._vocabulary_lines = "\n".join(vocabulary)
        self._lower_case = lower_case
        self._encoder = None
        self._tokens = beam.metrics.Metrics.counter("bertpipe", "input_tokens")

    def setup(self):
        from serving.text_encoder import BertTextEncoder

        vocabulary = self._vocabulary_lines.split("\n")
        self._encoder = BertTextEncoder(vocabulary, max_seq_length=3, lower_case=self._lower_case)

    def process(self, documents: list[text_ingestion.Document]) -> Iterator[TokenizedDocument]:
        import tensorflow as tf

        sentences = [sentence for document in documents for sentence in document.sentences]
        if not sentences:
            return
        pieces = self._encoder.tokenize(tf.constant(sentences))
        flat = pieces.flat_values.numpy().tolist()
        bounds = pieces.row_splits.numpy().tolist()
        self._tokens.inc(len(flat))
        sentence_index = 0
        for document in documents:
            segments = []
            for _ in document.sentences:
                start, end = bounds[sentence_index], bounds[sentence_index + 1]
                sentence_index += 1
                if end > start:  # Sentences of only punctuation-free noise may vanish.
                    segments.append(flat[start:end])
            if segments:
                yield TokenizedDocument(document.doc_id, segments)


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
            | "Tokenize" >> beam.ParDo(_TokenizeDocumentsFn(self._vocabulary, self._lower_case))
        )


class _PlanInstancesFn(beam.DoFn):
    PENDING_TAG = "pending"

    def __init__(self, config: PretrainingConfig, vocab: MaskingVocabulary):
        self._config = config
        self._vocab = vocab

    def process(self, document: TokenizedDocument, index: DocumentIndex) -> Iterator[Any]:
        for dupe_index in range(self._config.dupe_factor):
            for item in plan_document_instances(document, dupe_index, self._config, index, self._vocab):
                if isinstance(item, PendingInstance):
                    yield beam.pvalue.TaggedOutput(self.PENDING_TAG, (item.random_doc_id, item))
                else:
                    yield item


def _finish_random_next(
    doc_id_and_groups: tuple[str, dict[str, list]], config: PretrainingConfig, vocab: MaskingVocabulary
) -> Iterator[PretrainingInstance]:
    doc_id, groups = doc_id_and_groups
    if not groups["pending"]:
        return
    (random_document,) = groups["document"]
    for pending in groups["pending"]:
        yield finish_pending_instance(pending, random_document, config, vocab)


class CreatePretrainingInstances(beam.PTransform):
    """PCollection[TokenizedDocument] of one split -> PCollection[PretrainingInstance].

    Random-next segments are taken from other documents of the same PCollection.
    """

    def __init__(self, config: PretrainingConfig, vocabulary: list[str]):
        super().__init__()
        self._config = config
        self._vocab = MaskingVocabulary.from_tokens(vocabulary)

    def expand(self, documents: beam.PCollection) -> beam.PCollection:
        index = (
            documents
            | "DocIds" >> beam.Map(lambda document: document.doc_id)
            | "CollectDocIds" >> beam.combiners.ToList()
            | "IndexDocIds" >> beam.Map(DocumentIndex)
        )
        planned = documents | "Plan" >> beam.ParDo(
            _PlanInstancesFn(self._config, self._vocab), index=beam.pvalue.AsSingleton(index)
        ).with_outputs(_PlanInstancesFn.PENDING_TAG, main="finished")
        random_next = (
            {
                "document": documents | "KeyById" >> beam.Map(lambda document: (document.doc_id, document)),
                "pending": planned[_PlanInstancesFn.PENDING_TAG],
            }
            | "JoinRandomDocument" >> beam.CoGroupByKey()
            | "FinishRandomNext" >> beam.FlatMap(_finish_random_next, self._config, self._vocab)
        )
        return (planned.finished, random_next) | "AllInstances" >> beam.Flatten()


class WritePretrainingExamples(beam.PTransform):
    """PCollection[PretrainingInstance] -> sorted GZIP TFRecord shards of tf.Examples."""

    def __init__(self, output_dir: str, config: PretrainingConfig, pad_id: int = 0, num_shards: int = 1):
        super().__init__()
        self._output_dir = output_dir
        self._config = config
        self._pad_id = pad_id
        self._num_shards = num_shards

    def expand(self, instances: beam.PCollection) -> beam.PCollection:
        config, pad_id = self._config, self._pad_id
        return (
            instances
            | "Encode"
            >> beam.Map(
                lambda instance: (
                    instance_sort_key(instance, config.random_seed),
                    instance_to_example(instance, config, pad_id),
                )
            )
            | "Write" >> common.WriteSortedTFRecords(self._output_dir, self._num_shards)
        )


class GeneratePretrainingExamples(beam.PTransform):
    """Text-document TFRecords of one split (TextExampleGen's output) -> pretraining
    example TFRecords in `output_dir`.

    Args:
        input_file_pattern: TFRecord files of `doc_id`/`sentences` tf.Examples.
        output_dir: where the shards go (a `Split-<name>` directory).
        vocabulary: WordPiece tokens, index = id.
        lower_case: whether the vocabulary is uncased.
        config: the recipe's parameters.
        num_shards: output files.
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
        self._input_file_pattern = input_file_pattern
        self._output_dir = output_dir
        self._vocabulary = vocabulary
        self._lower_case = lower_case
        self._config = config
        self._num_shards = num_shards
        self._progress_label = progress_label

    def _count(self, what: str) -> beam.PTransform:
        if self._progress_label is None:
            return beam.Map(lambda element: element)
        from pipeline.beam_progress import CountRows

        return beam.ParDo(CountRows(f"{self._progress_label} {what}", what, stream="console"))

    def expand(self, pipeline: beam.pvalue.PBegin) -> beam.PCollection:
        pad_id = self._vocabulary.index("[PAD]")
        return (
            pipeline
            | "ReadDocuments" >> beam.io.ReadFromTFRecord(self._input_file_pattern)
            | "ParseDocuments" >> beam.Map(text_ingestion.example_to_document)
            | "CountDocuments" >> self._count("documents")
            | "Tokenize" >> TokenizeDocuments(self._vocabulary, self._lower_case)
            | "CreateInstances" >> CreatePretrainingInstances(self._config, self._vocabulary)
            | "CountExamples" >> self._count("examples")
            | "WriteExamples"
            >> WritePretrainingExamples(self._output_dir, self._config, pad_id, self._num_shards)
        )
