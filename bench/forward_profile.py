"""Where the forward pass's time goes, per op category: our export (what a server runs) and
PyTorch under bf16 autocast, same model, same texts, one run.

  ours   the MiniLM classifier exported by `serving.export.export_saved_model` (tokenizer in
         the graph) in each `--settings` precision (+xla: `serving.jit_compile`), loaded in a
         TF1 session as TF Serving and `bertpipe serve` load it, and run with full tracing
         (`RunOptions.FULL_TRACE`): every node's time from the step stats, by op type. An XLA
         export's model call is one `_XlaRun` node: its time against the tokenizer's is what
         that setting tells.
  peer   `BertForSequenceClassification` under `torch.inference_mode()` and
         `torch.autocast("cpu", dtype=torch.bfloat16)`, its tokenizer (`BertTokenizerFast`,
         padding to the longest) timed apart, the model by `torch.profiler` (self CPU time by
         aten op).

Ops are grouped into categories (matrix products, attention softmax, layer norm, GELU,
casts, tokenizer, other) and printed as milliseconds per batch and share of the total, for
`--batch` texts of SST-2's holdout set (padded to their longest, as both sides do). Op times
under tracing add overhead; compare shares, and take speeds from `bench/encoder_forward.py`.

Usage:
    nice -n 5 .venv/bin/python bench/forward_profile.py [--batch 32] [--settings mixed_bfloat16]
"""

from __future__ import annotations

import argparse
import collections
import csv
import os
import sys
import tempfile
import time

from _common import REPO, minilm_dir

sys.path.insert(0, str(REPO))

# op type (TF) or aten op name (torch) -> category; anything else is "other".
CATEGORIES = {
    "matrix products": ("MatMul", "BatchMatMul", "BatchMatMulV2", "Einsum", "_MklMatMul",
                        "_MklEinsum", "_MklBatchMatMul", "_MklBatchMatMulV2", "_MklFusedMatMul",
                        "_MklNativeFusedMatMul", "_MklNativeBatchMatMul", "aten::addmm",
                        "aten::mm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm",
                        "mkldnn::", "aten::_addmm_activation",
                        "aten::scaled_dot_product_attention",
                        "aten::_scaled_dot_product_flash_attention_for_cpu"),
    "attention softmax": ("Softmax", "_MklSoftmax", "aten::softmax", "aten::_softmax"),
    "layer norm": ("Mean", "SquaredDifference", "Rsqrt", "FusedBatchNorm", "_MklLayerNorm",
                   "aten::layer_norm", "aten::native_layer_norm"),
    # Keras's tanh GELU is elementwise ops too (Mul, Tanh, Square, AddV2): they land here.
    "elementwise (GELU etc.)": (
        "Erf", "Gelu", "Tanh", "Mul", "AddV2", "Add", "Square", "BiasAdd", "SelectV2", "Sub",
        "RealDiv", "aten::gelu", "aten::add", "aten::add_", "aten::mul", "aten::div",
        "aten::tanh"),
    "casts and transposes": ("Cast", "_MklTranspose", "Transpose", "aten::to", "aten::_to_copy",
                             "aten::copy_", "aten::transpose", "aten::permute",
                             "aten::contiguous", "aten::clone"),
    "XLA-compiled model": ("_XlaRun", "_XlaCompile", "XlaLaunch", "xla"),
    "tokenizer": ("CaseFoldUTF8", "NormalizeUTF8", "RegexSplitWithOffsets", "StaticRegexReplace",
                  "RegexReplace", "FastWordpieceTokenizeWithOffsets", "StringLower",
                  "StringLength", "UnicodeDecodeWithOffsets", "RaggedTensorToTensor",
                  "tokenizer"),
}


# Function-call nodes: their time spans the nodes of the function they call.
CALL_OPS = {"PartitionedCall", "StatefulPartitionedCall", "While", "StatelessWhile", "If",
            "StatelessIf", "Case"}


def category(op: str) -> str:
    for name, ops in CATEGORIES.items():
        if any(op == o or (o.endswith("::") and op.startswith(o)) for o in ops):
            return name
    return "other"


def load_texts(batch: int) -> list[str]:
    with open(os.path.join(REPO, "data", "sst2", "holdout.csv"), newline="", encoding="utf-8") as f:
        return [row["sentence"] for row in csv.DictReader(f)][:batch]


def profile_export(setting: str, texts: list[str], runs: int, workdir: str) -> dict[str, float]:
    """ms per batch by category, over `runs` traced session runs of the export."""
    import keras
    import keras_hub
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from bert_keras.vocabulary import read_vocabulary
    from serving.export import export_saved_model
    from serving.text_encoder import BertTextEncoder

    precision, _, xla = setting.partition("+")
    export_dir = os.path.join(workdir, setting)
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone.from_preset(minilm_dir())
    model = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None)
    encoder = BertTextEncoder(read_vocabulary(os.path.join(minilm_dir(), "vocab.txt")), 128)
    export_saved_model(model, encoder, ["negative", "positive"], export_dir,
                       precision=precision, jit_compile=bool(xla))
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
        signature = meta.signature_def["serving_default"]
        feed = {signature.inputs["text"].name: texts}
        fetch = signature.outputs["probabilities"].name
        for _ in range(3):  # warm-up: graph optimisation, XLA compilation
            session.run(fetch, feed)
        totals: dict[str, float] = collections.Counter()
        started = time.perf_counter()
        for _ in range(runs):
            session.run(fetch, feed)
        wall_ms = (time.perf_counter() - started) * 1000 / runs
        for _ in range(runs):
            metadata = tf.compat.v1.RunMetadata()
            session.run(fetch, feed, options=tf.compat.v1.RunOptions(
                trace_level=tf.compat.v1.RunOptions.FULL_TRACE), run_metadata=metadata)
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    op = node.timeline_label.split("(")[0].split(" = ")[-1].strip() or node.node_name
                    if op in CALL_OPS:  # its time is its body's nodes', counted there
                        continue
                    totals[category(op)] += node.op_end_rel_micros / 1000.0
                    if os.environ.get("PROFILE_OPS"):
                        print(f"{op}\t{node.op_end_rel_micros}", file=sys.stderr)
    per_batch = {name: value / runs for name, value in totals.items()}
    if xla:  # the compiled program runs inside its call node, untraced: the rest of the wall
        per_batch["XLA-compiled model"] = max(0.0, wall_ms - sum(per_batch.values()))
    return per_batch


def profile_torch(texts: list[str], runs: int) -> dict[str, float]:
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(minilm_dir(), num_labels=2).eval()
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    totals: dict[str, float] = collections.Counter()

    def forward():
        started = time.perf_counter()
        inputs = tokenizer(texts, padding="longest", truncation=True, max_length=128,
                           return_tensors="pt")
        totals["tokenizer"] += (time.perf_counter() - started) * 1000
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(**inputs).logits

    for _ in range(3):
        forward()
    totals.clear()
    with profile(activities=[ProfilerActivity.CPU]) as trace:
        for _ in range(runs):
            forward()
    for event in trace.key_averages():
        totals[category(event.key)] += event.self_cpu_time_total / 1000.0
    return {name: value / runs for name, value in totals.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--settings", default="mixed_bfloat16,mixed_bfloat16+xla",
                        help="our export settings (default: %(default)s)")
    args = parser.parse_args(argv)
    texts = load_texts(args.batch)
    load_before = os.getloadavg()[0]
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for setting in args.settings.split(","):
            results[f"ours {setting}"] = profile_export(setting, texts, args.runs, workdir)
    results["torch bf16 autocast"] = profile_torch(texts, args.runs)
    names = [*CATEGORIES, "other"]
    print(f"\n{args.batch} SST-2 sentences per batch, ms per batch (share); load average "
          f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"{'category':>24} " + " ".join(f"{side:>28}" for side in results))
    for name in names:
        cells = []
        for totals in results.values():
            total = sum(totals.values())
            value = totals.get(name, 0.0)
            cells.append(f"{value:>8.1f} ({value / total:>4.0%})" if total else "")
        print(f"{name:>24} " + " ".join(f"{cell:>28}" for cell in cells))
    print(f"{'total':>24} " + " ".join(f"{sum(t.values()):>28.1f}" for t in results.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
