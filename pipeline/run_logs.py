"""A run's log file, and a terminal that shows only what is written for a person.

TensorFlow's C++ runtime, absl, Beam, TFX and Python's warnings write to file descriptors 1
and 2 directly, from C++ as well as Python, so the only way to keep them off the terminal
and still keep every line is at that level: `RunLogs` points both descriptors at the run's
log file (`pipeline.run_folder.log_path`) and keeps a duplicate of the original standard
output and error for the person (`pipeline.console`). With `verbose=True` the descriptors
go to a pipe instead, and a thread copies every byte to both the log file and the original
standard error: the same full log, also on the terminal.

Example:

>>> with RunLogs("/tmp/run.log", verbose=False) as logs:  # doctest: +SKIP
...     print("to the log file")                          # fd 1
...     print("[1/9] CsvExampleGen ...", file=console())  # the terminal
...     print("stopped: ...", file=logs.errors)           # the terminal's stderr
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
from typing import TextIO

from pipeline.console import CONSOLE_FD_ENV

LIBRARY_LOGGERS = ("absl", "apache_beam", "tensorflow", "tfx", "root")


class RunLogs:
    """Context manager: fds 1 and 2 to `log_path` (and the terminal with `verbose`).

    Attributes:
        path: the log file.
        errors: a text stream to the terminal's standard error, for a failure's message.
    """

    def __init__(self, log_path: str, verbose: bool = False):
        self.path = log_path
        self.verbose = verbose
        self.errors: TextIO = sys.stderr
        self._saved: dict[int, int] = {}
        self._console_fd: int | None = None
        self._previous_env: str | None = None
        self._tee: threading.Thread | None = None
        self._log_fd: int | None = None

    def __enter__(self) -> RunLogs:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = {fd: os.dup(fd) for fd in (1, 2)}
        self._console_fd = self._saved[1]
        self.errors = io.TextIOWrapper(io.FileIO(self._saved[2], "w", closefd=False),
                                       encoding="utf-8", errors="replace", line_buffering=True)
        self._log_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if self.verbose:
            read_end, write_end = os.pipe()
            self._tee = threading.Thread(
                target=_copy, args=(read_end, self._log_fd, self._saved[2]), daemon=True)
            self._tee.start()
            target = write_end
        else:
            target = self._log_fd
        for fd in (1, 2):
            os.dup2(target, fd)
        if self.verbose:
            os.close(target)
        self._previous_env = os.environ.get(CONSOLE_FD_ENV)
        os.environ[CONSOLE_FD_ENV] = str(self._console_fd)
        return self

    def __exit__(self, *exc_info: object) -> None:
        from pipeline.console import console

        console().flush()
        sys.stdout.flush()
        sys.stderr.flush()
        for handler in logging.getLogger().handlers:
            handler.flush()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)  # closes the pipe's last write end: the tee sees EOF
        if self._tee is not None:
            self._tee.join(timeout=10)
        self.errors.flush()
        for saved in self._saved.values():
            os.close(saved)
        if self._log_fd is not None:
            os.close(self._log_fd)
        self.errors = sys.stderr
        if self._previous_env is None:
            os.environ.pop(CONSOLE_FD_ENV, None)
        else:
            os.environ[CONSOLE_FD_ENV] = self._previous_env


def _copy(read_fd: int, log_fd: int, terminal_fd: int) -> None:
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(1 << 16):
            os.write(log_fd, chunk)
            try:
                os.write(terminal_fd, chunk)
            except OSError:  # the terminal went away; the log file still gets everything
                pass


def library_log_levels(verbose: bool) -> None:
    """Python loggers for the log file: INFO from absl/TFX (which component runs, cache
    hits: the progress lines read them too), WARNING from Beam and TensorFlow; with
    `verbose`, INFO from all."""
    import absl.logging

    absl.logging.set_verbosity(absl.logging.INFO)
    for name in ("apache_beam", "tensorflow"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
