"""Typed pipeline configuration, read from YAML and checked before anything runs.

Every section is a dataclass; `load_config` rejects an unknown key or a value of the wrong
type with a one-line `ConfigError` naming the file and the dotted key. Relative paths are
resolved against the directory of the YAML file, so a scheduled run works from any cwd.
Nothing here imports TensorFlow or TFX.

Example:

>>> config = load_config("configs/demo_sst2.yaml")  # doctest: +SKIP
>>> config.training.batch_size  # doctest: +SKIP
32
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from components.pretraining_examples.recipe import PretrainingConfig


class ConfigError(ValueError):
    """A config file that does not describe a valid pipeline."""


@dataclass
class PipelineSection:
    name: str
    root: str  # pipeline root: artifacts, and metadata.sqlite unless metadata_path is set
    metadata_path: str | None = None
    enable_cache: bool = True
    # Apache Beam options for every Beam-based component, e.g. ["--direct_num_workers=2"].
    beam_args: list[str] = field(default_factory=list)


@dataclass
class DataSection:
    input_dir: str
    classes: list[str]  # class names; the label column holds their index
    splits: dict[str, str] = field(
        default_factory=lambda: {"train": "train/*.csv", "eval": "eval/*.csv"}
    )
    text_feature: str = "sentence"
    second_text_feature: str | None = None  # sentence-pair tasks
    label_feature: str = "label"


@dataclass
class ModelSection:
    # A Hugging Face BERT directory, a bertpipe encoder checkpoint, or package:NAME/subdir.
    checkpoint: str
    max_seq_length: int = 128
    dropout: float = 0.1
    lower_case: bool | None = None  # None: what the checkpoint says
    pooling: Literal["cls", "mean"] = "cls"  # sentence vector: [CLS] pooler or masked mean


@dataclass
class TrainingSection:
    batch_size: int = 32
    epochs: int = 1
    max_steps: int | None = None  # caps epochs * steps_per_epoch
    learning_rate: float = 5e-5
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    eval_batch_size: int = 128
    seed: int = 42
    # Batch by padded length buckets, trimming padding per batch (much faster on short text).
    length_buckets: list[int] = field(default_factory=lambda: [16, 32, 64])


@dataclass
class EvaluationSection:
    min_accuracy: float = 0.5
    min_auc: float | None = None
    # The candidate must reach the latest blessed model's accuracy minus this tolerance.
    baseline_tolerance: float = 0.0


@dataclass
class ServingSection:
    model_name: str
    serving_dir: str = "serving_models"


@dataclass
class ScoringSection:
    """Unlabelled text scored by TFX's BulkInferrer with the blessed candidate."""

    input_dir: str
    pattern: str = "*.csv"  # CSV with the text column(s), under input_dir


@dataclass
class FinetuneConfig:
    pipeline: PipelineSection
    data: DataSection
    model: ModelSection
    serving: ServingSection
    kind: Literal["finetune"] = "finetune"
    training: TrainingSection = field(default_factory=TrainingSection)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    scoring: ScoringSection | None = None

    @property
    def metadata_path(self) -> str:
        return self.pipeline.metadata_path or os.path.join(self.pipeline.root, "metadata.sqlite")

    @property
    def serving_model_dir(self) -> str:
        return os.path.join(self.serving.serving_dir, self.serving.model_name)


@dataclass
class TextSection:
    input_dir: str
    # Glob under input_dir; may hold {SPAN} (and {VERSION}): each run takes the newest span.
    input_pattern: str = "*.txt"
    document_mode: Literal["file", "blank_line", "regex"] = "file"
    document_start_regex: str = ""  # for document_mode "regex", e.g. "^CHAPTER [IVXLC0-9]+"
    sentence_splitting: Literal["rules", "line"] = "rules"
    max_line_bytes: int = 65536
    eval_fraction: float = 0.1


@dataclass
class VocabularySection:
    size: int = 8000
    lower_case: bool = True
    import_path: str | None = None  # a vocab.txt to use instead of learning one


@dataclass
class EncoderSection:
    num_layers: int = 2
    num_heads: int = 2
    hidden_dim: int = 128
    intermediate_dim: int = 512
    dropout: float = 0.1
    init_checkpoint: str | None = None  # continue pretraining a checkpoint (same vocabulary)


@dataclass
class PretrainingSection:
    batch_size: int = 32
    train_steps: int = 1000
    checkpoint_every: int = 100
    learning_rate: float = 1e-4
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    eval_batches: int = 20
    mixed_precision: bool = False  # bfloat16 compute (GPUs/TPUs)
    jit_compile: bool = False  # XLA
    seed: int = 42


@dataclass
class PretrainConfig:
    pipeline: PipelineSection
    text: TextSection
    encoder_dir: str  # encoder checkpoints are pushed to <encoder_dir>/<version>/
    kind: Literal["pretrain"] = "pretrain"
    vocabulary: VocabularySection = field(default_factory=VocabularySection)
    examples: PretrainingConfig = field(default_factory=PretrainingConfig)  # the component's own
    encoder: EncoderSection = field(default_factory=EncoderSection)
    training: PretrainingSection = field(default_factory=PretrainingSection)

    @property
    def metadata_path(self) -> str:
        return self.pipeline.metadata_path or os.path.join(self.pipeline.root, "metadata.sqlite")


CONFIG_KINDS: dict[str, type] = {"finetune": FinetuneConfig, "pretrain": PretrainConfig}

# Fields holding filesystem paths (dotted), resolved against the config file's directory.
PATH_FIELDS = (
    "pipeline.root",
    "pipeline.metadata_path",
    "data.input_dir",
    "model.checkpoint",
    "serving.serving_dir",
    "text.input_dir",
    "scoring.input_dir",
    "vocabulary.import_path",
    "encoder.init_checkpoint",
    "encoder_dir",
)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false",
            type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, key, source)
            except ConfigError as error:
                errors.append(error)
        raise ConfigError(f"{source}: {key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{source}: {key}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key}: expected {_type_name(tp)}, got {value!r}")
        (item_type,) = typing.get_args(tp)
        return [_convert(v, item_type, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
        key_type, value_type = typing.get_args(tp)
        return {
            _convert(k, key_type, f"{key}", source): _convert(v, value_type, f"{key}.{k}", source)
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, source)
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 5e-5 as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{source}: {key}: expected {_type_name(tp)}, got {value!r}")


def _build(cls: type, values: Any, prefix: str, source: str) -> Any:
    where = prefix or "the top level"
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {where}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in values:
        if name not in fields:
            dotted = f"{prefix}.{name}" if prefix else str(name)
            raise ConfigError(
                f"{source}: unknown key {dotted!r} (known at {where}: {', '.join(fields)})"
            )
    kwargs = {}
    for name, spec in fields.items():
        dotted = f"{prefix}.{name}" if prefix else name
        if name in values:
            kwargs[name] = _convert(values[name], hints[name], dotted, source)
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key {dotted!r}")
    try:
        return cls(**kwargs)
    except ValueError as e:  # a dataclass's own validation, e.g. PretrainingConfig's
        raise ConfigError(f"{source}: {where}: {e}") from None


def _resolve_paths(config: Any, base_dir: str) -> None:
    for dotted in PATH_FIELDS:
        section_name, _, name = dotted.rpartition(".")
        section = getattr(config, section_name, None) if section_name else config
        value = getattr(section, name, None) if section is not None else None
        if isinstance(value, str) and "://" not in value and not value.startswith("package:"):
            setattr(section, name, os.path.normpath(os.path.join(base_dir, value)))


def _check_pretrain(config: PretrainConfig, fail) -> None:
    examples, training = config.examples, config.training
    if not 8 <= examples.max_seq_length <= 512:
        fail("examples.max_seq_length", "must be between 8 and 512")
    if config.encoder.hidden_dim % config.encoder.num_heads:
        fail("encoder.hidden_dim", "must be a multiple of encoder.num_heads")
    if training.checkpoint_every < 1 or training.train_steps % training.checkpoint_every:
        fail("training.train_steps", "must be a positive multiple of training.checkpoint_every")
    if not 0.0 < config.text.eval_fraction < 1.0:
        fail("text.eval_fraction", "must be in (0, 1)")
    if config.text.document_mode == "regex" and not config.text.document_start_regex:
        fail("text.document_start_regex", "is required with document_mode: regex")


def _check(config, source: str) -> None:
    def fail(key: str, message: str) -> None:
        raise ConfigError(f"{source}: {key}: {message}")

    if isinstance(config, PretrainConfig):
        _check_pretrain(config, fail)
        return

    if len(config.data.classes) < 2:
        fail("data.classes", "needs at least two class names")
    if len(set(config.data.classes)) != len(config.data.classes):
        fail("data.classes", "class names must be unique")
    if "train" not in config.data.splits or "eval" not in config.data.splits:
        fail("data.splits", "needs a 'train' and an 'eval' pattern")
    if not 3 <= config.model.max_seq_length <= 512:
        fail("model.max_seq_length", "must be between 3 and 512")
    if config.training.batch_size < 1:
        fail("training.batch_size", "must be positive")
    if config.training.epochs < 1:
        fail("training.epochs", "must be positive")
    if config.training.max_steps is not None and config.training.max_steps < 0:
        fail("training.max_steps", "must be 0 or more")
    if not 0.0 <= config.training.warmup_fraction < 1.0:
        fail("training.warmup_fraction", "must be in [0, 1)")
    if config.training.learning_rate <= 0:
        fail("training.learning_rate", "must be positive")
    if not config.serving.model_name or "/" in config.serving.model_name or (
        config.serving.model_name.startswith(".")
    ):
        fail("serving.model_name", "must be a plain name (no '/', not starting with '.')")


def load_config(path: str) -> FinetuneConfig | PretrainConfig:
    """Reads and validates a pipeline config; raises ConfigError with a one-line message."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    kind = raw.get("kind", "finetune")
    if kind not in CONFIG_KINDS:
        raise ConfigError(f"{path}: kind: expected one of {', '.join(CONFIG_KINDS)}, got {kind!r}")
    config = _build(CONFIG_KINDS[kind], raw, "", path)
    _resolve_paths(config, os.path.dirname(os.path.abspath(path)))
    _check(config, path)
    return config
