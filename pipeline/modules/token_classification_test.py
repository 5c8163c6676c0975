"""pipeline.modules.token_classification: preprocessing_fn (directly and inside a real
tf.Transform Beam run) and run_fn on its output, with a tiny encoder checkpoint."""

from __future__ import annotations

import json
import os
import random
import types

import numpy as np
import pytest
import tensorflow as tf

from pipeline.modules import token_classification
from pipeline.tasks.iob import tag_names

VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "angela", "merkel", "peter", "visited", "went", "to", "paris", "berlin", "new", "york",
    "u", "s", ".", ",", "the", "city", "of", "##s",
]  # fmt: skip
TAGS = tag_names(["PER", "LOC"])  # O B-PER I-PER B-LOC I-LOC
MAX_LEN = 16


def _config(checkpoint_dir: str, **overrides) -> dict:
    return {
        "checkpoint_dir": checkpoint_dir, "lower_case": True, "max_seq_length": MAX_LEN,
        "dropout": 0.0, "batch_size": 8, "epochs": 4, "max_steps": None,
        "learning_rate": 3e-3, "warmup_fraction": 0.1, "weight_decay": 0.01,
        "eval_batch_size": 16, "seed": 0, "length_buckets": [8], "code_fingerprint": "test",
        "tokens_feature": "words", "tags_feature": "labels", "tags": TAGS, **overrides,
    }


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> str:
    import keras

    from bert_keras.backbone import ConfigurableBertBackbone
    from bert_keras.checkpoint import save_encoder_checkpoint

    keras.utils.set_random_seed(0)
    backbone = ConfigurableBertBackbone(
        vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=MAX_LEN,
    )
    return save_encoder_checkpoint(backbone, VOCAB, True,
                                   str(tmp_path_factory.mktemp("encoder") / "checkpoint"))


def _sparse(rows: list[list[str]]) -> tf.SparseTensor:
    return tf.ragged.constant(rows, dtype=tf.string, ragged_rank=1).to_sparse()


def _preprocess(config: dict, words: list[list[str]], tags: list[list[str]]) -> dict:
    outputs = token_classification.preprocessing_fn(
        {"words": _sparse(words), "labels": _sparse(tags)}, config)
    return {name: tensor.numpy() for name, tensor in outputs.items()}


def test_labels_on_first_pieces_of_kept_words(checkpoint_dir):
    words = [
        ["Angela", "Merkel", "visited", "U.S.", "."],  # "U.S." is 4 pieces, 1 word
        ["Peter", "went", "to", "New", "York", "cities"],  # "cities" -> [UNK]
        [],
        ["Paris"] * 20,  # 14 fit
    ]
    tags = [
        ["B-PER", "I-PER", "O", "B-LOC", "O"],
        ["B-PER", "O", "O", "B-LOC", "I-LOC", "O"],
        [],
        ["B-LOC"] * 20,
    ]
    out = _preprocess(_config(checkpoint_dir), words, tags)
    assert set(out) == {"token_ids", "segment_ids", "padding_mask", "label_ids",
                        "label_weights", "truncated_words"}
    for name, array in out.items():
        assert array.dtype == np.int64, name
        assert array.shape == ((4,) if name == "truncated_words" else (4, MAX_LEN)), name
    ids = {token: i for i, token in enumerate(VOCAB)}
    assert out["token_ids"][0][:10].tolist() == [
        ids[t] for t in ("[CLS]", "angela", "merkel", "visited", "u", ".", "s", ".", ".", "[SEP]")]
    assert out["label_ids"][0].tolist() == [0, 1, 2, 0, 3, 0, 0, 0, 0] + [0] * 7
    assert out["label_weights"][0].tolist() == [0, 1, 1, 1, 1, 0, 0, 0, 1] + [0] * 7
    assert out["label_ids"][1][:8].tolist() == [0, 1, 0, 0, 3, 4, 0, 0]
    assert out["label_weights"][1][:8].tolist() == [0, 1, 1, 1, 1, 1, 1, 0]
    assert out["label_weights"][2].sum() == 0 and out["padding_mask"][2].sum() == 2
    assert out["label_ids"][3].tolist() == [0] + [3] * 14 + [0]
    assert out["label_weights"][3].tolist() == [0] + [1] * 14 + [0]
    assert out["truncated_words"].tolist() == [0, 0, 0, 6]
    assert out["segment_ids"].sum() == 0


@pytest.mark.parametrize(
    "words, tags, message",
    [
        ([["Paris", "Berlin"]], [["B-LOC"]], "not as many tags as words"),
        ([["Paris"]], [["B-CITY"]], "a tag is not one of"),
    ],
)
def test_bad_tags_stop_the_transform(checkpoint_dir, words, tags, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        _preprocess(_config(checkpoint_dir), words, tags)


def _sentences(count: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """Synthetic NER sentences: a person visits a city; some too long for MAX_LEN."""
    rng = random.Random(seed)
    people = [(["Angela", "Merkel"], ["B-PER", "I-PER"]), (["Peter"], ["B-PER"])]
    places = [(["Paris"], ["B-LOC"]), (["New", "York"], ["B-LOC", "I-LOC"]),
              (["Berlin"], ["B-LOC"])]
    rows = []
    for i in range(count):
        person, place = rng.choice(people), rng.choice(places)
        words = person[0] + [rng.choice(["visited", "went"])] + place[0] + ["."]
        tags = person[1] + ["O"] + place[1] + ["O"]
        if i % 10 == 0:  # too long: the tail is cut and counted
            words, tags = words + ["the", "city"] * 6, tags + ["O", "O"] * 6
        rows.append((words, tags))
    return rows


@pytest.fixture(scope="module")
def transformed(checkpoint_dir, tmp_path_factory):
    """A real tf.Transform run (Beam, DirectRunner) of preprocessing_fn, as TFX runs it."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata

    root = tmp_path_factory.mktemp("transformed")
    config = _config(checkpoint_dir)
    rows = [{"words": [w.encode() for w in words], "labels": [t.encode() for t in tags]}
            for words, tags in _sentences(48)]
    metadata = dataset_metadata.DatasetMetadata.from_feature_spec({
        "words": tf.io.VarLenFeature(tf.string), "labels": tf.io.VarLenFeature(tf.string)})

    def preprocessing_fn(inputs):
        return token_classification.preprocessing_fn(inputs, config)

    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=str(root / "tmp")):
        data = pipeline | beam.Create(rows, reshuffle=False)
        (examples, output_metadata), transform_fn = (
            (data, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn))
        coder = tft.coders.ExampleProtoCoder(output_metadata.schema)
        _ = (examples | beam.Map(coder.encode) | beam.io.WriteToTFRecord(
            str(root / "data" / "part"), file_name_suffix=".gz",
            compression_type=beam.io.filesystem.CompressionTypes.GZIP))
        _ = transform_fn | tft_beam.WriteTransformFn(str(root / "transform"))
    return {"files": [str(root / "data" / "*.gz")], "transform": str(root / "transform")}


def test_transform_output_matches_the_direct_call(transformed, checkpoint_dir):
    import tensorflow_transform as tft

    spec = tft.TFTransformOutput(transformed["transform"]).transformed_feature_spec()
    assert spec["label_ids"] == tf.io.FixedLenFeature([MAX_LEN], tf.int64)
    assert spec["truncated_words"] == tf.io.FixedLenFeature([], tf.int64)
    counts = token_classification.count_rows(transformed["files"], spec)
    # 5 sentences (every 10th of 48) are too long: each loses some of its 12 extra words.
    assert counts["sentences"] == 48 and counts["truncated_sentences"] == 5
    rows = _sentences(48)
    direct = _preprocess(_config(checkpoint_dir), [w for w, _ in rows], [t for _, t in rows])
    assert counts["truncated_words"] == direct["truncated_words"].sum() > 0


def _fn_args(transformed, config, tmp_path) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        train_files=transformed["files"], eval_files=transformed["files"],
        transform_output=transformed["transform"], custom_config=config,
        model_run_dir=str(tmp_path / "run"), serving_model_dir=str(tmp_path / "serving"),
    )


def test_run_fn_trains_and_exports_the_ner_contract(transformed, checkpoint_dir, tmp_path):
    import tensorflow_text  # noqa: F401  (the exported graph's tokenizer kernels)

    args = _fn_args(transformed, _config(checkpoint_dir), tmp_path)
    token_classification.run_fn(args)
    with open(os.path.join(args.model_run_dir, "history.json")) as f:
        history = json.load(f)
    assert len(history["loss"]) == 4 and history["loss"][-1] < history["loss"][0]
    assert "accuracy" in history and "val_accuracy" in history
    with open(os.path.join(args.model_run_dir, token_classification.TRUNCATION_FILE)) as f:
        assert json.load(f)["train"]["truncated_sentences"] == 5
    model = tf.saved_model.load(args.serving_model_dir)
    assert sorted(model.signatures) == ["from_examples", "serving_default"]
    out = model.signatures["serving_default"](text=tf.constant(["Peter visited Paris."]))
    assert out["num_entities"].shape == (1,)
    example = tf.train.Example(features=tf.train.Features(feature={"words": tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[b"Peter", b"visited", b"Paris"]))}))
    labels = model.signatures["from_examples"](
        examples=tf.constant([example.SerializeToString()]))["token_labels"]
    assert labels.shape == (1, 3)


def test_max_steps_zero_exports_the_warm_started_model_untrained(transformed, checkpoint_dir,
                                                                  tmp_path):
    args = _fn_args(transformed, _config(checkpoint_dir, max_steps=0), tmp_path)
    token_classification.run_fn(args)
    with open(os.path.join(args.model_run_dir, "history.json")) as f:
        assert json.load(f) == {}
    assert os.path.isfile(os.path.join(args.serving_model_dir, "saved_model.pb"))


def test_run_fn_trains_and_exports_in_the_configured_precision(transformed, checkpoint_dir,
                                                               tmp_path):
    """The Trainer's settings reach training and the export: training.precision and
    jit_compile (2 steps in bfloat16 with XLA), serving.precision and jit_compile (bfloat16
    matrix products, the model call marked for XLA); the export still answers."""
    import tensorflow_text  # noqa: F401  (the exported graph's tokenizer kernels)

    from serving.model_call import compiled_function_names, matmul_dtypes

    config = _config(checkpoint_dir, max_steps=2, precision="mixed_bfloat16", jit_compile=True,
                     serving_precision="mixed_bfloat16", serving_jit_compile=True)
    args = _fn_args(transformed, config, tmp_path)
    token_classification.run_fn(args)
    with open(os.path.join(args.model_run_dir, "history.json")) as f:
        assert np.isfinite(json.load(f)["loss"]).all()
    assert tf.bfloat16 in matmul_dtypes(args.serving_model_dir)
    assert compiled_function_names(args.serving_model_dir)
    model = tf.saved_model.load(args.serving_model_dir)
    out = model.signatures["serving_default"](text=tf.constant(["Peter visited Paris."]))
    assert out["num_entities"].shape == (1,)
