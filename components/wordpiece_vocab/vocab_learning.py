"""WordPiece vocabularies: learned from documents on Beam, or imported; the artifact layout.

The data logic of `WordpieceVocab`, free of TFX. Learning reuses tensorflow-text's
vocabulary tool (`tensorflow_text.tools.wordpiece_vocab`, the algorithm behind
`bert_vocab_from_dataset`): Beam splits sentences into words the way serving's tokenizer
does and counts them in parallel (pre-aggregated per batch, then summed per
word), and the learner (`wordpiece_tokenizer_learner_lib.learn`) turns the counts into a
vocabulary on one worker. The counts are sorted first, so equal input gives an equal
vocabulary.

Vocabulary directory (the artifact):
    vocab.txt          one token a line, id = line number (BERT's format)
    vocab_config.json  {"lower_case": bool, "vocab_size": int, "source": "learned"|"imported"}
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam

from bert_keras.vocabulary import REQUIRED_TOKENS, read_vocabulary

VOCAB_FILE = "vocab.txt"
CONFIG_FILE = "vocab_config.json"
SOURCE_LEARNED = "learned"
SOURCE_IMPORTED = "imported"

# BERT's specials first, so that [PAD] gets id 0 (the padding value of pretraining data).
DEFAULT_RESERVED_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

_COUNT_BATCH_DOCUMENTS = 32


@dataclasses.dataclass(frozen=True)
class VocabLearningConfig:
    """Parameters of vocabulary learning.

    Attributes:
        vocab_size: the most tokens to learn (reserved ones included); a small corpus can
            give fewer (the learner accepts down to 5% under, then keeps what it has).
        lower_case: learn an uncased vocabulary (lower-cased, accents stripped).
        reserved_tokens: tokens put first, in this order.
        max_token_length: words longer than this (in characters) are not counted.
        max_unique_chars: the alphabet is cut to the most frequent characters.
    """

    vocab_size: int = 30522
    lower_case: bool = True
    reserved_tokens: tuple[str, ...] = DEFAULT_RESERVED_TOKENS
    max_token_length: int = 50
    max_unique_chars: int = 1000

    def __post_init__(self):
        if self.vocab_size <= len(self.reserved_tokens):
            raise ValueError(f"vocab_size {self.vocab_size} leaves no room after the reserved tokens")
        missing = [token for token in REQUIRED_TOKENS if token not in self.reserved_tokens]
        if missing:
            raise ValueError(f"reserved_tokens must include {missing}")
        if len(set(self.reserved_tokens)) != len(self.reserved_tokens):
            raise ValueError(f"reserved_tokens has duplicates: {self.reserved_tokens}")


def make_word_splitter(lower_case: bool) -> Any:
    """Returns a function: [batch] string tensor -> ragged [batch, (words)] strings.

    Words are cut exactly as serving's `BertTextEncoder.tokenize` cuts them before
    WordPiece (its `normalize_text`, then tf-text's BERT BasicTokenizer for whitespace and
    punctuation), so the learned pieces are the ones the encoder will look up.
    """
    from tensorflow_text.python.ops.bert_tokenizer import BasicTokenizer

    from serving.text_encoder import normalize_text

    basic = BasicTokenizer(lower_case=False, normalization_form=None)
    return lambda texts: basic.tokenize(normalize_text(texts, lower_case))


def learn_vocabulary(word_counts: Iterable[tuple[str, int]], config: VocabLearningConfig) -> list[str]:
    """Learns a WordPiece vocabulary from (word, count) pairs with tf-text's learner."""
    from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

    # Sorted, so that the learner's result cannot depend on the order counts arrived in.
    counts = sorted(word_counts, key=lambda word_count: (-word_count[1], word_count[0]))
    if not counts:
        raise ValueError("no words to learn a vocabulary from")
    vocabulary = learner.learn(
        counts,
        vocab_size=config.vocab_size,
        reserved_tokens=list(config.reserved_tokens),
        max_token_length=config.max_token_length,
        max_unique_chars=config.max_unique_chars,
    )
    validate_vocabulary(vocabulary)
    return vocabulary


class _CountWordsFn(beam.DoFn):
    """Batches of `Document`s -> (word, count) pairs, pre-aggregated per batch."""

    def __init__(self, lower_case: bool):
        self._lower_case = lower_case
        self._split_words = None

    def setup(self):
        self._split_words = make_word_splitter(self._lower_case)

    def process(self, documents: list[Any]) -> Iterator[tuple[str, int]]:
        import tensorflow as tf

        sentences = [sentence for document in documents for sentence in document.sentences]
        if not sentences:
            return
        words = self._split_words(tf.constant(sentences)).flat_values.numpy()
        counts = Counter(words.tolist())
        for word, count in counts.items():
            yield word.decode("utf-8"), count


class CountWords(beam.PTransform):
    """PCollection[Document] -> PCollection[(word, total count)]."""

    def __init__(self, lower_case: bool):
        super().__init__()
        self._lower_case = lower_case

    def expand(self, documents: beam.PCollection) -> beam.PCollection:
        return (
            documents
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=_COUNT_BATCH_DOCUMENTS)
            | "CountInBatch" >> beam.ParDo(_CountWordsFn(self._lower_case))
            | "SumPerWord" >> beam.CombinePerKey(sum)
        )


class LearnVocabulary(beam.PTransform):
    """PCollection[Document] -> a one-element PCollection holding the vocabulary (list[str])."""

    def __init__(self, config: VocabLearningConfig):
        super().__init__()
        self._config = config

    def expand(self, documents: beam.PCollection) -> beam.PCollection:
        return (
            documents
            | "CountWords" >> CountWords(self._config.lower_case)
            | "CollectCounts" >> beam.combiners.ToList()
            | "Learn" >> beam.Map(learn_vocabulary, self._config)
        )


class LearnVocabularyFromTextExamples(beam.PTransform):
    """TextExampleGen TFRecords (`doc_id`/`sentences` tf.Examples) -> a learned vocabulary
    directory at `output_dir`. Returns a one-element PCollection with the vocabulary."""

    def __init__(self, file_patterns: list[str], config: VocabLearningConfig, output_dir: str):
        super().__init__()
        self._file_patterns = list(file_patterns)
        self._config = config
        self._output_dir = output_dir

    def expand(self, pipeline: beam.pvalue.PBegin) -> beam.PCollection:
        from components.text_example_gen import text_ingestion

        examples = [
            pipeline | f"Read[{i}]" >> beam.io.ReadFromTFRecord(pattern)
            for i, pattern in enumerate(self._file_patterns)
        ]
        vocabulary = (
            examples
            | "Flatten" >> beam.Flatten()
            | "Parse" >> beam.Map(text_ingestion.example_to_document)
            | "Learn" >> LearnVocabulary(self._config)
        )
        _ = vocabulary | "Write" >> beam.Map(
            lambda tokens, directory, lower_case: write_vocabulary_dir(
                directory, tokens, lower_case, SOURCE_LEARNED
            ),
            self._output_dir,
            self._config.lower_case,
        )
        return vocabulary


# ----------------------------------------------------------------------------- artifact files


def validate_vocabulary(tokens: list[str]) -> None:
    """Raises ValueError unless `tokens` is usable as a BERT vocabulary."""
    missing = [token for token in REQUIRED_TOKENS if token not in tokens]
    if missing:
        raise ValueError(f"vocabulary lacks the special tokens {missing}")
    blank = [i for i, token in enumerate(tokens) if not token.strip()]
    if blank:
        raise ValueError(f"vocabulary has blank tokens at ids {blank[:10]}")
    if len(set(tokens)) != len(tokens):
        duplicates = sorted(token for token, n in Counter(tokens).items() if n > 1)
        raise ValueError(f"vocabulary has duplicate tokens {duplicates[:10]}")


def write_vocabulary_dir(directory: str, tokens: list[str], lower_case: bool, source: str) -> None:
    """Writes vocab.txt and vocab_config.json into `directory` (any TF filesystem)."""
    import tensorflow as tf

    validate_vocabulary(tokens)
    tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(os.path.join(directory, VOCAB_FILE), "w") as vocab_file:
        vocab_file.write("".join(token + "\n" for token in tokens))
    write_vocabulary_config(directory, len(tokens), lower_case, source)


def write_vocabulary_config(directory: str, vocab_size: int, lower_case: bool, source: str) -> None:
    import tensorflow as tf

    config = {"lower_case": bool(lower_case), "vocab_size": int(vocab_size), "source": source}
    with tf.io.gfile.GFile(os.path.join(directory, CONFIG_FILE), "w") as config_file:
        config_file.write(json.dumps(config, sort_keys=True) + "\n")


def read_vocabulary_config(directory: str) -> dict[str, Any]:
    """The vocab_config.json of a vocabulary directory."""
    import tensorflow as tf

    with tf.io.gfile.GFile(os.path.join(directory, CONFIG_FILE)) as config_file:
        return json.load(config_file)


def read_vocabulary_dir(directory: str) -> tuple[list[str], bool]:
    """Reads a vocabulary directory: (tokens, lower_case)."""
    tokens = read_vocabulary(os.path.join(directory, VOCAB_FILE))
    return tokens, bool(read_vocabulary_config(directory)["lower_case"])
