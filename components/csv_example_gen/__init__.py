"""CsvExampleGen: CSV files -> tf.Examples (one per record), bad rows quarantined.

`component` and `executor` import TFX; `csv_rows` holds the parsing and does not (nor Beam
or TensorFlow).
"""
