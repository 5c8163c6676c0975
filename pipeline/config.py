"""Typed pipeline configuration, read from YAML and checked before anything runs.

Every section is a pydantic model with `extra="forbid"`. A config is a discriminated union:
`kind` picks fine-tuning or pretraining, and a fine-tuning config's `task` picks the task
(`pipeline.tasks`: each task adds its own `data:` and `evaluation:` sections). `load_config`
turns pydantic's errors into one line naming the file and the dotted key
(`FILE: training.batch_size: expected an integer, got 'abc'`). Relative paths are resolved
against the directory of the YAML file, so a scheduled run works from any cwd. Nothing here
imports TensorFlow or TFX.

Example:

>>> config = load_config("configs/demo_sst2.yaml")  # doctest: +SKIP
>>> config.task, config.training.batch_size  # doctest: +SKIP
('text_classification', 32)
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

from components.pretraining_examples.recipe import PretrainingConfig


class ConfigError(ValueError):
    """A config file that does not describe a valid pipeline."""


def _number(value: Any) -> Any:
    """YAML 1.1 reads 5e-5 as a string, and 1 as an integer: both are fine numbers."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# Strict types: YAML's `true` is no integer and `8` no string.
Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
Float = Annotated[float, Strict(), BeforeValidator(_number)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=False)


# Keras dtype policies a model may train or be exported with: float32, or bfloat16 compute
# with float32 weights (Keras's "mixed_bfloat16"; fast on CPUs with AVX512_BF16 or AMX, and
# on GPUs and TPUs).
Precision = Literal["float32", "mixed_bfloat16"]


# Vertex AI / Kubeflow Pipelines accept only these pipeline names; checked for every config
# so a pipeline that runs locally also compiles for Vertex.
PIPELINE_NAME_PATTERN = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"


class PipelineSection(Section):
    name: Str
    root: Str  # pipeline root: artifacts, and metadata.sqlite unless metadata_path is set
    metadata_path: Str | None = None
    enable_cache: Bool = True
    # Apache Beam options for every Beam-based component, e.g. ["--direct_num_workers=2"].
    beam_args: list[Str] = Field(default_factory=list)
    # When a scheduler runs it (`bertpipe compile --target airflow`): a cron expression
    # ("0 3 * * *") or a preset ("@daily", "@hourly"...); None: only when triggered.
    schedule: Str | None = None


class IngestionSection(Section):
    """What every task's `data:` section shares: spans, and how bad rows are handled."""

    input_dir: Str
    # Input patterns may hold TFX's {SPAN} (and {VERSION}): a run ingests the newest span and
    # trains on the newest `rolling_spans` spans ingested so far (TFX's rolling range).
    rolling_spans: Int = 1
    # Bad rows (undecodable, too large, wrong columns, unknown labels...) are quarantined; the
    # run stops before training only when their share of the rows read is above this.
    max_bad_fraction: Float = 0.0
    max_field_bytes: Int = 100_000  # a longer field (or record) is a bad row

    def check_ingestion(self, patterns: list[str], fail) -> None:
        if self.rolling_spans < 1:
            fail("data.rolling_spans", "must be 1 or more")
        if self.rolling_spans > 1 and not any("{SPAN}" in p for p in patterns):
            fail("data.rolling_spans", "needs {SPAN} in the data's input patterns")
        if not 0.0 <= self.max_bad_fraction < 1.0:
            fail("data.max_bad_fraction", "must be in [0, 1)")
        if self.max_field_bytes < 1:
            fail("data.max_field_bytes", "must be positive")


class ModelSection(Section):
    # A Hugging Face BERT directory, a bertpipe encoder checkpoint, or package:NAME/subdir.
    checkpoint: Str
    max_seq_length: Int = 128
    dropout: Float = 0.1
    lower_case: Bool | None = None  # None: what the checkpoint says
    pooling: Literal["cls", "mean"] = "cls"  # sentence vector: [CLS] pooler or masked mean
    # Where fine-tuning starts: `checkpoint`, or the weights of this pipeline's latest blessed
    # model (from ML Metadata), falling back to `checkpoint` until one exists.
    warm_start: Literal["checkpoint", "latest_blessed"] = "checkpoint"


class TrainingSection(Section):
    batch_size: Int = 32
    epochs: Int = 1
    max_steps: Int | None = None  # caps epochs * steps_per_epoch; 0 exports untrained
    learning_rate: Float = 5e-5
    warmup_fraction: Float = 0.1
    weight_decay: Float = 0.01
    eval_batch_size: Int = 128
    seed: Int = 42
    # Batch by padded length buckets, trimming padding per batch (much faster on short text).
    length_buckets: list[Int] = Field(default_factory=lambda: [16, 32, 64])
    precision: Precision = "float32"  # the Keras dtype policy while fine-tuning
    jit_compile: Bool = False  # XLA-compile the train step (Keras's model.compile argument)


class ServingSection(Section):
    model_name: Str
    serving_dir: Str = "serving_models"
    # What the exported SavedModel computes the encoder in (the head and outputs stay
    # float32, so the signatures are the same either way); independent of training.precision.
    precision: Precision = "float32"
    # The encoder call in a tf.function(jit_compile=True): TF Serving then needs
    # --xla_cpu_compilation_enabled=true (README, "Serving").
    jit_compile: Bool = False


class ScoringSection(Section):
    """Unlabelled rows scored by TFX's BulkInferrer with the blessed candidate."""

    input_dir: Str
    pattern: Str = "*.csv"  # files with the input column(s), under input_dir


def check_pipeline_name(name: str, fail) -> None:
    if not re.fullmatch(PIPELINE_NAME_PATTERN, name):
        fail("pipeline.name",
             f"{name!r} must be lower-case letters, digits and '-' (not at either end), "
             f"as Vertex AI Pipelines requires, e.g. {re.sub('[^a-z0-9-]+', '-', name.lower()).strip('-')!r}")


class FinetuneConfig(Section):
    """What every fine-tuning task shares; each task subclasses it with `data`/`evaluation`."""

    kind: Literal["finetune"] = "finetune"
    task: str
    pipeline: PipelineSection
    model: ModelSection
    serving: ServingSection
    training: TrainingSection = Field(default_factory=TrainingSection)
    scoring: ScoringSection | None = None

    @property
    def metadata_path(self) -> str:
        return self.pipeline.metadata_path or os.path.join(self.pipeline.root, "metadata.sqlite")

    @property
    def serving_model_dir(self) -> str:
        return os.path.join(self.serving.serving_dir, self.serving.model_name)

    def check(self, fail) -> None:
        """Checks across keys; a task adds its own (call super)."""
        check_pipeline_name(self.pipeline.name, fail)
        if not 3 <= self.model.max_seq_length <= 512:
            fail("model.max_seq_length", "must be between 3 and 512")
        if self.training.batch_size < 1:
            fail("training.batch_size", "must be positive")
        if self.training.epochs < 1:
            fail("training.epochs", "must be positive")
        if self.training.max_steps is not None and self.training.max_steps < 0:
            fail("training.max_steps", "must be 0 or more")
        if not 0.0 <= self.training.warmup_fraction < 1.0:
            fail("training.warmup_fraction", "must be in [0, 1)")
        if self.training.learning_rate <= 0:
            fail("training.learning_rate", "must be positive")
        name = self.serving.model_name
        if not name or "/" in name or name.startswith("."):
            fail("serving.model_name", "must be a plain name (no '/', not starting with '.')")


class TextSection(Section):
    input_dir: Str
    # Glob under input_dir; may hold {SPAN} (and {VERSION}): each run takes the newest span.
    input_pattern: Str = "*.txt"
    document_mode: Literal["file", "blank_line", "regex"] = "file"
    document_start_regex: Str = ""  # for document_mode "regex", e.g. "^CHAPTER [IVXLC0-9]+"
    sentence_splitting: Literal["rules", "line"] = "rules"
    max_line_bytes: Int = 65536
    eval_fraction: Float = 0.1


class VocabularySection(Section):
    size: Int = 8000
    lower_case: Bool = True
    import_path: Str | None = None  # a vocab.txt to use instead of learning one


class EncoderSection(Section):
    num_layers: Int = 2
    num_heads: Int = 2
    hidden_dim: Int = 128
    intermediate_dim: Int = 512
    dropout: Float = 0.1
    init_checkpoint: Str | None = None  # continue pretraining a checkpoint (same vocabulary)


class PretrainingSection(Section):
    batch_size: Int = 32
    train_steps: Int = 1000
    checkpoint_every: Int = 100
    learning_rate: Float = 1e-4
    warmup_fraction: Float = 0.1
    weight_decay: Float = 0.01
    eval_batches: Int = 20
    precision: Precision = "float32"  # the same key as a fine-tuning config's
    jit_compile: Bool = False  # XLA
    seed: Int = 42

    @pydantic.model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        # `mixed_precision: true` was this section's key before fine-tuning gained the same
        # option; one name for both now, and a config with the old one says what to write.
        if isinstance(data, dict) and "mixed_precision" in data:
            new = "mixed_bfloat16" if data["mixed_precision"] is True else "float32"
            raise ValueError(f"mixed_precision was renamed: write precision: {new}")
        return data


# The pretraining-data component's own dataclass is the `examples:` section; pydantic
# validates its fields and runs its __post_init__ checks. Unknown keys are errors there too.
PretrainingConfig.__pydantic_config__ = ConfigDict(extra="forbid")


class PretrainConfig(Section):
    kind: Literal["pretrain"]
    pipeline: PipelineSection
    text: TextSection
    encoder_dir: Str  # encoder checkpoints are pushed to <encoder_dir>/<version>/
    vocabulary: VocabularySection = Field(default_factory=VocabularySection)
    examples: PretrainingConfig = Field(default_factory=PretrainingConfig)
    encoder: EncoderSection = Field(default_factory=EncoderSection)
    training: PretrainingSection = Field(default_factory=PretrainingSection)

    @property
    def metadata_path(self) -> str:
        return self.pipeline.metadata_path or os.path.join(self.pipeline.root, "metadata.sqlite")

    def check(self, fail) -> None:
        check_pipeline_name(self.pipeline.name, fail)
        examples, training = self.examples, self.training
        if not 8 <= examples.max_seq_length <= 512:
            fail("examples.max_seq_length", "must be between 8 and 512")
        if self.encoder.hidden_dim % self.encoder.num_heads:
            fail("encoder.hidden_dim", "must be a multiple of encoder.num_heads")
        if training.checkpoint_every < 1 or training.train_steps % training.checkpoint_every:
            fail("training.train_steps",
                 "must be a positive multiple of training.checkpoint_every")
        if not 0.0 < self.text.eval_fraction < 1.0:
            fail("text.eval_fraction", "must be in (0, 1)")
        if self.text.document_mode == "regex" and not self.text.document_start_regex:
            fail("text.document_start_regex", "is required with document_mode: regex")


KINDS = ("finetune", "pretrain")
DEFAULT_TASK = "text_classification"  # `kind: finetune` configs without `task:`

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


def config_union():
    """The discriminated union of every config: `kind`, then a fine-tuning config's `task`."""
    from pipeline.tasks import TASKS

    finetune = Annotated[
        typing.Union[tuple(task.config_class for task in TASKS.values())],  # noqa: UP007
        Field(discriminator="task"),
    ]
    return Annotated[typing.Union[finetune, PretrainConfig], Field(discriminator="kind")]  # noqa: UP007


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false",
            type(None): "null"}.get(tp, "a mapping")


def _field_type(model: Any, path: list) -> Any:
    """The annotation at a pydantic error location (tags of unions already removed)."""
    tp: Any = model
    for part in path:
        while typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = options[0] if len(options) == 1 else tp
        if isinstance(part, int):
            tp = typing.get_args(tp)[0] if typing.get_origin(tp) in (list, dict) else tp
            continue
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            tp = tp.model_fields[part].annotation if part in tp.model_fields else None
        elif dataclasses.is_dataclass(tp):
            tp = typing.get_type_hints(tp).get(part)
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    return tp


def _known_keys(model: Any, path: list) -> list[str]:
    tp = _field_type(model, path)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    if dataclasses.is_dataclass(tp):
        return [f.name for f in dataclasses.fields(tp)]
    return []


def _describe(error: dict, model: type, source: str) -> str:
    """One pydantic error -> `FILE: key: message`."""
    path = list(error["loc"])
    key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path)
    key = key.replace(".[", "[")
    kind = error["type"]
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        parent = path[:-1]
        where = ".".join(str(p) for p in parent) or "the top level"
        known = ", ".join(_known_keys(model, parent))
        return f"{source}: unknown key {key!r} (known at {where}: {known})"
    if kind == "missing":
        return f"{source}: missing required key {key!r}"
    if kind == "value_error":  # a section's own check, e.g. PretrainingConfig.__post_init__
        message = str(error.get("ctx", {}).get("error", error["msg"]))
        return f"{source}: {key or 'the top level'}: {message}"
    tp = _field_type(model, path)
    expected = _type_name(tp) if tp is not None else "something else"
    return f"{source}: {key or 'the top level'}: expected {expected}, got {error['input']!r}"


def _resolve_paths(config: Any, base_dir: str) -> None:
    for dotted in PATH_FIELDS:
        section_name, _, name = dotted.rpartition(".")
        section = getattr(config, section_name, None) if section_name else config
        value = getattr(section, name, None) if section is not None else None
        if isinstance(value, str) and "://" not in value and not value.startswith("package:"):
            setattr(section, name, os.path.normpath(os.path.join(base_dir, value)))


def parse_config(raw: Any, source: str) -> FinetuneConfig | PretrainConfig:
    """Validates a parsed YAML mapping; `source` names it in errors."""
    from pipeline.tasks import TASKS

    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    raw = dict(raw)
    kind = raw.setdefault("kind", "finetune")
    if kind not in KINDS:
        raise ConfigError(f"{source}: kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "finetune":
        task = raw.setdefault("task", DEFAULT_TASK)
        if task not in TASKS:
            raise ConfigError(
                f"{source}: task: expected one of {', '.join(TASKS)}, got {task!r}")
        model, tags = TASKS[task].config_class, 2
    else:
        model, tags = PretrainConfig, 1
    try:
        config = pydantic.TypeAdapter(config_union()).validate_python(raw)
    except pydantic.ValidationError as error:
        first = dict(error.errors()[0])
        first["loc"] = first["loc"][tags:]  # the union's tags: kind, then task
        raise ConfigError(_describe(first, model, source)) from None

    def fail(key: str, message: str) -> None:
        raise ConfigError(f"{source}: {key}: {message}")

    config.check(fail)
    return config


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
    config = parse_config(raw, path)
    _resolve_paths(config, os.path.dirname(os.path.abspath(path)))
    return config
