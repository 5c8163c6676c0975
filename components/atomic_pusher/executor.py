"""Pusher executor whose push to a local TF Serving model base path is atomic.

TFX's Pusher copies the SavedModel file by file into `<base>/<version>/` (saved_model.pb
last), so a model server polling the base path can see a half-written version. This one
pushes with `push.push_atomically` (a hidden staging copy renamed into place; versions always
increase; an unchanged model is not pushed twice).
"""

from __future__ import annotations

from typing import Any

from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components.atomic_pusher.push import (  # noqa: F401 (re-exported for callers)
    directory_digest,
    newest_version,
    next_version,
    push_atomically,
)

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
