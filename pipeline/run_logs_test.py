"""RunLogs in a fresh process: what reaches the terminal and what the log file keeps."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import logging, os, sys
    from pipeline.console import console
    from pipeline.run_logs import RunLogs

    with RunLogs(sys.argv[1], verbose=sys.argv[2] == "verbose") as logs:
        print("python stdout")
        print("python stderr", file=sys.stderr)
        os.write(1, b"fd 1 from C\\n")
        os.write(2, b"fd 2 from C\\n")
        logging.getLogger("absl").warning("an absl warning")
        print("[1/2] ours", file=console())
        print("stopped: ours", file=logs.errors)
    print("after the run")
""")


def _run(tmp_path: Path, mode: str) -> tuple[subprocess.CompletedProcess, str]:
    log = tmp_path / mode / "run.log"
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(log), mode], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result, log.read_text()


def test_quiet_shows_only_our_lines_and_the_log_file_keeps_everything(tmp_path):
    result, log = _run(tmp_path, "quiet")
    assert result.stdout == "[1/2] ours\nafter the run\n"
    assert result.stderr == "stopped: ours\n"
    for line in ("python stdout", "python stderr", "fd 1 from C", "fd 2 from C",
                 "an absl warning"):
        assert line in log
    assert "ours" not in log


def test_verbose_also_shows_the_libraries_lines_and_keeps_the_same_log(tmp_path):
    result, log = _run(tmp_path, "verbose")
    assert result.stdout == "[1/2] ours\nafter the run\n"
    for line in ("python stdout", "python stderr", "fd 1 from C", "fd 2 from C",
                 "an absl warning"):
        assert line in log
        assert line in result.stderr
    assert result.stderr.endswith("stopped: ours\n") or "stopped: ours\n" in result.stderr
