"""End to end: the pretraining pipeline, an interrupted Trainer that resumes (killed right
after a checkpoint, at a random moment, and in the middle of a checkpoint write), and a
fine-tuning run that warm-starts from the encoder it pushed."""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

TRAIN_STEPS, CHECKPOINT_EVERY, KILL_AFTER_STEP = 120, 10, 20
CHECKPOINT_LINE = re.compile(r"checkpoint saved at step (\d+): loss=([0-9.]+)")


def _pretrain_config(tmp: Path) -> Path:
    path = tmp / "pretrain.yaml"
    path.write_text(textwrap.dedent(f"""
        kind: pretrain
        pipeline: {{name: tiny-pretrain, root: root}}
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


def _checkpoints(output: str) -> list[tuple[int, float]]:
    """(step, loss of the epoch before it) of each "checkpoint saved" line."""
    return [(int(step), float(loss)) for step, loss in CHECKPOINT_LINE.findall(output)]


def _kill_at_a_random_moment(config: Path, backups: Path) -> dict:
    """Runs the pipeline again and SIGKILLs it at a random moment of training: after two new
    checkpoints (timing one epoch), a seeded random delay of up to two epochs, so the kill
    can land while a checkpoint is being written. Set PRETRAIN_KILL_SEED to replay one."""
    seed = int(os.environ.get("PRETRAIN_KILL_SEED", time.time_ns() % 2**32))
    process = subprocess.Popen(_command(config), cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    output, seen, delay, epoch = [], [], None, None
    for line in process.stdout:
        output.append(line)
        if CHECKPOINT_LINE.search(line):
            seen.append(time.monotonic())
            if len(seen) == 2:
                epoch = max(seen[1] - seen[0], 0.05)
                delay = random.Random(seed).uniform(0, 2 * epoch)
                time.sleep(delay)
                process.send_signal(signal.SIGKILL)
                break
    output.append(process.stdout.read())  # what it printed before it died
    process.wait(timeout=60)
    assert delay is not None, "".join(output)[-3000:]  # it never got to two checkpoints
    partial = sorted(p.name for p in backups.glob("*/saving-*.weights.h5"))
    print(f"random kill: PRETRAIN_KILL_SEED={seed}, {delay:.3f} s after the checkpoint at step "
          f"{_checkpoints(''.join(output))[1][0]} (one epoch took {epoch:.3f} s); "
          f"a checkpoint write was cut short: {partial or 'no'}")
    return {"seed": seed, "output": "".join(output), "killed_mid_write": bool(partial)}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """Runs the pretraining pipeline and kills it right after a checkpoint, runs it again and
    kills it at a random moment, then runs it to the end."""
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
    random_kill = _kill_at_a_random_moment(config, tmp / "root/training_backups")
    last = subprocess.run(_command(config), cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    print("".join(first_output)[-3000:], random_kill["output"][-3000:], last.stdout[-3000:],
          last.stderr[-3000:])
    return {"tmp": tmp, "killed_after": killed_after, "first": "".join(first_output),
            "random_kill": random_kill, "last": last}


def test_interrupted_training_resumes_instead_of_restarting(pretrained):
    killed_after, second = pretrained["killed_after"], pretrained["random_kill"]["output"]
    assert killed_after is not None, "training never reported a checkpoint"
    assert killed_after < TRAIN_STEPS
    resumed = re.search(r"resuming from the checkpoint at step (\d+)", second)
    assert resumed, second[-2000:]
    assert killed_after <= int(resumed.group(1)) < TRAIN_STEPS
    saved_steps = [step for step, _ in _checkpoints(second)]
    assert saved_steps and min(saved_steps) == int(resumed.group(1)) + CHECKPOINT_EVERY


def test_killed_at_a_random_moment_resumes_from_its_last_checkpoint(pretrained):
    """The loss goes on from the checkpoint, not from scratch, and the run still takes
    exactly the configured number of optimizer steps."""
    killed, last = pretrained["random_kill"]["output"], pretrained["last"]
    assert last.returncode == 0, last.stderr[-3000:]
    last_saved = _checkpoints(killed)[-1][0]
    assert last_saved < TRAIN_STEPS, "the random kill came after the end of training"
    resumed = re.search(r"resuming from the checkpoint at step (\d+)", last.stdout)
    assert resumed, last.stdout[-2000:]
    resumed_step = int(resumed.group(1))
    # The printed line comes right after the write: a kill between the two loses nothing.
    assert resumed_step in (last_saved, last_saved + CHECKPOINT_EVERY)
    logged = _checkpoints(last.stdout)
    assert [step for step, _ in logged] == list(
        range(resumed_step + CHECKPOINT_EVERY, TRAIN_STEPS + 1, CHECKPOINT_EVERY))
    # From scratch the first epoch's loss is about 7.33; after 40+ steps it is below 6.9.
    from_scratch = _checkpoints(pretrained["first"])[0]
    assert from_scratch[0] == CHECKPOINT_EVERY
    assert logged[0][1] < from_scratch[1] - 0.3, (logged[0], from_scratch)
    assert f"optimizer steps: {TRAIN_STEPS} (resumed from step {resumed_step})" in last.stdout
    encoders = pretrained["tmp"] / "encoders"
    [version] = [p for p in encoders.iterdir() if p.name.isdigit()]
    metrics = json.loads((version / "pretraining_metrics.json").read_text())
    assert (metrics["optimizer_steps"], metrics["resumed_from_step"]) == (TRAIN_STEPS,
                                                                           resumed_step)


def test_encoder_checkpoint_is_pushed_with_metrics_that_improved(pretrained):
    tmp, second = pretrained["tmp"], pretrained["last"]
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
    tmp = pretrained["tmp"]
    data = tmp / "sst2"
    for split, rows in (("train", 64), ("eval", 32)):
        source = REPO / f"data/sst2/{split}/{split}.csv"
        (data / split).mkdir(parents=True)
        lines = source.read_text(encoding="utf-8").splitlines(keepends=True)[: rows + 1]
        (data / split / f"{split}.csv").write_text("".join(lines), encoding="utf-8")
    config = tmp / "finetune.yaml"
    config.write_text(textwrap.dedent(f"""
        kind: finetune
        pipeline: {{name: from-pretrained, root: root_ft}}
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


def _run_fn_script(examples: dict, config: dict, encoder_dir: Path, before: str = "") -> str:
    """A script that calls the Trainer's run_fn on the pipeline's examples (after `before`)."""
    return before + textwrap.dedent(f"""
        import json, types
        from pipeline.modules import pretraining
        def run(config, encoder_dir):
            args = types.SimpleNamespace(train_files=[{examples['train']!r}],
                eval_files=[{examples['eval']!r}], custom_config=config,
                serving_model_dir=encoder_dir)
            pretraining.run_fn(args)
        run(json.loads({json.dumps(config)!r}), {str(encoder_dir)!r})
    """)


def _examples(tmp: Path) -> dict:
    splits = sorted((tmp / "root/PretrainingExampleGen/pretraining_examples").glob("*/Split-*"))
    return {p.name.removeprefix("Split-"): str(p / "*") for p in splits}


def _trainer_config(tmp_path: Path, **overrides) -> dict:
    return {
        "num_layers": 1, "num_heads": 2, "hidden_dim": 32, "intermediate_dim": 64,
        "dropout": 0.1, "init_checkpoint": None, "batch_size": 8, "train_steps": 4,
        "checkpoint_every": 2, "learning_rate": 1e-3, "warmup_fraction": 0.1,
        "weight_decay": 0.01, "eval_batches": 1, "precision": "float32",
        "jit_compile": False, "seed": 1, "max_seq_length": 64, "max_predictions_per_seq": 10,
        "backup_root": str(tmp_path / "backups"), **overrides,
    }


XLA_COMPILED = "Compiled cluster using XLA"  # TensorFlow's log line, once per process


def test_mixed_precision_and_xla_from_config(pretrained, tmp_path):
    """The Trainer's run_fn with `precision: mixed_bfloat16` and `jit_compile` (XLA) off,
    then on, on the real examples the pipeline above generated: what the trained model
    computed in, stored its weights in, and whether XLA compiled its train step."""
    examples = _examples(pretrained["tmp"])
    off, on = tmp_path / "off", tmp_path / "on"
    # One process, "off" first: TensorFlow logs its first XLA compilation once per process.
    script = _run_fn_script(examples, _trainer_config(tmp_path), off) + textwrap.dedent(f"""
        import sys
        print("--- flags on ---", file=sys.stderr, flush=True)
        run(json.loads({json.dumps(_trainer_config(
            tmp_path, precision="mixed_bfloat16", jit_compile=True))!r}), {str(on)!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    log_off, _, log_on = result.stderr.partition("--- flags on ---")
    assert XLA_COMPILED not in log_off, "XLA compiled with jit_compile off"
    assert XLA_COMPILED in log_on, "XLA never compiled with jit_compile on"

    reports = {name: json.loads((path / "pretraining_metrics.json").read_text())
               for name, path in (("off", off), ("on", on))}
    for report in reports.values():
        assert report["optimizer_steps"] == 4
        assert math.isfinite(report["final"]["loss"])
        assert report["encoder_layer"] == "transformer_layer_0"
    precision = ("jit_compile", "encoder_layer_compute_dtype", "encoder_layer_variable_dtypes",
                 "sequence_output_dtype")
    assert {k: reports["on"][k] for k in precision} == {
        "jit_compile": True, "encoder_layer_compute_dtype": "bfloat16",
        "encoder_layer_variable_dtypes": ["float32"], "sequence_output_dtype": "bfloat16",
    }
    assert {k: reports["off"][k] for k in precision} == {
        "jit_compile": False, "encoder_layer_compute_dtype": "float32",
        "encoder_layer_variable_dtypes": ["float32"], "sequence_output_dtype": "float32",
    }


_KILL_DURING_A_CHECKPOINT_WRITE = """
import os, signal, keras
saves, save_weights = 0, keras.Model.save_weights
def half_written_then_killed(self, filepath, *args, **kwargs):
    global saves
    saves += 1
    save_weights(self, filepath, *args, **kwargs)
    if saves == 2:  # the second checkpoint: the file being written is cut in half
        with open(filepath, "r+b") as f:
            f.truncate(os.path.getsize(filepath) // 2)
        print("killed while writing", filepath, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
keras.Model.save_weights = half_written_then_killed
"""


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_checkpoint(pretrained,
                                                                         tmp_path):
    """SIGKILL in the middle of writing the checkpoint at step 4 of 6: the next run resumes
    from the one at step 2 and ends after exactly 6 optimizer steps."""
    examples = _examples(pretrained["tmp"])
    config = _trainer_config(tmp_path, train_steps=6)
    killed = subprocess.run(
        [sys.executable, "-c", _run_fn_script(examples, config, tmp_path / "encoder",
                                              _KILL_DURING_A_CHECKPOINT_WRITE)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert "checkpoint saved at step 2" in killed.stdout
    assert "killed while writing" in killed.stdout
    assert "checkpoint saved at step 4" not in killed.stdout

    resumed = subprocess.run(
        [sys.executable, "-c", _run_fn_script(examples, config, tmp_path / "encoder")],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from the checkpoint at step 2" in resumed.stdout
    assert [step for step, _ in _checkpoints(resumed.stdout)] == [4, 6]
    metrics = json.loads((tmp_path / "encoder" / "pretraining_metrics.json").read_text())
    assert (metrics["optimizer_steps"], metrics["resumed_from_step"]) == (6, 2)
