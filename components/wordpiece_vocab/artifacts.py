"""The WordpieceVocabulary artifact type (a directory: vocab.txt + vocab_config.json)."""

from __future__ import annotations

from tfx.types import artifact


class WordpieceVocabulary(artifact.Artifact):
    """A BERT WordPiece vocabulary.

    * File structure (see `vocab_learning`):
      - `{uri}/vocab.txt`: one token a line, id = line number.
      - `{uri}/vocab_config.json`: `lower_case`, `vocab_size`, `source`.
    * Custom properties: `lower_case` (int 0/1), `vocab_size` (int), `source` (str).
    """

    TYPE_NAME = "bertpipe.WordpieceVocabulary"
