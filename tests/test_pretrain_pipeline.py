"""End to end: the pretraining pipeline, an interrupted Trainer that resumes, and a
fine-tuning run that warm-starts from the encoder it pushed."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

TRAIN_STEPS, CHECKPOINT_EVERY, KILL_AFTER_STEP = 80, 10, 20


def _pretrain_config(tmp: Path) -> Path:
    path = tmp / "pretrain.yaml"
    path.write_text(textwrap.dedent(f"""
        kind: pretrain
        pipeline: {{name: tiny_pretrain, root: root}}
        text:
          input_dir: {REPO / "data/corpus"}
          input_pattern: wizard_of_oz.txt
          document_mode: regex
          document_start_regex: "^CHAPTER [0-9]+"
          eval_fraction: 0.2
        vocabulary: {{size: 2000, lower_case: true}}
        examples: {{max_seq_length: 64, max_predictions_per_seq: 10, dupe_factor: 1}}
        encoder: {{num_layers: 1, num_heads: 2, hidden_dim: 32, intermediate_dim: 64}}
        training: {{batch_size: 8, train_steps: {TRAIN_STEPS},
                    checkpoint_every: {CHECKPOINT_EVERY}, learning_rate: 1.0e-3,
                    eval_batches: 4}}
        encoder_dir: encoders
    """))
    return path


def _command(config: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "run", str(config)]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """Runs the pretraining pipeline, kills it mid-training, runs it again."""
    tmp = tmp_path_factory.mktemp("pretrain")
    config = _pretrain_config(tmp)
    process = subprocess.Popen(_command(config), cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    killed_after = None
    first_output = []
    for line in process.stdout:
        first_output.append(line)
        match = re.search(r"checkpoint saved at step (\d+)", line)
        if match and int(match.group(1)) >= KILL_AFTER_STEP:
            process.send_signal(signal.SIGKILL)  # no chance to clean up: a real crash
            killed_after = int(match.group(1))
            break
    process.wait(timeout=60)
    second = subprocess.run(_command(config), cwd=REPO, capture_output=True, text=True,
                            timeout=900)
    print("".join(first_output)[-3000:], second.stdout[-3000:], second.stderr[-3000:])
    return tmp, killed_after, "".join(first_output), second


def test_interrupted_training_resumes_instead_of_restarting(pretrained):
    tmp, killed_after, _, second = pretrained
    assert killed_after is not None, "training never reported a checkpoint"
    assert killed_after < TRAIN_STEPS
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = re.search(r"resuming from the checkpoint at step (\d+)", second.stdout)
    assert resumed, second.stdout[-2000:]
    assert killed_after <= int(resumed.group(1)) < TRAIN_STEPS
    saved_steps = [int(s) for s in re.findall(r"checkpoint saved at step (\d+)", second.stdout)]
    assert saved_steps and min(saved_steps) > int(resumed.group(1))  # nothing redone
    assert f"optimizer steps: {TRAIN_STEPS} (resumed from step {resumed.group(1)})" in \
        second.stdout


def test_encoder_checkpoint_is_pushed_with_metrics_that_improved(pretrained):
    tmp, _, _, second = pretrained
    versions = sorted(p for p in (tmp / "encoders").iterdir() if p.name.isdigit())
    assert len(versions) == 1
    checkpoint = versions[0]
    for name in ("encoder.json", "encoder.weights.h5", "vocab.txt", "pretraining_metrics.json"):
        assert (checkpoint / name).is_file(), name
    metrics = json.loads((checkpoint / "pretraining_metrics.json").read_text())
    assert metrics["optimizer_steps"] == TRAIN_STEPS
    before, after = metrics["initial"], metrics["final"]
    assert after["loss"] < before["loss"]
    assert after["mlm_logits_accuracy"] > before["mlm_logits_accuracy"]
    assert "masked-LM accuracy" in second.stdout and "next-sentence accuracy" in second.stdout
    assert f"PUSHED encoder checkpoint version {checkpoint.name}" in second.stdout
    vocabulary = (checkpoint / "vocab.txt").read_text().split("\n")
    assert vocabulary[:4] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def test_finetuning_warm_starts_from_the_pretrained_encoder(pretrained):
    tmp, _, _, _ = pretrained
    data = tmp / "sst2"
    for split, rows in (("train", 64), ("eval", 32)):
        source = REPO / f"data/sst2/{split}/{split}.csv"
        (data / split).mkdir(parents=True)
        lines = source.read_text(encoding="utf-8").splitlines(keepends=True)[: rows + 1]
        (data / split / f"{split}.csv").write_text("".join(lines), encoding="utf-8")
    config = tmp / "finetune.yaml"
    config.write_text(textwrap.dedent(f"""
        kind: finetune
        pipeline: {{name: from_pretrained, root: root_ft}}
        data: {{input_dir: {data}, classes: [negative, positive]}}
        model: {{checkpoint: encoders, max_seq_length: 32}}
        training: {{batch_size: 16, max_steps: 4, length_buckets: [16]}}
        evaluation: {{min_accuracy: 0.0}}
        serving: {{model_name: from_novels, serving_dir: serving}}
    """))
    result = subprocess.run(_command(config), cwd=REPO, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PUSHED model 'from_novels'" in result.stdout
    pushed = [p for p in (tmp / "serving/from_novels").iterdir() if p.name.isdigit()]
    assert len(pushed) == 1 and (pushed[0] / "saved_model.pb").is_file()


def test_mixed_precision_and_xla_from_config(pretrained, tmp_path):
    """The Trainer's run_fn with `mixed_precision` (bfloat16) and `jit_compile` (XLA) on,
    on the real examples the pipeline above generated."""
    tmp, _, _, _ = pretrained
    splits = sorted((tmp / "root/PretrainingExampleGen/pretraining_examples").glob("*/Split-*"))
    examples = {p.name.removeprefix("Split-"): str(p / "*") for p in splits}
    config = {
        "num_layers": 1, "num_heads": 2, "hidden_dim": 32, "intermediate_dim": 64,
        "dropout": 0.1, "init_checkpoint": None, "batch_size": 8, "train_steps": 4,
        "checkpoint_every": 2, "learning_rate": 1e-3, "warmup_fraction": 0.1,
        "weight_decay": 0.01, "eval_batches": 1, "mixed_precision": True, "jit_compile": True,
        "seed": 1, "max_seq_length": 64, "max_predictions_per_seq": 10,
        "backup_root": str(tmp_path / "backups"),
    }
    script = textwrap.dedent(f"""
        import json, types
        from pipeline.modules import pretraining
        args = types.SimpleNamespace(train_files=[{examples['train']!r}],
            eval_files=[{examples['eval']!r}], custom_config=json.loads({json.dumps(config)!r}),
            serving_model_dir={str(tmp_path / "encoder")!r})
        pretraining.run_fn(args)
        import keras
        print("policy", keras.mixed_precision.dtype_policy().name)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "policy mixed_bfloat16" in result.stdout
    metrics = json.loads((tmp_path / "encoder" / "pretraining_metrics.json").read_text())
    assert metrics["optimizer_steps"] == 4
    assert math.isfinite(metrics["final"]["loss"])
