"""Benchmark: the built-in server's TF1-session model call vs the TF2 concrete function.

The built-in server loads every SavedModel as TF Serving does (serving/servable.py: the
`serve` MetaGraph restored into a `tf.compat.v1.Session`, signature tensors run by name).
Before issue 12 it called the restored TF2 concrete function eagerly instead. This measures
both on the same export in the same process, so the choice of one path for every model
rests on a number:

* session: `serving.servable.Servable.run("serving_default", ...)`, the server's own path.
* eager: `tf.saved_model.load(...).signatures["serving_default"](text=...)`, then `.numpy()`.

Model: the test classifier of tests/serving (a 1-layer BERT, hidden size 16, 16 tokens) or,
with `--export-dir`, any bertpipe text-classification export. The outputs of both paths are
checked to be equal first. Reported: milliseconds per call at 1 and 36 texts per call
(median of `--repeats` rounds of `--calls` calls, alternating the two paths).

Usage:
    .venv/bin/python bench/session_vs_eager.py [--export-dir serving_models/sst2/<version>]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export-dir", help="a text-classification export (default: a tiny one)")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO / "tests" / "serving"))
    import tensorflow as tf
    import tensorflow_text  # noqa: F401
    from serving_test_support import SENTENCES, export_version

    from serving.servable import Servable

    export_dir = args.export_dir
    if export_dir is None:
        export_dir = str(Path(tempfile.mkdtemp()) / "1")
        export_version(1, export_dir)
    servable = Servable("bench", 1, export_dir)
    function = tf.saved_model.load(export_dir).signatures["serving_default"]

    def session(texts: np.ndarray) -> dict:
        return servable.run("serving_default", {"text": texts})

    def eager(texts: np.ndarray) -> dict:
        return {name: t.numpy() for name, t in function(text=tf.constant(texts)).items()}

    many = np.array([s.encode() for s in SENTENCES] * 6, dtype=object)
    a, b = session(many), eager(many)
    for name in a:
        if a[name].dtype.kind in "OSU":
            np.testing.assert_array_equal(a[name], b[name])
        else:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6)

    print(f"export: {export_dir}")
    print("| texts per call | session (ms) | eager (ms) | session / eager |")
    print("|---|---|---|---|")
    for texts in (many[:1], many):
        times: dict[str, list[float]] = {"session": [], "eager": []}
        for _ in range(args.repeats):
            for name, call in (("session", session), ("eager", eager)):
                call(texts)
                start = time.perf_counter()
                for _ in range(args.calls):
                    call(texts)
                times[name].append((time.perf_counter() - start) / args.calls * 1e3)
        ours, theirs = statistics.median(times["session"]), statistics.median(times["eager"])
        print(f"| {len(texts)} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} |")


if __name__ == "__main__":
    main()
