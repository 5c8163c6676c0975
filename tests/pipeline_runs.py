"""Helpers of the end-to-end pipeline tests: run `bertpipe run` as a scheduler would, and
read the metrics block its report prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_pipeline(config: Path, timeout: float, *options: str) -> subprocess.CompletedProcess:
    """`bertpipe run CONFIG [OPTIONS]` in a fresh process; its output tails are printed for
    failures."""
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(config), *options],
        capture_output=True, text=True, cwd=REPO, timeout=timeout,
    )
    print(result.stdout[-3000:], result.stderr[-3000:])
    return result


def printed_metrics(stdout: str) -> dict[str, float]:
    """The metrics block `bertpipe run` prints: `  name   value` lines after its heading."""
    block = stdout.split("evaluation metrics (eval split):", 1)[1].splitlines()[1:]
    metrics = {}
    for line in block:
        match = re.match(r"  (\S.*?)\s+(-?\d+\.\d+)(\s|$)", line)
        if not match:
            break
        metrics[match.group(1)] = float(match.group(2))
    return metrics
