"""`bertpipe serve`: serve a model base path over TF Serving's REST and gRPC APIs.

    bertpipe serve --model-base-path serving_models/sst2 --model-name sst2 \\
        --rest-port 8501 --grpc-port 8500 [--enable-batching --max-batch-size 32]

Flags are TF Serving's (`--model_base_path`, `--rest_api_port`, `--port`,
`--enable_batching`, `--batching_parameters_file`, `--file_system_poll_wait_seconds` are
accepted as aliases). It always writes a models config and, with batching, a batching
parameters file next to the base path (`<parent>/<model>.models.config`,
`<parent>/<model>.batching_parameters.txt`) for deployments on a real TF Serving; then:

* if `tensorflow_model_server` is on PATH (or `--server tensorflow_model_server`), it runs
  it with those files;
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


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bertpipe serve",
        description="Serve the newest version under a model base path over TF Serving's REST and gRPC APIs.",
    )
    parser.add_argument(
        "--model-base-path",
        "--model_base_path",
        required=True,
        help="directory with integer version sub-directories (SavedModels)",
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
    parser.add_argument("--verbose", "-v", action="store_true", help="log every request")
    return parser


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
    """A TF Serving ModelServerConfig (text proto) serving `base_path` as `model_name`."""
    escaped_name = model_name.replace("\\", "\\\\").replace('"', '\\"')
    escaped_path = base_path.replace("\\", "\\\\").replace('"', '\\"')
    return (
        "# TF Serving model config written by `bertpipe serve`. Use with:\n"
        "#   tensorflow_model_server --model_config_file=<this file> --rest_api_port=8501 --port=8500\n"
        "# (in Docker, base_path must be the path inside the container, e.g. /models/<name>).\n"
        "model_config_list {\n"
        "  config {\n"
        f'    name: "{escaped_name}"\n'
        f'    base_path: "{escaped_path}"\n'
        '    model_platform: "tensorflow"\n'
        "  }\n"
        "}\n"
    )


def write_config_files(
    model_name: str, base_path: str, batching, directory: str | None = None
) -> dict[str, str]:
    """Writes the models config (and batching parameters) files; returns {kind: path}.

    `directory` defaults to the base path's parent; if it is not writable the files go to a
    temporary directory (they are still needed to start tensorflow_model_server).
    """
    base_path = os.path.abspath(base_path)
    directory = directory or os.path.dirname(base_path)
    # The model name only names files, never directories: keep it a plain file name.
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", model_name)
    contents = {f"{stem}.models.config": models_config_text(model_name, base_path)}
    if batching is not None:
        contents[f"{stem}.batching_parameters.txt"] = batching.to_text_proto()
    try:
        os.makedirs(directory, exist_ok=True)
        for name, text in contents.items():
            with open(os.path.join(directory, name), "w") as f:
                f.write(text)
    except OSError as e:
        fallback = tempfile.mkdtemp(prefix="bertpipe-serve-")
        logger.warning("Cannot write config files in %s (%s); using %s", directory, e, fallback)
        directory = fallback
        for name, text in contents.items():
            with open(os.path.join(directory, name), "w") as f:
                f.write(text)
    kinds = ["models", "batching"]
    return {
        kind: os.path.join(directory, name) for kind, name in zip(kinds, contents, strict=False)
    }


def _whole_seconds(seconds: float) -> int:
    """TF Serving takes whole seconds, and 0 means "poll once": keep positive values >= 1."""
    return max(1, round(seconds)) if seconds > 0 else int(seconds)


def tensorflow_model_server_command(
    binary: str, args: argparse.Namespace, config_paths: dict[str, str]
) -> list[str]:
    command = [
        binary,
        f"--port={args.grpc_port}",
        f"--rest_api_port={args.rest_port}",
        f"--model_config_file={config_paths['models']}",
        f"--file_system_poll_wait_seconds={_whole_seconds(args.file_system_poll_wait_seconds)}",
    ]
    if "batching" in config_paths:
        command += [
            "--enable_batching=true",
            f"--batching_parameters_file={config_paths['batching']}",
        ]
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

    server = ModelServer(
        args.model_name,
        args.model_base_path,
        rest_port=args.rest_port or None,
        grpc_port=args.grpc_port or None,
        host=args.host,
        batching=batching,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
    )
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        current = server.manager.current
        print(
            f"bertpipe serve: {args.model_name} version {current.version if current else '(none yet)'} "
            f"from {server.manager.base_path}; REST {server.rest_url or 'off'}, gRPC {server.grpc_target or 'off'}"
            + (f"; batching {batching}" if batching else ""),
            flush=True,
        )
        stop.wait()
    finally:
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.rest_port and not args.grpc_port:
        print("bertpipe serve: enable at least one of --rest-port and --grpc-port", file=sys.stderr)
        return 2
    try:
        batching = batching_options(args)
    except (OSError, ValueError) as e:
        print(f"bertpipe serve: bad batching parameters: {e}", file=sys.stderr)
        return 2
    config_paths = {}
    if args.write_configs or args.server != "builtin":
        config_paths = write_config_files(args.model_name, args.model_base_path, batching)
        logger.info("TF Serving config files: %s", ", ".join(config_paths.values()))
    binary = (
        shutil.which(MODEL_SERVER_BINARY) if args.server in ("auto", MODEL_SERVER_BINARY) else None
    )
    if args.server == MODEL_SERVER_BINARY and binary is None:
        print(f"bertpipe serve: {MODEL_SERVER_BINARY} is not on PATH", file=sys.stderr)
        return 2
    if binary:
        if args.host != "0.0.0.0":
            logger.warning("--host is ignored by %s (it binds all interfaces)", MODEL_SERVER_BINARY)
        return _run_tensorflow_model_server(
            tensorflow_model_server_command(binary, args, config_paths)
        )
    return _run_builtin(args, batching)


if __name__ == "__main__":
    sys.exit(main())
