"""Atomic, versioned pushes to a TF Serving model base path (no TFX import: `bertpipe
rollback` uses them too).

A model is copied to a hidden sibling (`.<version>.incomplete`, which TF Serving ignores: it
is not an integer) and renamed into place in one step; a copy that fails is removed, so a
retry pushes once. Versions are Unix seconds, bumped if needed so that every push is newer
than the newest version already there; a model identical to the newest version (an unchanged
re-run) is not pushed again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time


def next_version(base_directory: str, now: int | None = None) -> int:
    """A version newer than every integer-named directory under `base_directory`."""
    existing = [int(name) for name in os.listdir(base_directory) if name.isdigit()]
    return max([int(time.time()) if now is None else now, *[v + 1 for v in existing]])


def directory_digest(path: str) -> str:
    """sha256 over a directory's relative file names and contents."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            file_path = os.path.join(root, name)
            if not stat.S_ISREG(os.stat(file_path).st_mode):  # a pipe would block forever
                raise OSError(f"not a regular file: {file_path}")
            digest.update(os.path.relpath(file_path, path).encode() + b"\0")
            with open(file_path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def newest_version(base_directory: str) -> str | None:
    versions = [name for name in os.listdir(base_directory) if name.isdigit()]
    return max(versions, key=int) if versions else None


def push_atomically(model_path: str, base_directory: str) -> tuple[str, str, bool]:
    """Copies a SavedModel directory to `<base>/<version>/` atomically.

    Returns (destination, version, is_new). A model identical to the newest version already
    there (an unchanged re-run) is not pushed again: that version is returned.
    """
    os.makedirs(base_directory, exist_ok=True)
    newest = newest_version(base_directory)
    if newest is not None:
        newest_path = os.path.join(base_directory, newest)
        if directory_digest(newest_path) == directory_digest(model_path):
            return newest_path, newest, False
    version = str(next_version(base_directory))
    staging = os.path.join(base_directory, f".{version}.incomplete")
    shutil.rmtree(staging, ignore_errors=True)
    destination = os.path.join(base_directory, version)
    try:
        shutil.copytree(model_path, staging)
        os.rename(staging, destination)  # atomic on one filesystem; fails if it exists
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # no partial copy left behind
        raise
    return destination, version, True
