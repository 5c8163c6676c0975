"""In-graph BERT encoding of pre-split words, for token classification (NER).

`BertWordEncoder` is the token-classification twin of `serving.text_encoder.BertTextEncoder`:
the same normalisation, basic tokenizer and WordPiece (so the same ids), but its input is a
sentence already split into words (CoNLL tokens, or `split_words_with_offsets` of raw text)
and its output says which word each piece belongs to, so a tag can be predicted per word on
the word's first piece. Token ids and word ids equal Hugging Face's `BertTokenizerFast` with
`is_split_into_words=True` (serving/word_encoder_test.py), with one deliberate difference: a
word that yields no piece at all (only control characters, say) gets a single [UNK], so that
every word has a first piece to carry its tag.

Like the text encoder it uses only ops that stock TF Serving loads (core TensorFlow,
NormalizeUTF8, RegexSplitWithOffsets, FastWordpieceTokenizeWithOffsets).

Example:

>>> encoder = BertWordEncoder(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "new", "york", "."], 8)
>>> encoded = encoder.encode_words(tf.ragged.constant([["New", "York", "."]]))
>>> encoded["token_ids"].numpy().tolist(), encoded["word_ids"].numpy().tolist()
([[2, 4, 5, 6, 3, 0, 0, 0]], [[-1, 0, 1, 2, -1, -1, -1, -1]])
>>> words, starts, ends = encoder.split_words_with_offsets(tf.constant(["Ça va, Zoë?"]))
>>> words.to_list(), starts.to_list(), ends.to_list()
([[b'\\xc3\\x87a', b'va', b',', b'Zo\\xc3\\xab', b'?']], [[0, 3, 5, 7, 10]], [[2, 5, 6, 10, 11]])
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_text as tf_text

from serving.text_encoder import (
    basic_tokenizer,
    batch_length,
    normalize_text,
    unknown_if_too_long,
    wordpiece_tokenizer,
)

# What BERT's basic tokenizer makes a word of its own: ASCII and Unicode punctuation, and
# CJK ideographs (the same classes as tf.text's BasicTokenizer, checked by a test).
PUNCTUATION_AND_CJK = "|".join([
    r"[!-/]", r"[:-@]", r"[\[-`]", r"[{-~]", r"[\p{P}]",
    r"[\x{4E00}-\x{9FFF}]", r"[\x{3400}-\x{4DBF}]", r"[\x{20000}-\x{2A6DF}]",
    r"[\x{2A700}-\x{2B73F}]", r"[\x{2B740}-\x{2B81F}]", r"[\x{2B820}-\x{2CEAF}]",
    r"[\x{F900}-\x{FAFF}]", r"[\x{2F800}-\x{2FA1F}]",
])  # fmt: skip
# The characters `normalize_text` turns into spaces. Not RE2's \s: vertical tab and form
# feed are control characters, which BERT deletes (joining their neighbours) instead.
WHITESPACE = r"[\t\n\r\p{Z}]+"


class BertWordEncoder(tf.Module):
    """Encodes sentences given as words for a per-word (first-piece) tagging model.

    Args:
        vocabulary: WordPiece tokens, index = id. Must contain [PAD], [UNK], [CLS], [SEP].
        max_seq_length: output length, including [CLS] and [SEP]; pieces beyond
            `max_seq_length - 2` are cut, and the words that lose their first piece are
            counted in `num_words_kept`.
        lower_case: case-fold and strip accents first (uncased checkpoints).
        pad_to_max_length: pad every row to `max_seq_length` (Transform's fixed-length
            features); if False, pad a batch only to its longest row, rounded up to a
            multiple of 8 (serving).
    """

    def __init__(
        self,
        vocabulary: list[str],
        max_seq_length: int,
        lower_case: bool = True,
        pad_to_max_length: bool = True,
    ):
        super().__init__(name="bert_word_encoder")
        if max_seq_length < 3:
            raise ValueError(f"max_seq_length must be >= 3, got {max_seq_length}")
        self.vocabulary = list(vocabulary)
        self.max_seq_length = int(max_seq_length)
        self.lower_case = bool(lower_case)
        self.pad_to_max_length = bool(pad_to_max_length)
        index = {token: i for i, token in enumerate(self.vocabulary)}
        self.pad_id = index["[PAD]"]
        self.unk_id = index["[UNK]"]
        self.cls_id = index["[CLS]"]
        self.sep_id = index["[SEP]"]
        self._basic = basic_tokenizer()
        self._wordpiece = wordpiece_tokenizer(self.vocabulary)

    def word_pieces(self, words: tf.Tensor) -> tf.RaggedTensor:
        """[n] words -> ragged [n, (pieces)] int32 WordPiece ids; never an empty row.

        A word may hold several basic tokens ("U.S." -> "U", ".", "S", "."): their pieces all
        belong to it. A word with no piece (it normalises to nothing) gets [UNK].
        """
        basic = self._basic.tokenize(normalize_text(words, self.lower_case))  # [n, (basic)]
        pieces = self._wordpiece.tokenize(unknown_if_too_long(basic)).merge_dims(-2, -1)
        empty = tf.cast(tf.equal(pieces.row_lengths(), 0), pieces.row_splits.dtype)
        unknown = tf.RaggedTensor.from_row_lengths(
            tf.fill([tf.reduce_sum(empty)], tf.constant(self.unk_id, tf.int32)), empty
        )
        return tf.concat([pieces, unknown], axis=1)

    def encode_words(self, words: tf.RaggedTensor) -> dict[str, tf.Tensor]:
        """Encodes ragged [batch, (words)] strings for the model and for per-word outputs.

        Returns int32 tensors [batch, length] (`length` as in `BertTextEncoder`):
        `token_ids`, `segment_ids` (zeros), `padding_mask`, `word_ids` (the index of the
        piece's word in its sentence; -1 on [CLS], [SEP] and padding) and `first_piece`
        (1 on each word's first piece), and `num_words_kept` [batch]: the words whose
        first piece fits, always the first ones; the others have no piece in the output.
        """
        words = words.with_row_splits_dtype(tf.int64)
        pieces = self.word_pieces(words.flat_values)  # [words in batch, (pieces)]
        per_word = pieces.row_lengths()
        word_index = tf.ragged.range(words.row_lengths()).flat_values  # index within sentence
        word_ids = tf.repeat(word_index, per_word)
        first_piece = tf.equal(tf.ragged.range(per_word).flat_values, 0)
        # Pieces regrouped per sentence: row splits of sentences -> words -> pieces.
        sentences = tf.RaggedTensor.from_row_splits(pieces, words.row_splits).merge_dims(1, 2)
        budget = self.max_seq_length - 2
        token_ids = sentences[:, :budget]
        word_ids = sentences.with_flat_values(tf.cast(word_ids, tf.int32))[:, :budget]
        first_piece = sentences.with_flat_values(tf.cast(first_piece, tf.int32))[:, :budget]
        num_words_kept = tf.reduce_sum(first_piece, axis=1)

        batch = words.nrows()
        token_ids = _surround(token_ids, self.cls_id, self.sep_id, batch)
        word_ids = _surround(word_ids, -1, -1, batch)
        first_piece = _surround(first_piece, 0, 0, batch)
        length = self.max_seq_length
        if not self.pad_to_max_length:
            length = batch_length(token_ids, self.max_seq_length)
        padding_mask = tf.ones_like(token_ids)
        outputs = {
            "token_ids": _pad(token_ids, self.pad_id, length),
            "padding_mask": _pad(padding_mask, 0, length),
            "word_ids": _pad(word_ids, -1, length),
            "first_piece": _pad(first_piece, 0, length),
        }
        outputs["segment_ids"] = tf.zeros_like(outputs["token_ids"])
        outputs["num_words_kept"] = tf.cast(num_words_kept, tf.int32)
        return outputs

    def split_words_with_offsets(
        self, texts: tf.Tensor
    ) -> tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor]:
        """Splits [batch] raw strings into words as BERT's basic tokenizer does.

        Whitespace separates words; each punctuation character and each CJK ideograph is a
        word. The split runs on the original string, so the words are substrings of it
        (not normalised: `encode_words` does that) and the offsets point into it. Where
        normalisation would create a split the original does not show (a character that
        decomposes into punctuation), `encode_words` still makes the same pieces; they just
        share one word. Words that normalise to nothing (only control characters, or a
        stray accent when lower-casing) are dropped: BERT would give them no piece.

        Returns:
            `(words, starts, ends)`: ragged [batch, (words)] strings and int32 offsets in
            Unicode code points into each input string, `ends` exclusive, so that in
            Python `text[start:end] == word`.
        """
        texts = tf.reshape(texts, [-1])
        # The split kernel stops at a NUL byte; another control character of the same byte
        # length splits the same way (neither is a delimiter) and keeps the offsets.
        _, starts, ends = tf_text.regex_split_with_offsets(
            tf.strings.regex_replace(texts, r"\x00", "\x01"),
            f"{WHITESPACE}|{PUNCTUATION_AND_CJK}",
            PUNCTUATION_AND_CJK,
        )
        # The words themselves come from the original bytes.
        row_texts = tf.gather(texts, starts.value_rowids())
        words = starts.with_flat_values(
            tf.strings.substr(row_texts, starts.flat_values, ends.flat_values - starts.flat_values)
        )
        keep = words.with_flat_values(
            tf.strings.length(normalize_text(words.flat_values, self.lower_case)) > 0
        )
        words, starts, ends = (tf.ragged.boolean_mask(x, keep) for x in (words, starts, ends))
        # Byte offsets -> code points: the number of characters in the bytes before them.
        row_texts = tf.gather(texts, words.value_rowids())
        starts, ends = (
            x.with_flat_values(_code_points_before(row_texts, x.flat_values))
            for x in (starts, ends)
        )
        return words, starts, ends


def _code_points_before(texts: tf.Tensor, byte_offsets: tf.Tensor) -> tf.Tensor:
    prefixes = tf.strings.substr(texts, tf.zeros_like(byte_offsets), byte_offsets)
    return tf.strings.length(prefixes, unit="UTF8_CHAR")


def _surround(rows: tf.RaggedTensor, first, last, batch: tf.Tensor) -> tf.RaggedTensor:
    """Adds one value before and one after every row ([CLS] ... [SEP])."""
    def column(value):
        return tf.RaggedTensor.from_tensor(tf.fill([batch, 1], tf.cast(value, rows.dtype)))

    rows = rows.with_row_splits_dtype(tf.int64)
    return tf.concat([column(first), rows, column(last)], axis=1)


def _pad(rows: tf.RaggedTensor, value, length: int | tf.Tensor) -> tf.Tensor:
    if isinstance(length, tf.Tensor):  # serving: per batch
        shape = tf.stack([rows.nrows(), tf.cast(length, tf.int64)])
    else:  # Transform: fixed, so the static shape says so
        shape = [None, length]
    return rows.to_tensor(default_value=tf.cast(value, rows.dtype), shape=shape)
