"""What a SavedModel directory holds, read from its protos without loading TensorFlow.

Used to decide whether a pushed version is complete enough to load, and to read the
export contract's signatures and class names cheaply (e.g. when building a Beam pipeline).
"""

from __future__ import annotations

import os
import re

from google.protobuf import message, text_format

from serving.protos import serving_protos

_VARIABLE_SHARD = re.compile(r"variables\.data-(\d{5})-of-(\d{5})$")
DT_STRING = 7


def read_saved_model_proto(export_dir: str):
    """Parses `saved_model.pb` (or `.pbtxt`) in `export_dir`; raises ValueError if unreadable."""
    saved_model = serving_protos().saved_model_pb2.SavedModel()
    binary_path = os.path.join(export_dir, "saved_model.pb")
    text_path = os.path.join(export_dir, "saved_model.pbtxt")
    try:
        if os.path.exists(binary_path):
            with open(binary_path, "rb") as f:
                saved_model.ParseFromString(f.read())
        elif os.path.exists(text_path):
            with open(text_path) as f:
                text_format.Parse(f.read(), saved_model)
        else:
            raise ValueError(f"no saved_model.pb or saved_model.pbtxt in {export_dir}")
    except (OSError, ValueError, text_format.ParseError, message.DecodeError) as e:
        # A truncated .pb (a copy in progress) raises protobuf's DecodeError, which is not a
        # ValueError in every protobuf implementation.
        raise ValueError(f"cannot read the SavedModel proto in {export_dir}: {e}") from None
    if not saved_model.meta_graphs:
        raise ValueError(f"the SavedModel in {export_dir} has no MetaGraph")
    return saved_model


def incomplete_reason(export_dir: str) -> str | None:
    """Why `export_dir` is not (yet) a complete SavedModel, or None when it is.

    Checked without loading anything: the graph proto parses, and every file it refers to
    (variable shards when the graph has variables, asset files) is present. A version being
    copied non-atomically fails one of these until the copy is done.
    """
    try:
        saved_model = read_saved_model_proto(export_dir)
    except ValueError as e:
        return str(e)
    meta_graph = saved_model.meta_graphs[0]
    has_variables = any(
        node.WhichOneof("kind") == "variable" for node in meta_graph.object_graph_def.nodes
    ) or bool(meta_graph.saver_def.filename_tensor_name)
    if has_variables:
        variables_dir = os.path.join(export_dir, "variables")
        if not os.path.isfile(os.path.join(variables_dir, "variables.index")):
            return "variables/variables.index is missing"
        shards: dict[int, set[int]] = {}
        for name in os.listdir(variables_dir):
            match = _VARIABLE_SHARD.match(name)
            if match:
                shards.setdefault(int(match.group(2)), set()).add(int(match.group(1)))
        if not shards:
            return "variables/variables.data-* is missing"
        for total, present in shards.items():
            if present != set(range(total)):
                return f"variables/ has {len(present)} of {total} data shards"
    for asset in meta_graph.asset_file_def:
        if not os.path.exists(os.path.join(export_dir, "assets", asset.filename)):
            return f"assets/{asset.filename} is missing"
    return None


def class_names(saved_model) -> list[str] | None:
    """The export contract's class names, or None if they cannot be told apart.

    `export.BertServingModule` keeps them as a captured string constant, saved as a
    `constant` object whose Const op holds a rank-1 string tensor as long as the
    `probabilities` output is wide. It must be the only such constant.
    """
    meta_graph = saved_model.meta_graphs[0]
    widths = set()
    for signature in meta_graph.signature_def.values():
        if "probabilities" in signature.outputs:
            dims = signature.outputs["probabilities"].tensor_shape.dim
            if dims and dims[-1].size > 0:
                widths.add(int(dims[-1].size))
    if len(widths) != 1:
        return None
    width = widths.pop()
    operations = {
        node.constant.operation
        for node in meta_graph.object_graph_def.nodes
        if node.WhichOneof("kind") == "constant"
    }
    candidates = []
    for node in meta_graph.graph_def.node:
        if node.name in operations and node.op == "Const":
            tensor = node.attr["value"].tensor
            dims = [d.size for d in tensor.tensor_shape.dim]
            if tensor.dtype == DT_STRING and dims == [width] and len(tensor.string_val) == width:
                candidates.append([v.decode("utf-8", errors="replace") for v in tensor.string_val])
    return candidates[0] if len(candidates) == 1 else None
