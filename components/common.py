"""Plain helpers shared by bertpipe's custom TFX components.

Nothing here imports TFX (about 40 s), so the Beam/data modules that use these helpers stay
cheap to import and to test. TensorFlow is imported lazily, inside the Beam workers that
write files, for the same reason.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from typing import Any

import apache_beam as beam

# TFX's Examples artifact layout: <artifact uri>/Split-<name>/<prefix>-SSSSS-of-NNNNN.gz
SPLIT_DIR_PREFIX = "Split-"
TFRECORD_FILE_PREFIX = "data_tfrecord"
GZIP_SUFFIX = ".gz"


def split_dir(artifact_uri: str, split: str) -> str:
    """The directory of `split` inside an Examples-style artifact (`Split-<split>`)."""
    return os.path.join(artifact_uri, f"{SPLIT_DIR_PREFIX}{split}")


def stable_hash64(*parts: Any) -> int:
    """A 64-bit hash of `parts` that is the same in every process, machine and run.

    Python's `hash()` is salted per process, so it must never decide anything that ends up
    in output data; this uses BLAKE2b over the `repr` of the parts (ints and strs have a
    stable repr), with a separator so ("ab", "c") and ("a", "bc") differ.
    """
    text = "\x1f".join(repr(part) for part in parts)
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def seeded_rng(*parts: Any) -> random.Random:
    """A `random.Random` whose whole stream is a function of `parts` only.

    Every random decision of a Beam pipeline is drawn from one of these, keyed by what the
    decision is about (seed, document, copy, position...), so results do not depend on
    which worker processed an element, in which bundle, or in which order.
    """
    return random.Random(stable_hash64(*parts))


def shard_file_name(shard: int, num_shards: int) -> str:
    return f"{TFRECORD_FILE_PREFIX}-{shard:05d}-of-{num_shards:05d}{GZIP_SUFFIX}"


class _WriteShardFn(beam.DoFn):
    """Writes one shard: all its records, sorted by key, to one GZIP TFRecord file."""

    def __init__(self, output_dir: str, num_shards: int):
        self._output_dir = output_dir
        self._num_shards = num_shards

    def process(self, shard_and_records: tuple[int, dict[str, list]]) -> Iterator[str]:
        import tensorflow as tf  # Lazy: only workers that write pay for importing TF.

        shard, grouped = shard_and_records
        records = sorted(grouped["records"])  # (key, record) pairs; keys are unique.
        tf.io.gfile.makedirs(self._output_dir)
        path = os.path.join(self._output_dir, shard_file_name(shard, self._num_shards))
        # The whole shard is written in one go and overwrites any previous attempt, so a
        # retried bundle cannot leave duplicates behind. TF's GZIP writer leaves the gzip
        # header's mtime at 0, so equal records give byte-identical files.
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for _, record in records:
                writer.write(record)
        beam.metrics.Metrics.counter("bertpipe", "records_written").inc(len(records))
        yield path


class WriteSortedTFRecords(beam.PTransform):
    """Writes (sort key, serialized record) pairs to GZIP TFRecord shards, deterministically.

    Beam's own sinks assign records to shards at random and in arrival order, so their
    files differ from run to run. Here a record's shard is a stable hash of its key, and
    each shard is sorted by key before it is written: the same records always produce
    byte-identical files, whatever the runner, worker count or bundle boundaries. Every
    shard file is written, empty or not, so readers can rely on `-of-NNNNN`.

    A shard is sorted in the memory of one worker: choose `num_shards` so that a shard
    (total output / num_shards) fits comfortably.

    Returns a PCollection of the written file paths.
    """

    def __init__(self, output_dir: str, num_shards: int = 1):
        super().__init__()
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        self._output_dir = output_dir
        self._num_shards = num_shards

    def expand(self, keyed_records: beam.PCollection) -> beam.PCollection:
        num_shards = self._num_shards
        by_shard = keyed_records | "AssignShard" >> beam.Map(
            lambda kv: (stable_hash64(kv[0]) % num_shards, kv)
        )
        all_shards = (
            keyed_records.pipeline
            | "ShardIds" >> beam.Create([(shard, None) for shard in range(num_shards)])
        )
        return (
            {"records": by_shard, "shard": all_shards}
            | "GroupByShard" >> beam.CoGroupByKey()
            | "WriteShard" >> beam.ParDo(_WriteShardFn(self._output_dir, num_shards))
        )


def read_tfrecords(file_pattern: str) -> Iterator[bytes]:
    """Yields the records of all (GZIP) TFRecord files matching `file_pattern`, file by file
    in sorted name order. For tests, tools and small artifacts: not for Beam pipelines."""
    import tensorflow as tf

    for path in sorted(tf.io.gfile.glob(file_pattern)):
        compression = "GZIP" if path.endswith(GZIP_SUFFIX) else ""
        for record in tf.data.TFRecordDataset(path, compression_type=compression):
            yield record.numpy()


def split_files(examples_artifacts: list[Any], split: str) -> list[str]:
    """The files of `split` in every given Examples artifact (several with rolling spans),
    artifact by artifact in the given order, each artifact's files in name order."""
    import tensorflow as tf

    files = []
    for artifact in examples_artifacts:
        directory = split_dir(artifact.uri, split)
        files.extend(sorted(os.path.join(directory, name)
                            for name in tf.io.gfile.listdir(directory)))
    return files
