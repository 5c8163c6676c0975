"""In-graph BERT text encoding: raw strings -> fixed-length token ids, segment ids, padding mask.

One implementation serves the Transform component (training), the exported SavedModel
(serving) and batch scoring, so the three can never tokenize differently. It uses only
TensorFlow and tensorflow-text ops that stock TF Serving loads (core string ops, NormalizeUTF8,
RegexSplitWithOffsets, FastWordpieceTokenizeWithOffsets): no Python at serving time, and the
vocabulary is baked into the graph, so nothing is re-initialised per request. Token ids equal
those of Hugging Face's BertTokenizerFast (tests/test_tokenizer_parity.py).

Example:

>>> encoder = BertTextEncoder(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "!"], 8)
>>> encoder(tf.constant(["Hello world!"]))["token_ids"].numpy().tolist()
[[2, 4, 5, 6, 3, 0, 0, 0]]
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow_text.python.ops.bert_tokenizer import BasicTokenizer

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_CHARS_PER_WORD = 100  # longer words become [UNK], as in BERT's WordPiece


class BertTextEncoder(tf.Module):
    """Tokenizes one or two text segments the way BERT's uncased/cased tokenizers do.

    Args:
        vocabulary: WordPiece tokens, index = id. Must contain [PAD], [UNK], [CLS], [SEP].
        max_seq_length: output length, including [CLS] and [SEP]s; longer inputs are trimmed
            round-robin between segments, shorter ones padded with [PAD].
        lower_case: case-fold and strip accents first (uncased checkpoints).
        pad_to_max_length: pad every row to `max_seq_length` (fixed-length features, as
            Transform writes them); if False, pad a batch only to its longest row, rounded
            up to a multiple of 8 (serving: short texts cost far less compute).
    """

    def __init__(
        self,
        vocabulary: list[str],
        max_seq_length: int,
        lower_case: bool = True,
        pad_to_max_length: bool = True,
    ):
        super().__init__(name="bert_text_encoder")
        self.pad_to_max_length = bool(pad_to_max_length)
        if max_seq_length < 3:
            raise ValueError(f"max_seq_length must be >= 3, got {max_seq_length}")
        self.vocabulary = list(vocabulary)
        self.max_seq_length = int(max_seq_length)
        self.lower_case = bool(lower_case)
        index = {token: i for i, token in enumerate(self.vocabulary)}
        self.pad_id = index["[PAD]"]
        self.cls_id = index["[CLS]"]
        self.sep_id = index["[SEP]"]
        self._basic = basic_tokenizer()
        self._wordpiece = wordpiece_tokenizer(self.vocabulary)

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """[batch] strings -> ragged [batch, (pieces)] int32 WordPiece ids (no specials)."""
        return wordpiece_ids(texts, self._basic, self._wordpiece, self.lower_case)

    def __call__(self, texts: tf.Tensor, second_texts: tf.Tensor | None = None) -> dict:
        """Encodes [batch] strings (and optional second segments) to model inputs.

        Returns int32 tensors of shape [batch, length]: `token_ids`, `segment_ids` and
        `padding_mask` (1 for real tokens, 0 for padding). `length` is `max_seq_length`, or
        with `pad_to_max_length=False` the batch's longest row rounded up to a multiple of 8.
        """
        segments = [self.tokenize(texts)]
        if second_texts is not None:
            segments.append(self.tokenize(second_texts))
        budget = self.max_seq_length - 1 - len(segments)  # [CLS] + one [SEP] per segment
        segments = _trim_longest_first(segments, budget)
        token_ids, segment_ids = tf_text.combine_segments(
            segments, start_of_sequence_id=self.cls_id, end_of_segment_id=self.sep_id
        )
        length = self.max_seq_length
        if not self.pad_to_max_length:
            length = batch_length(token_ids, self.max_seq_length)
        token_ids, padding_mask = tf_text.pad_model_inputs(
            token_ids, max_seq_length=length, pad_value=self.pad_id
        )
        segment_ids, _ = tf_text.pad_model_inputs(segment_ids, max_seq_length=length)
        return {
            "token_ids": tf.cast(token_ids, tf.int32),
            "segment_ids": tf.cast(segment_ids, tf.int32),
            "padding_mask": tf.cast(padding_mask, tf.int32),
        }


def wordpiece_ids(texts: tf.Tensor, basic: BasicTokenizer,
                  wordpiece: tf_text.FastWordpieceTokenizer, lower_case: bool) -> tf.RaggedTensor:
    """[batch] strings -> ragged [batch, (pieces)] int32 WordPiece ids (no specials): BERT's
    normalization, the basic split (`basic_tokenizer`), then WordPiece (`wordpiece_tokenizer`)."""
    words = basic.tokenize(normalize_text(texts, lower_case))  # [batch, (words)]
    pieces = wordpiece.tokenize(unknown_if_too_long(words))  # [batch, (words), (pieces)]
    return pieces.merge_dims(-2, -1)


def normalize_text(texts: tf.Tensor, lower_case: bool) -> tf.Tensor:
    """Normalizes [batch] strings as BERT's tokenizers do (HF `BertNormalizer`).

    Drops NUL, U+FFFD and control/format characters, maps whitespace to spaces and, for
    uncased vocabularies, strips accents (NFD, drop non-spacing marks) and lower-cases
    character by character. Not tf.text's `case_fold_utf8`: that is NFKC case folding, which
    rewrites "…", "ß", "™", "ﬁ", full-width letters... unlike the tokenizer BERT was trained with.
    """
    texts = tf.strings.regex_replace(texts, r"[^\P{C}\t\n\r]|\x{FFFD}", "")
    texts = tf.strings.regex_replace(texts, r"[\t\n\r\p{Z}]", " ")
    if lower_case:
        texts = tf_text.normalize_utf8(texts, "NFD")
        texts = tf.strings.regex_replace(texts, r"\p{Mn}", "")
        # ICU lower-cases a word-final capital sigma to "ς"; BERT's per-character lower() to "σ".
        texts = tf.strings.regex_replace(texts, "\u03a3", "\u03c3")
        texts = tf.strings.lower(texts, encoding="utf-8")
    return texts


def basic_tokenizer() -> BasicTokenizer:
    """BERT's basic tokenizer for splitting only: `normalize_text` does the cleaning and
    lower-casing (tf.text's own lower-casing is NFKC case folding, see there)."""
    return BasicTokenizer(lower_case=False, normalization_form=None)


def wordpiece_tokenizer(vocabulary: list[str]) -> tf_text.FastWordpieceTokenizer:
    """WordPiece over already split words, with the vocabulary baked into the graph."""
    return tf_text.FastWordpieceTokenizer(
        vocab=list(vocabulary),
        token_out_type=tf.int32,
        unknown_token="[UNK]",
        no_pretokenization=True,
        # The limit is in characters (`unknown_if_too_long`); this byte limit only has to
        # let every such word through.
        max_bytes_per_word=4 * MAX_CHARS_PER_WORD,
    )


def unknown_if_too_long(words: tf.RaggedTensor) -> tf.RaggedTensor:
    """Replaces words over MAX_CHARS_PER_WORD characters with "[UNK]", as BERT's WordPiece."""
    too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > MAX_CHARS_PER_WORD
    return words.with_flat_values(tf.where(too_long, "[UNK]", words.flat_values))


def batch_length(sequences: tf.RaggedTensor, max_seq_length: int) -> tf.Tensor:
    """Serving's padded length: the batch's longest row rounded up to a multiple of 8 (at
    least 8), at most `max_seq_length`."""
    longest = tf.cast(tf.reduce_max(sequences.row_lengths()), tf.int32)
    return tf.minimum(max_seq_length, (tf.maximum(longest, 1) + 7) // 8 * 8)


def _keep_first(pieces: tf.RaggedTensor, counts: tf.Tensor) -> tf.RaggedTensor:
    positions = tf.ragged.range(pieces.row_lengths())
    return tf.ragged.boolean_mask(pieces, positions < tf.expand_dims(counts, 1))


def _trim_longest_first(segments: list[tf.RaggedTensor], budget: int) -> list[tf.RaggedTensor]:
    """Trims segments to `budget` pieces in all, always from the longer one.

    Hugging Face's `truncation="longest_first"`: when both segments are over half the budget,
    an odd piece goes to the longer one (the second on a tie). Built from core ops; tf.text's
    RoundRobinTrimmer differs on odd budgets, and its kernel (TFText>RoundRobinTrim) is newer
    than the tf.text ops that TF Serving builds link.
    """
    if len(segments) == 1:
        return [segments[0][:, :budget]]
    first, second = segments
    first_length = first.row_lengths()
    second_length = second.row_lengths()
    budget = tf.constant(budget, dtype=first_length.dtype)
    first_half = tf.where(first_length > second_length, (budget + 1) // 2, budget // 2)
    first_keep = tf.minimum(first_length, tf.maximum(budget - second_length, first_half))
    second_keep = tf.minimum(second_length, budget - first_keep)
    return [_keep_first(first, first_keep), _keep_first(second, second_keep)]
