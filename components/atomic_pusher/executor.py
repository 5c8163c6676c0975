"""Pusher executor whose push to a local TF Serving model base path is atomic.

TFX's Pusher copies the SavedModel file by file into `<base>/<version>/` (saved_model.pb
last), so a model server polling the base path can see a half-written version. Here the
model is copied to a hidden sibling (`.<version>.incomplete`, which TF Serving ignores:
it is not an integer) and renamed into place in one step; a copy that fails is removed, so
a retry pushes once. Versions are Unix seconds, bumped if needed so that every push is
newer than the newest version already there; a model identical to the newest version (an
unchanged re-run) is not pushed again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
from typing import Any

from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils


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


# Custom property of the pushed model: 1 when an identical version was already there.
ALREADY_SERVED_KEY = "already_served"


class Executor(pusher_executor.Executor):
    """Pushes only a blessed model; the local filesystem push is atomic."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        push_destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], push_destination
        )
        base_directory = push_destination.filesystem.base_directory
        if "://" in base_directory:  # remote filesystems: TFX's own copy
            return super().Do(input_dict, output_dict, exec_properties)
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return None
        model_path = self.GetModelPath(input_dict)
        destination, version, is_new = push_atomically(model_path, base_directory)
        io_utils.copy_dir(model_path, model_push.uri)  # the archive copy TFX keeps
        self._MarkPushed(model_push, pushed_destination=destination, pushed_version=version)
        model_push.set_int_custom_property(ALREADY_SERVED_KEY, int(not is_new))
        return None
