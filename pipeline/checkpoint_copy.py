"""Checkpoints on object stores: `model.checkpoint: gs://bucket/encoders/minilm`.

`bert_keras.checkpoint` reads local directories only (it stays free of TensorFlow's file
systems, as the Keras model code is backend-agnostic). A checkpoint at a URI is copied once
per machine, through TFX's `fileio` (TensorFlow's file systems: gs://, s3://, hdfs://,
ram://), into a local cache folder named by the URI, and read from there. The copy is
written to a temporary folder and renamed, so a reader never sees half a checkpoint; with
`metadata_only` just the small files are copied (the casing and format checks done while
building the pipeline, the vocabulary Transform reads).

Example:

>>> local_checkpoint("/models/minilm")  # a local directory is used where it is
'/models/minilm'
>>> local_checkpoint("gs://bucket/encoders/minilm/3")  # doctest: +SKIP
'/tmp/bertpipe-checkpoints/4f0c2d1e9a7b3c55/3'
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

# The small files: what `checkpoint_format` and `checkpoint_lower_case` read
# (bert_keras.checkpoint), and the vocabulary (Transform's in-graph tokenizer).
METADATA_FILES = ("encoder.json", "config.json", "tokenizer_config.json", "vocab.txt")
CACHE_DIR_ENV = "BERTPIPE_CHECKPOINT_CACHE"


def is_uri(path: str) -> bool:
    return "://" in path


def cache_root() -> str:
    return os.environ.get(CACHE_DIR_ENV) or os.path.join(tempfile.gettempdir(),
                                                         "bertpipe-checkpoints")


def local_checkpoint(directory: str, metadata_only: bool = False) -> str:
    """A local directory holding `directory`'s checkpoint files (itself when it is local).

    Raises:
        FileNotFoundError: nothing is at the URI.
    """
    if not is_uri(directory):
        return directory
    from tfx.dsl.io import fileio

    uri = directory.rstrip("/")
    if not fileio.isdir(uri):
        raise FileNotFoundError(f"checkpoint {directory!r}: no such directory")
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    target = os.path.join(cache_root(), key + ("-metadata" if metadata_only else ""),
                          uri.rsplit("/", 1)[-1] or "checkpoint")
    if os.path.isdir(target):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    partial = tempfile.mkdtemp(prefix=".partial-", dir=os.path.dirname(target))
    try:
        for name in fileio.listdir(uri):
            name = name.rstrip("/")
            source = f"{uri}/{name}"
            if fileio.isdir(source) or (metadata_only and name not in METADATA_FILES):
                continue  # a checkpoint is flat; sub-folders are other versions
            fileio.copy(source, os.path.join(partial, name), overwrite=True)
        os.replace(partial, target)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not os.path.isdir(target):  # not another process's finished copy either
            raise
    return target
