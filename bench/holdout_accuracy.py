"""Accuracy of a pushed model on the held-out SST-2 sentences (data/sst2/holdout.csv).

    .venv/bin/python bench/holdout_accuracy.py serving_models/sst2/<version>

The held-out rows are whole sentences none of whose phrases are in the training sample
(see data/make_sst2_sample.py), so this estimates accuracy on unseen SST-2 sentences.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer kernels)
from _common import REPO

HOLDOUT = REPO / "data" / "sst2" / "holdout.csv"


def holdout_accuracy(model_dir: str, path: Path = HOLDOUT, batch_size: int = 128) -> float:
    predict = tf.saved_model.load(model_dir).signatures["serving_default"]
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    correct = 0
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        probabilities = predict(text=tf.constant([r["sentence"] for r in batch]))["probabilities"]
        labels = np.array([int(r["label"]) for r in batch])
        correct += int((probabilities.numpy().argmax(axis=1) == labels).sum())
    return correct / len(rows)


if __name__ == "__main__":
    print(f"held-out accuracy: {holdout_accuracy(sys.argv[1]):.4f} on {HOLDOUT}")
