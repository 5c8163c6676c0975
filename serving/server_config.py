"""TF Serving's `ModelServerConfig` (the `--model_config_file` text proto), read and written
with the `tensorflow_serving.config` protos.

The built-in server and `bertpipe serve` use these to serve several models, each with its
own base path, version policy (latest N / all / specific) and version labels, and to write
the `models.config` a real `tensorflow_model_server` takes. Parsing and printing go through
`google.protobuf.text_format`, so any file TF Serving reads is read the same way here (and
a name or path with quotes or backslashes is escaped by the printer, never by hand).

Validation follows `server_core.cc` (2.16.1): each name once, absolute base paths, platform
"tensorflow" (the only one the built-in server has).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.errors import Code, ServingError, invalid_argument

TENSORFLOW_PLATFORM = "tensorflow"

ModelServerConfig = model_server_config_pb2.ModelServerConfig
ModelConfig = model_server_config_pb2.ModelConfig


def parse_model_server_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    """A ModelServerConfig from its text form; INVALID_ARGUMENT if it does not parse or is
    not one TF Serving would accept (see `validate`)."""
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise invalid_argument(f"Invalid ModelServerConfig: {e}") from None
    validate(config)
    return config


def read_model_server_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    with open(path, encoding="utf-8") as f:
        return parse_model_server_config(f.read())


def validate(config: model_server_config_pb2.ModelServerConfig) -> None:
    """TF Serving's checks (server_core.cc: ValidateModelConfigList, GetPlatform)."""
    if config.WhichOneof("config") == "custom_model_config":
        raise ServingError(
            Code.UNIMPLEMENTED,
            "custom_model_config is not supported by the built-in server (use model_config_list)",
        )
    names: set[str] = set()
    for model in config.model_config_list.config:
        if model.name in names:
            raise invalid_argument(
                f"Illegal to list model {model.name} multiple times in config list"
            )
        names.add(model.name)
        if not model.name:
            raise invalid_argument("ModelConfig has no name specified.")
        if "://" not in model.base_path and not os.path.isabs(model.base_path):
            raise invalid_argument(
                f"Expected model {model.name} to have an absolute path or URI; "
                f"got base_path()={model.base_path}"
            )
        if "://" in model.base_path:
            # No file systems other than the local one are linked into this server.
            raise ServingError(
                Code.UNIMPLEMENTED,
                f"Model {model.name}: base_path {model.base_path} is not a local path; the "
                "built-in server reads local files only",
            )
        if model.model_type and model.model_platform:
            raise invalid_argument(
                "Illegal setting both ModelServerConfig::model_type (deprecated) and "
                f"ModelServerConfig::model_platform, model name is {model.name}"
            )
        platform = model.model_platform or (TENSORFLOW_PLATFORM if model.model_type == 1 else "")
        if not platform:
            raise invalid_argument(
                "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                f"ModelServerConfig::model_platform, model name is {model.name}"
            )
        if platform != TENSORFLOW_PLATFORM:
            raise invalid_argument(f"Model {model.name} requests unsupported platform {platform}")


def versions_to_serve(model: model_server_config_pb2.ModelConfig, versions: Iterable[int]) -> set[int]:
    """The versions the model's `model_version_policy` aspires to, among `versions` (the
    loadable ones on disk), as file_system_storage_path_source.cc chooses them: latest N
    (N >= 1; the default policy is latest 1), all, or the specific ones listed."""
    available = sorted(set(versions), reverse=True)
    policy = model.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(available)
    if choice == "specific":
        return set(available) & set(policy.specific.versions)
    count = max(policy.latest.num_versions, 1) if choice == "latest" else 1
    return set(available[:count])


def single_model_config(
    model_name: str, base_path: str
) -> model_server_config_pb2.ModelServerConfig:
    """The config TF Serving builds from --model_name/--model_base_path (latest version)."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = model_name
    model.base_path = os.path.abspath(base_path)
    model.model_platform = TENSORFLOW_PLATFORM
    return config


def config_text(config: model_server_config_pb2.ModelServerConfig, header: str = "") -> str:
    """The text form `tensorflow_model_server --model_config_file` reads (comment lines first)."""
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comments + text_format.MessageToString(config)
