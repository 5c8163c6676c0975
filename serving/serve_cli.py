"""`bertpipe serve`: serve models over TF Serving's REST and gRPC APIs.

    bertpipe serve --model-base-path serving_models/sst2 --model-name sst2 \\
        --rest-port 8501 --grpc-port 8500 [--enable-batching --max-batch-size 32]
    bertpipe serve --model_config_file=models.config --model_config_file_poll_wait_seconds=60

Every flag of `tensorflow_model_server` 2.16.1 (main.cc) is accepted in its own spelling
(`--flag=value`, a bare `--flag` for true). The built-in server applies the ones it has a
meaning for (`TF_SERVING_FLAGS`: ports, unix socket, model config file and its polling,
batching, monitoring, gRPC channel arguments and threads, REST threads, timeout and CORS,
version labels) and warns in one line for each of the others it was given (TPU, TFLite,
session and load-thread tuning, SSL/ALTS...), which only a real TF Serving applies.

Unless `--no-write-configs`, it writes a models config and, with batching, a batching
parameters file next to the base path (`<parent>/<model>.models.config`,
`<parent>/<model>.batching_parameters.txt`; with `--model_config_file`, only the batching
file, next to that file) for deployments on a real TF Serving; then:

* if `tensorflow_model_server` is on PATH (or `--server tensorflow_model_server`), it runs
  it with those files (with `--no-write-configs`: with `--model_name/--model_base_path` and,
  if batching flags need one, a batching file in a temporary directory removed at exit)
  and every TF Serving flag it was given;
* otherwise it runs the built-in server (`serving.model_server.ModelServer`), which speaks
  the same APIs.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

logger = logging.getLogger("bertpipe.serve")

MODEL_SERVER_BINARY = "tensorflow_model_server"
TF_SERVING_VERSION = "2.16.1"

# Every flag of tensorflow_model_server 2.16.1 (tensorflow_serving/model_servers/main.cc,
# in its order) with its type. "applied": the built-in server implements it; "ignored":
# accepted with a one-line warning (the built-in server has no such feature).
TF_SERVING_FLAGS: dict[str, tuple[str, str]] = {
    "port": ("int", "applied"),
    "grpc_socket_path": ("str", "applied"),
    "rest_api_port": ("int", "applied"),
    "rest_api_num_threads": ("int", "applied"),
    "rest_api_timeout_in_ms": ("int", "applied"),
    "rest_api_enable_cors_support": ("bool", "applied"),
    "enable_batching": ("bool", "applied"),
    "allow_version_labels_for_unavailable_models": ("bool", "applied"),
    "batching_parameters_file": ("str", "applied"),
    "enable_per_model_batching_parameters": ("bool", "ignored"),
    "model_config_file": ("str", "applied"),
    "model_config_file_poll_wait_seconds": ("int", "applied"),
    "model_name": ("str", "applied"),
    "model_base_path": ("str", "applied"),
    "num_load_threads": ("int", "ignored"),
    "num_unload_threads": ("int", "ignored"),
    "max_num_load_retries": ("int", "ignored"),
    "load_retry_interval_micros": ("int", "ignored"),
    "file_system_poll_wait_seconds": ("float", "applied"),
    "flush_filesystem_caches": ("bool", "ignored"),
    "tensorflow_session_parallelism": ("int", "ignored"),
    "tensorflow_session_config_file": ("str", "ignored"),
    "tensorflow_intra_op_parallelism": ("int", "ignored"),
    "tensorflow_inter_op_parallelism": ("int", "ignored"),
    "use_alts_credentials": ("bool", "ignored"),
    "ssl_config_file": ("str", "ignored"),
    "platform_config_file": ("str", "ignored"),
    "per_process_gpu_memory_fraction": ("float", "ignored"),
    "saved_model_tags": ("str", "ignored"),
    "grpc_channel_arguments": ("str", "applied"),
    "grpc_max_threads": ("int", "applied"),
    "enable_model_warmup": ("bool", "applied"),
    "num_request_iterations_for_warmup": ("int", "applied"),
    "version": ("bool", "applied"),
    "monitoring_config_file": ("str", "applied"),
    "remove_unused_fields_from_bundle_metagraph": ("bool", "ignored"),
    "prefer_tflite_model": ("bool", "ignored"),
    "num_tflite_pools": ("int", "ignored"),
    "num_tflite_interpreters_per_pool": ("int", "ignored"),
    "enable_signature_method_name_check": ("bool", "ignored"),
    "xla_cpu_compilation_enabled": ("bool", "ignored"),
    "enable_profiler": ("bool", "ignored"),
    "thread_pool_factory_config_file": ("str", "ignored"),
    "mixed_precision": ("str", "ignored"),
    "skip_initialize_tpu": ("bool", "ignored"),
    "enable_grpc_healthcheck_service": ("bool", "ignored"),
}
# Flags with a bertpipe spelling too (`--model-base-path`): defined with both below.
_DEFINED_WITH_ALIASES = {
    "port", "rest_api_port", "enable_batching", "batching_parameters_file", "model_name",
    "model_base_path", "file_system_poll_wait_seconds",
}  # fmt: skip
# The ones `tensorflow_model_server_command` writes itself; the others given pass through.
_COMPUTED_FOR_BINARY = _DEFINED_WITH_ALIASES | {"model_config_file", "version"}
# TF Serving's defaults (server.h Options) for the applied flags that have one.
DEFAULT_REST_API_TIMEOUT_MS = 30_000


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bertpipe serve",
        description="Serve models over TF Serving's REST and gRPC APIs (a base path's newest "
        "version, or the models of a --model_config_file).",
        allow_abbrev=False,  # TF Serving's flags are whole words; a prefix must not match
    )
    parser.add_argument(
        "--model-base-path",
        "--model_base_path",
        help="directory with integer version sub-directories (SavedModels); required "
        "without --model_config_file",
    )
    parser.add_argument(
        "--model-name",
        "--model_name",
        default="default",
        help="name clients use in /v1/models/<name> (default: %(default)s)",
    )
    parser.add_argument(
        "--rest-port",
        "--rest_api_port",
        type=int,
        default=8501,
        help="REST API port; 0 disables it (default: %(default)s)",
    )
    parser.add_argument(
        "--grpc-port",
        "--port",
        type=int,
        default=8500,
        help="gRPC API port; 0 disables it (default: %(default)s)",
    )
    parser.add_argument(
        "--host",
        default="0.0.0.0",
        help="interface the built-in server binds (default: all, as TF Serving)",
    )
    parser.add_argument(
        "--enable-batching",
        "--enable_batching",
        type=_bool,
        nargs="?",
        const=True,
        default=False,
        help="merge concurrent requests into batched model calls",
    )
    parser.add_argument(
        "--batching-parameters-file",
        "--batching_parameters_file",
        help="TF Serving batching parameters (text proto); implies --enable-batching",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        help="rows per batched model call (default: file, else 32); implies batching",
    )
    parser.add_argument(
        "--batch-timeout-micros",
        type=int,
        help="max wait to fill a batch (default: file, else 1000); implies batching",
    )
    parser.add_argument(
        "--num-batch-threads",
        type=int,
        help="batches run in parallel (default: file, else min(4, CPUs))",
    )
    parser.add_argument(
        "--max-enqueued-batches",
        type=int,
        help="queue length in batches before UNAVAILABLE (default: file, else 100)",
    )
    parser.add_argument(
        "--file-system-poll-wait-seconds",
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="seconds between polls for new versions (default: %(default)s)",
    )
    parser.add_argument(
        "--server",
        choices=("auto", "builtin", MODEL_SERVER_BINARY),
        default="auto",
        help="which server runs (default: tensorflow_model_server if on PATH)",
    )
    parser.add_argument(
        "--no-write-configs",
        dest="write_configs",
        action="store_false",
        help="do not write the models/batching config files next to the base path",
    )
    parser.add_argument(
        "--rest-api-max-body-bytes",
        "--rest_api_max_body_bytes",
        type=int,
        help="built-in server: a larger REST request body is a 400, refused unread (0: no "
        "limit; default 8 MiB). Not a TF Serving flag: tensorflow_model_server has no limit",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log every request")
    group = parser.add_argument_group(
        "tensorflow_model_server flags",
        "TF Serving 2.16.1's other flags; those the built-in server has no use for are "
        "accepted with a warning",
    )
    types = {"int": int, "float": float, "str": str}
    for name, (kind, use) in TF_SERVING_FLAGS.items():
        if name in _DEFINED_WITH_ALIASES:
            continue
        note = "" if use == "applied" else " (tensorflow_model_server only; ignored here)"
        if kind == "bool":
            group.add_argument(
                f"--{name}", type=_bool, nargs="?", const=True, default=None, metavar="BOOL",
                help=f"TF Serving's --{name}{note}",
            )  # fmt: skip
        else:
            group.add_argument(
                f"--{name}", type=types[kind], default=None, metavar=kind.upper(),
                help=f"TF Serving's --{name}{note}",
            )  # fmt: skip
    return parser


def given_tf_serving_flags(args: argparse.Namespace, argv: list[str]) -> dict[str, object]:
    """The TF Serving flags (by TF Serving name) given on the command line, with values."""
    given = {}
    for name in TF_SERVING_FLAGS:
        spellings = {f"--{name}"} | (
            {f"--{name.replace('_', '-')}"} if name in _DEFINED_WITH_ALIASES else set()
        )
        if any(a.split("=", 1)[0] in spellings for a in argv):
            given[name] = getattr(args, _DEST.get(name, name))
    return given


# argparse destinations of the flags defined with a bertpipe spelling first.
_DEST = {"port": "grpc_port", "rest_api_port": "rest_port"}


def warn_ignored_flags(given: dict[str, object]) -> list[str]:
    """One warning line per given flag that the built-in server does not apply."""
    lines = [
        f"--{name} is a tensorflow_model_server flag the built-in server does not apply; ignored"
        for name in given
        if TF_SERVING_FLAGS[name][1] == "ignored"
    ]
    for line in lines:
        logger.warning("%s", line)
    return lines


def batching_options(args: argparse.Namespace):
    """BatchingOptions from the file and flags (flags win), or None when batching is off."""
    from serving.batching import BatchingOptions

    overrides = {
        "max_batch_size": args.max_batch_size,
        "batch_timeout_micros": args.batch_timeout_micros,
        "num_batch_threads": args.num_batch_threads,
        "max_enqueued_batches": args.max_enqueued_batches,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not (args.enable_batching or args.batching_parameters_file or overrides):
        return None
    options = BatchingOptions()
    if args.batching_parameters_file:
        with open(args.batching_parameters_file) as f:
            options = BatchingOptions.from_text_proto(f.read())
    values = {**options.__dict__, **overrides}
    return BatchingOptions(**values)


def models_config_text(model_name: str, base_path: str) -> str:
    """A TF Serving ModelServerConfig (text proto) serving `base_path` as `model_name`,
    built and printed with the tensorflow_serving.config protos."""
    from serving import server_config

    return server_config.config_text(
        server_config.single_model_config(model_name, base_path),
        header=(
            "TF Serving model config written by `bertpipe serve`. Use with:\n"
            "  tensorflow_model_server --model_config_file=<this file> --rest_api_port=8501 --port=8500 \\\n"
            "      --xla_cpu_compilation_enabled=true   # for serving.jit_compile exports\n"
            "(in Docker, base_path must be the path inside the container, e.g. /models/<name>)."
        ),
    )


def write_config_files(
    model_name: str | None,
    base_path: str | None,
    batching,
    directory: str | None = None,
    stem: str | None = None,
) -> dict[str, str]:
    """Writes the models config (for `model_name` at `base_path`; none when base_path is
    None) and batching parameters files; returns {kind: path}.

    `directory` defaults to the base path's parent; if it is not writable the files go to a
    temporary directory (they are still needed to start tensorflow_model_server).
    """
    if directory is None:
        directory = os.path.dirname(os.path.abspath(base_path))
    # The model name only names files, never directories: keep it a plain file name.
    stem = stem or re.sub(r"[^A-Za-z0-9_-]", "_", model_name or "models")
    contents = {}
    if base_path is not None:
        contents["models"] = (
            f"{stem}.models.config",
            models_config_text(model_name, os.path.abspath(base_path)),
        )
    if batching is not None:
        contents["batching"] = (f"{stem}.batching_parameters.txt", batching.to_text_proto())
    try:
        os.makedirs(directory, exist_ok=True)
        for name, text in contents.values():
            with open(os.path.join(directory, name), "w") as f:
                f.write(text)
    except OSError as e:
        fallback = tempfile.mkdtemp(prefix="bertpipe-serve-")
        logger.warning("Cannot write config files in %s (%s); using %s", directory, e, fallback)
        directory = fallback
        for name, text in contents.values():
            with open(os.path.join(directory, name), "w") as f:
                f.write(text)
    return {kind: os.path.join(directory, name) for kind, (name, _) in contents.items()}


def _whole_seconds(seconds: float) -> int:
    """TF Serving takes whole seconds, and 0 means "poll once": keep positive values >= 1."""
    return max(1, round(seconds)) if seconds > 0 else int(seconds)


def _flag_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def tensorflow_model_server_command(
    binary: str,
    args: argparse.Namespace,
    config_paths: dict[str, str],
    given: dict[str, object] | None = None,
) -> list[str]:
    """The binary's argv: ports, models (a config file, or --model_name/--model_base_path
    when none was written), batching, then every other TF Serving flag given, unchanged."""
    command = [binary, f"--port={args.grpc_port}", f"--rest_api_port={args.rest_port}"]
    if "models" in config_paths:
        command.append(f"--model_config_file={config_paths['models']}")
    elif args.model_config_file:
        command.append(f"--model_config_file={args.model_config_file}")
    else:
        command += [
            f"--model_name={args.model_name}",
            f"--model_base_path={os.path.abspath(args.model_base_path)}",
        ]
    command.append(
        f"--file_system_poll_wait_seconds={_whole_seconds(args.file_system_poll_wait_seconds)}"
    )
    if "xla_cpu_compilation_enabled" not in (given or {}):
        # Exports with `serving.jit_compile` (the shipped configs') hold XLA-compiled
        # functions, which TF Serving runs only with this flag; it changes nothing for a model
        # without them. A value given on our command line is passed on instead.
        command.append("--xla_cpu_compilation_enabled=true")
    if "batching" in config_paths:
        command += [
            "--enable_batching=true",
            f"--batching_parameters_file={config_paths['batching']}",
        ]
    for name, value in (given or {}).items():
        if name not in _COMPUTED_FOR_BINARY:
            command.append(f"--{name}={_flag_value(value)}")
    return command


def _run_tensorflow_model_server(command: list[str]) -> int:
    logger.info("Running %s", " ".join(command))
    process = subprocess.Popen(command)

    def forward(signum, _frame):
        process.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return process.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _run_builtin(args: argparse.Namespace, batching) -> int:
    from serving.model_server import ModelServer
    from serving.monitoring import read_monitoring_config

    monitoring = (
        read_monitoring_config(args.monitoring_config_file)
        if args.monitoring_config_file
        else None
    )
    from serving.rest_api import DEFAULT_MAX_BODY_BYTES

    max_body_bytes = (
        DEFAULT_MAX_BODY_BYTES
        if args.rest_api_max_body_bytes is None
        else args.rest_api_max_body_bytes
    )
    timeout_ms = (
        DEFAULT_REST_API_TIMEOUT_MS
        if args.rest_api_timeout_in_ms is None
        else args.rest_api_timeout_in_ms
    )
    server = ModelServer(
        args.model_name,
        args.model_base_path,
        rest_port=args.rest_port or None,
        grpc_port=args.grpc_port or None,
        host=args.host,
        batching=batching,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        model_config_file=args.model_config_file or None,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds or 0,
        monitoring_config=monitoring,
        grpc_socket_path=args.grpc_socket_path or None,
        grpc_channel_arguments=args.grpc_channel_arguments or "",
        grpc_max_threads=args.grpc_max_threads or 64,
        rest_api_num_threads=args.rest_api_num_threads or 4 * (os.cpu_count() or 1),
        rest_api_timeout_in_ms=timeout_ms if timeout_ms > 0 else None,
        rest_api_enable_cors_support=bool(args.rest_api_enable_cors_support),
        rest_api_max_body_bytes=max_body_bytes,
        allow_version_labels_for_unavailable_models=bool(
            args.allow_version_labels_for_unavailable_models
        ),
        # TF Serving's defaults: warm-up on, one iteration per record.
        enable_model_warmup=args.enable_model_warmup is not False,
        num_request_iterations_for_warmup=args.num_request_iterations_for_warmup or 1,
    )
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        models = "; ".join(
            f"{name} version(s) {', '.join(map(str, m.loaded_versions)) or '(none yet)'} "
            f"from {m.base_path}"
            for name, m in server.core.managers.items()
        )
        print(
            f"bertpipe serve: {models}; REST {server.rest_url or 'off'}, "
            f"gRPC {server.grpc_target or 'off'}"
            + (f" and unix:{args.grpc_socket_path}" if args.grpc_socket_path and args.grpc_port else "")
            + (f"; metrics at {server.metrics_path}" if server.metrics_path else "")
            + (f"; batching {batching}" if batching else ""),
            flush=True,
        )
        stop.wait()
    finally:
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


def _config_files(args, batching, binary: str | None) -> tuple[dict[str, str], str | None]:
    """(config paths, temporary directory to remove at exit or None).

    With --write-configs (the default): next to the base path (or the model config file).
    With --no-write-configs nothing is written there; only tensorflow_model_server given
    batching flags that no file holds yet gets a batching file, in a temporary directory.
    """
    if args.write_configs:
        if args.model_config_file:
            config = os.path.abspath(args.model_config_file)
            stem = os.path.splitext(os.path.basename(config))[0]
            paths = write_config_files(None, None, batching, os.path.dirname(config), stem)
        else:
            paths = write_config_files(args.model_name, args.model_base_path, batching)
        return paths, None
    if binary is None or batching is None:
        return {}, None
    overrides = (
        args.max_batch_size, args.batch_timeout_micros, args.num_batch_threads,
        args.max_enqueued_batches,
    )  # fmt: skip
    if args.batching_parameters_file and all(v is None for v in overrides):
        return {"batching": os.path.abspath(args.batching_parameters_file)}, None
    directory = tempfile.mkdtemp(prefix="bertpipe-serve-")
    return write_config_files(None, None, batching, directory, "serve"), directory


def _version_text() -> str:
    import importlib.metadata

    try:
        tensorflow = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        tensorflow = "not installed"
    return (
        f"bertpipe serve: built-in server with TensorFlow Serving {TF_SERVING_VERSION}'s APIs\n"
        f"TensorFlow Library: {tensorflow}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    given = given_tf_serving_flags(args, argv)
    binary = (
        shutil.which(MODEL_SERVER_BINARY) if args.server in ("auto", MODEL_SERVER_BINARY) else None
    )
    if args.server == MODEL_SERVER_BINARY and binary is None:
        print(f"bertpipe serve: {MODEL_SERVER_BINARY} is not on PATH", file=sys.stderr)
        return 2
    if args.version:
        if binary:
            return _run_tensorflow_model_server([binary, "--version"])
        print(_version_text())
        return 0
    if not args.model_base_path and not args.model_config_file:
        # server.cc's check, in bertpipe's words.
        print(
            "bertpipe serve: give --model_base_path (--model-base-path) or --model_config_file",
            file=sys.stderr,
        )
        return 2
    if not args.rest_port and not args.grpc_port and not args.grpc_socket_path:
        print(
            "bertpipe serve: enable at least one of --rest-port, --grpc-port and "
            "--grpc_socket_path",
            file=sys.stderr,
        )
        return 2
    try:
        batching = batching_options(args)
    except (OSError, ValueError) as e:
        print(f"bertpipe serve: bad batching parameters: {e}", file=sys.stderr)
        return 2
    if not binary:
        warn_ignored_flags(given)
    config_paths, temporary = _config_files(args, batching, binary)
    if config_paths and args.write_configs:
        logger.info("TF Serving config files: %s", ", ".join(config_paths.values()))
    try:
        if binary:
            if args.rest_api_max_body_bytes is not None:
                logger.warning(
                    "--rest-api-max-body-bytes is ignored by %s (it has no body limit)",
                    MODEL_SERVER_BINARY,
                )
            if args.host != "0.0.0.0":
                logger.warning(
                    "--host is ignored by %s (it binds all interfaces)", MODEL_SERVER_BINARY
                )
            return _run_tensorflow_model_server(
                tensorflow_model_server_command(binary, args, config_paths, given)
            )
        try:
            return _run_builtin(args, batching)
        except Exception as e:  # a bad config file or flag value: one line, exit 2
            from serving.errors import ServingError

            if isinstance(e, (ServingError, OSError, ValueError)) or type(e).__name__ == "ParseError":
                print(f"bertpipe serve: {e}", file=sys.stderr)
                return 2
            raise
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
