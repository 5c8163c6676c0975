"""SquadExampleGen: SQuAD v1.1 JSON files -> tf.Examples of questions (one per question),
bad records quarantined.

`component` and `executor` import TFX; `squad` holds the parsing and validation and does
not (nor Beam or TensorFlow).
"""
