"""Tests of WordpieceVocab's data logic (components/wordpiece_vocab/vocab_learning.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import apache_beam as beam
import pytest

from components.text_example_gen import text_ingestion
from components.wordpiece_vocab import vocab_learning as vl


def test_learns_a_vocabulary_from_the_novels_with_beam(tmp_path: Path, corpus_paths, corpus_dir, chapter_documents):
    import tensorflow as tf

    from serving.text_encoder import BertTextEncoder

    examples = tmp_path / "examples"
    vocab_dir = tmp_path / "vocab"
    config = vl.VocabLearningConfig(vocab_size=2000, lower_case=True)
    with beam.Pipeline() as pipeline:
        _ = pipeline | "Ingest" >> text_ingestion.IngestTextToExamples(
            inputs=[text_ingestion.SplitInput("train", corpus_paths)],
            input_base=corpus_dir,
            output_uri=str(examples),
            config=text_ingestion.TextIngestionConfig(document_mode="blank_line"),
            split_names=["train"],
        )
    with beam.Pipeline() as pipeline:
        _ = pipeline | "Learn" >> vl.LearnVocabularyFromTextExamples(
            [str(examples / "Split-train" / "*")], config, str(vocab_dir)
        )

    tokens, lower_case = vl.read_vocabulary_dir(str(vocab_dir))
    assert lower_case is True
    assert vl.read_vocabulary_config(str(vocab_dir)) == {"lower_case": True, "source": "learned", "vocab_size": len(tokens)}
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert 0.95 * 2000 <= len(tokens) <= 2000  # The learner's accepted slack.
    assert any(token.startswith("##") for token in tokens)

    # The 100 most frequent words of the books are whole tokens.
    words = Counter(
        word.decode() for word in vl.make_word_splitter(True)(
            tf.constant([s for d in chapter_documents for s in d.sentences])
        ).flat_values.numpy().tolist()
    )  # fmt: skip
    frequent = [word for word, _ in words.most_common(100)]
    assert {"the", "elizabeth", "darcy", "dorothy", "wizard"} <= set(tokens)
    assert set(frequent) <= set(tokens)

    # Serving's tokenizer takes it, and rarely needs [UNK].
    encoder = BertTextEncoder(tokens, max_seq_length=128, lower_case=True)
    ids = encoder.tokenize(tf.constant(chapter_documents[5].sentences)).flat_values.numpy()
    assert (ids == tokens.index("[UNK]")).mean() < 0.01


def test_learning_is_independent_of_count_order():
    counts = [(f"word{i}", 1000 - i) for i in range(300)] + [("the", 5000), ("cat", 40), ("cats", 40)]
    config = vl.VocabLearningConfig(vocab_size=120)
    assert vl.learn_vocabulary(counts, config) == vl.learn_vocabulary(list(reversed(counts)), config)


def test_vocabulary_validation():
    with pytest.raises(ValueError, match="special tokens"):
        vl.validate_vocabulary(["[PAD]", "[UNK]", "a"])
    with pytest.raises(ValueError, match="duplicate"):
        vl.validate_vocabulary(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "a"])
    with pytest.raises(ValueError, match="reserved_tokens must include"):
        vl.VocabLearningConfig(reserved_tokens=("[PAD]", "[UNK]"))
