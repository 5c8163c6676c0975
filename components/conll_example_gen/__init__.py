"""ConllExampleGen: CoNLL-style token/tag files -> tf.Examples of sentences (IOB2 tags), bad
sentences quarantined.

`component` and `executor` import TFX; `conll` holds the parsing and does not (nor Beam
or TensorFlow).
"""
