"""Helpers shared by the Trainer functions in `pipeline.modules`."""

from __future__ import annotations

import tensorflow as tf


def expand_file_patterns(patterns: list[str], what: str) -> list[str]:
    """The sorted files behind TFX's `.../Split-<name>/*` patterns.

    Raises:
        FileNotFoundError: nothing matches; the message names `what` and the patterns.
    """
    files = sorted(f for pattern in patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no {what} match {patterns}")
    return files


def gzip_records(patterns: list[str], what: str) -> tf.data.TFRecordDataset:
    """The records of TFX's GZIP-compressed TFRecord outputs behind `patterns`."""
    return tf.data.TFRecordDataset(expand_file_patterns(patterns, what), compression_type="GZIP")
