"""WordpieceVocab: learns a WordPiece vocabulary with Beam, or passes an imported one through.

`component` and `executor` import TFX; `vocab_learning` holds the data logic and does not.
"""
