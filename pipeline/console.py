"""The person's terminal, as distinct from the logs.

`bertpipe run` sends everything a run's libraries write (TensorFlow's C++ logs, absl, Beam,
warnings: file descriptors 1 and 2) to the run's log file, and keeps a copy of the original
standard output for what is written for a person: progress lines, live training progress,
the result. It puts that copy's file descriptor in the environment (`BERTPIPE_CONSOLE_FD`)
so code that runs inside the pipeline (the Trainer's module, in the same process) writes
there too. Outside `bertpipe run` (Airflow, Vertex, a test calling a module directly) the
console is plain `sys.stdout`.

Example:

>>> print("[5/9] Transform", file=console())  # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
import sys
from typing import TextIO

CONSOLE_FD_ENV = "BERTPIPE_CONSOLE_FD"

_streams: dict[int, TextIO] = {}


def console() -> TextIO:
    """A text stream to the person's terminal (line-buffered), or `sys.stdout`."""
    fd_text = os.environ.get(CONSOLE_FD_ENV, "")
    if not fd_text.isdigit():
        return sys.stdout
    fd = int(fd_text)
    stream = _streams.get(fd)
    if stream is None:
        try:
            os.fstat(fd)
        except OSError:  # an inherited variable naming a closed descriptor
            return sys.stdout
        stream = io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8",
                                  errors="replace", line_buffering=True)
        _streams[fd] = stream
    return stream


def console_is_tty() -> bool:
    """Whether the console is a terminal (live progress bars) or not (plain periodic lines,
    e.g. under a scheduler or in a CI log)."""
    try:
        return console().isatty()
    except (ValueError, OSError):
        return False
