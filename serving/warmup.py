"""SavedModel warm-up requests, as TF Serving reads and replays them when it loads a version.

TF Serving (`saved_model_warmup.cc`) reads `assets.extra/tf_serving_warmup_requests` in a
version directory: a TFRecord file of `tensorflow.serving.PredictionLog`s, at most 1,000. With
`--enable_model_warmup` (its default) it sends each record's request to the new version
`--num_request_iterations_for_warmup` times (default 1) before the version is available, so
that the first real requests do not pay for graph optimisation or, for a `jit_compile`
export, for an XLA compilation per request shape (seconds each).

`write_warmup_requests` writes Predict records (the exports write one per shape their XLA
call compiles: `serving.model_call.warmup_shapes`); `replay` runs them on a loaded
`serving.servable.Servable` (the built-in server replays Predict records; other record types
are skipped with a warning, see README.md's differences from TF Serving).

Example:

>>> write_warmup_requests("/tmp/model/1", "serving_default",
...                       [{"text": ["a a a"]}])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable

import numpy as np

from serving.protos import serving_protos

logger = logging.getLogger(__name__)

WARMUP_PATH = os.path.join("assets.extra", "tf_serving_warmup_requests")
# saved_model_warmup_util.cc kMaxNumRecords: a larger file fails the load.
MAX_WARMUP_RECORDS = 1000


def write_warmup_requests(export_dir: str, signature_name: str,
                          requests: Iterable[dict[str, list]]) -> str:
    """Writes one Predict record per request (input alias -> values) into the SavedModel in
    `export_dir`; returns the file's path."""
    import tensorflow as tf

    requests = list(requests)
    if len(requests) > MAX_WARMUP_RECORDS:  # checked before a file TF Serving refuses exists
        raise ValueError(f"{len(requests)} warm-up requests: TF Serving reads at most "
                         f"{MAX_WARMUP_RECORDS}")
    protos = serving_protos()
    path = os.path.join(export_dir, WARMUP_PATH)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for inputs in requests:
            log = protos.prediction_log_pb2.PredictionLog()
            request = log.predict_log.request
            request.model_spec.signature_name = signature_name
            for alias, values in inputs.items():
                request.inputs[alias].CopyFrom(tf.make_tensor_proto(np.asarray(values)))
            writer.write(log.SerializeToString())
    return path


def filler_text(tokens: int) -> str:
    """A text of `tokens` WordPieces in any BERT vocabulary ("a", a single character, is
    always a piece of its own): warm-up requests of a chosen length."""
    return " ".join(["a"] * max(1, tokens))


def write_shape_warmup(export_dir: str, signature_name: str, max_seq_length: int,
                       texts_of_length: Callable[[int], dict[str, str]]) -> str:
    """Writes one warm-up request per program a `jit_compile` export compiles
    (`serving.model_call.warmup_shapes`): `batch` copies of `texts_of_length(length)` (input
    alias -> a text that encodes to `length` tokens)."""
    from serving.model_call import warmup_shapes

    return write_warmup_requests(export_dir, signature_name, (
        {alias: [text] * batch for alias, text in texts_of_length(length).items()}
        for batch, length in warmup_shapes(max_seq_length)))


def read_warmup_requests(export_dir: str) -> list:
    """The PredictionLogs of the SavedModel's warm-up file ([] if it has none).

    Raises:
        ValueError: more than MAX_WARMUP_RECORDS records, or a record is not a PredictionLog
            (TF Serving fails the version's load for both).
    """
    import tensorflow as tf

    path = os.path.join(export_dir, WARMUP_PATH)
    if not tf.io.gfile.exists(path):
        return []
    protos = serving_protos()
    logs = []
    for index, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
        if index >= MAX_WARMUP_RECORDS:
            raise ValueError(f"Number of warmup records exceeds the maximum "
                             f"({MAX_WARMUP_RECORDS}) at {path}")
        log = protos.prediction_log_pb2.PredictionLog()
        try:
            log.ParseFromString(record)
        except Exception:  # noqa: BLE001  (protobuf's DecodeError has no stable home)
            # saved_model_warmup_util.cc's message.
            raise ValueError(f"Failed to parse warmup record: {record[:64]!r} from "
                             f"{path}") from None
        logs.append(log)
    return logs


def replay(servable, logs: list, iterations: int = 1) -> int:
    """Runs each Predict record `iterations` times on `servable`; returns the runs made.

    A record whose request fails raises (TF Serving fails the load), and so does a
    session_run or predict_streamed record (TF Serving: "Unsupported log_type for warmup");
    classify, regress and multi_inference records, which TF Serving replays, are skipped
    with a warning.
    """
    import tensorflow as tf

    runs = 0
    for index, log in enumerate(logs):
        kind = log.WhichOneof("log_type")
        if kind in ("session_run_log", "predict_streamed_log", None):
            raise ValueError(f"Unsupported log_type for warmup: {kind} (record {index + 1})")
        if kind != "predict_log":
            logger.warning("%s: warm-up record %d is a %s; the built-in server replays only "
                           "predict_log records", servable, index + 1, kind)
            continue
        request = log.predict_log.request
        inputs = {alias: tf.make_ndarray(tensor) for alias, tensor in request.inputs.items()}
        signature = request.model_spec.signature_name or "serving_default"
        servable.validate_inputs(signature, inputs)  # as a Predict request is checked
        for _ in range(iterations):
            servable.run(signature, inputs)
            runs += 1
    return runs
