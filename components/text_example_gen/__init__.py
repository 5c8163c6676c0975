"""TextExampleGen: plain-text files -> tf.Example documents of sentences.

`component` and `executor` import TFX; `text_ingestion` holds the data logic and does not.
"""
