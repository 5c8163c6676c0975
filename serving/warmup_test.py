"""Warm-up requests: a `jit_compile` export carries one per program XLA compiles, the
built-in server's loader replays them as TF Serving does, and bad warm-up files fail the load
with TF Serving's messages."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the exports' tokenizer kernels)

from serving.model_call import warmup_shapes
from serving.model_manager import load_and_warm_up
from serving.protos import serving_protos
from serving.warmup import (
    MAX_WARMUP_RECORDS,
    WARMUP_PATH,
    read_warmup_requests,
    write_warmup_requests,
)

HALF_PLUS_TWO = (Path(__file__).resolve().parent.parent / "tests/serving/testdata/"
                 "saved_model_half_plus_two_cpu/00000123")
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "good", "film"]
MAX_SEQ_LENGTH = 24


def _tiny_export(path: Path, jit_compile: bool, pair: bool = False) -> Path:
    import keras
    import keras_hub

    from serving.export import export_saved_model
    from serving.text_encoder import BertTextEncoder

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=MAX_SEQ_LENGTH)
    model = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None)
    export_saved_model(model, BertTextEncoder(VOCAB, MAX_SEQ_LENGTH), ["neg", "pos"], str(path),
                       second_text_feature="second" if pair else None, jit_compile=jit_compile)
    return path


@pytest.fixture(scope="module")
def jit_export(tmp_path_factory) -> Path:
    return _tiny_export(tmp_path_factory.mktemp("warmup") / "1", jit_compile=True)


@pytest.mark.parametrize("pair", [False, True])
def test_a_jit_export_has_one_warmup_request_per_compiled_shape(jit_export, tmp_path, pair):
    """Each record, encoded by the export's own tokenizer, has exactly one of the shapes
    `warmup_shapes` lists, and every shape has its record."""
    from serving.text_encoder import BertTextEncoder

    export = _tiny_export(tmp_path / "1", jit_compile=True, pair=True) if pair else jit_export
    encoder = BertTextEncoder(VOCAB, MAX_SEQ_LENGTH, pad_to_max_length=False)
    shapes = []
    for log in read_warmup_requests(str(export)):
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        texts = tf.make_ndarray(request.inputs["text"])
        first, *second = zip(*(t.decode().split("\t") for t in texts), strict=True)
        ids = encoder(tf.constant(first), tf.constant(second[0]) if second else None)
        shapes.append(tuple(ids["token_ids"].shape))
        assert np.all(ids["padding_mask"].numpy() == 1)  # no padding: the length is exact
    assert shapes == warmup_shapes(MAX_SEQ_LENGTH)


def test_the_loader_replays_every_warmup_request_unless_disabled(jit_export):
    servable = load_and_warm_up("m", 1, str(jit_export), warmup_iterations=2)
    try:
        outputs = servable.run("serving_default", {"text": np.array([b"a good film"], object)})
        assert outputs["probabilities"].shape == (1, 2)
    finally:
        servable.close()
    from serving.servable import Servable

    plain = Servable("m", 1, str(jit_export))
    try:
        assert plain.warm_up(iterations=2) == 2 * len(warmup_shapes(MAX_SEQ_LENGTH))
    finally:
        plain.close()


def _with_warmup(tmp_path: Path, records: list[bytes]) -> Path:
    export = tmp_path / "123"
    shutil.copytree(HALF_PLUS_TWO, export)
    (export / WARMUP_PATH).parent.mkdir()
    with tf.io.TFRecordWriter(str(export / WARMUP_PATH)) as writer:
        for record in records:
            writer.write(record)
    return export


def _predict_log(x: list[float], input_name: str = "x") -> bytes:
    protos = serving_protos()
    log = protos.prediction_log_pb2.PredictionLog()
    log.predict_log.request.inputs[input_name].CopyFrom(
        tf.make_tensor_proto(np.array(x, np.float32)))
    return log.SerializeToString()


def test_tf_servings_half_plus_two_replays_its_predict_records(tmp_path):
    export = _with_warmup(tmp_path, [_predict_log([1.0, 2.0]), _predict_log([5.0])])
    servable = load_and_warm_up("half_plus_two", 123, str(export))
    try:
        assert servable.warm_up() == 2
    finally:
        servable.close()


@pytest.mark.parametrize("records, message", [
    ([b"not a prediction log"], "Failed to parse warmup record"),
    ([_predict_log([1.0])] * (MAX_WARMUP_RECORDS + 1),
     f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS})"),
    ([_predict_log([1.0], input_name="nope")], "input tensor alias not found in signature: nope"),
])
def test_a_bad_warmup_file_fails_the_load(tmp_path, records, message):
    export = _with_warmup(tmp_path, records)
    with pytest.raises(Exception, match=re.escape(message)):
        load_and_warm_up("half_plus_two", 123, str(export))
    load_and_warm_up("half_plus_two", 123, str(export), enable_warmup=False).close()


def test_session_run_records_are_unsupported_as_in_tf_serving(tmp_path):
    log = serving_protos().prediction_log_pb2.PredictionLog()
    log.session_run_log.SetInParent()
    export = _with_warmup(tmp_path, [log.SerializeToString()])
    with pytest.raises(ValueError, match="Unsupported log_type for warmup: session_run_log"):
        load_and_warm_up("half_plus_two", 123, str(export))


def test_written_records_read_back(tmp_path):
    write_warmup_requests(str(tmp_path), "sig", [{"text": ["a", "b"]}, {"text": ["c"]}])
    logs = read_warmup_requests(str(tmp_path))
    assert [list(tf.make_ndarray(log.predict_log.request.inputs["text"])) for log in logs] == [
        [b"a", b"b"], [b"c"]]
    with pytest.raises(ValueError, match="at most 1000"):
        write_warmup_requests(str(tmp_path / "too_many"), "sig",
                              ({"text": ["a"]} for _ in range(1001)))
    assert not (tmp_path / "too_many").exists()  # nothing half-written
