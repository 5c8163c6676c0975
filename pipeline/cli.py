"""`bertpipe`: the project's command line.

Each sub-command lives in its own module and is imported only when it runs, so that
`bertpipe predict` never pays for importing TensorFlow Extended (about 40 s).
"""

from __future__ import annotations

import importlib
import sys

# name -> ("module:function", one-line help). Each function takes argv (list[str]) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("pipeline.run_cli:main", "run a pipeline described by a YAML config"),
    "compile": ("pipeline.compile_cli:main",
                "write a config's pipeline for Airflow (a DAG file) or Vertex AI (a JSON spec)"),
    "runs": ("pipeline.history_cli:runs_main", "list a pipeline's past runs (ML Metadata)"),
    "rollback": ("pipeline.history_cli:rollback_main",
                 "serve an earlier pushed version again, as a new version"),
    "serve": ("serving.serve_cli:main", "serve a model base path over TF Serving's REST and gRPC APIs"),
    "predict": ("serving.predict_cli:main", "send texts to a TF Serving (or `bertpipe serve`) server"),
    "score": ("serving.batch_score:main", "batch-score files with a SavedModel on Apache Beam"),
}


def _usage() -> str:
    lines = ["usage: bertpipe COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`bertpipe COMMAND --help` describes a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"bertpipe: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, function_name = COMMANDS[name][0].split(":")
    command = getattr(importlib.import_module(module_name), function_name)
    return int(command(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
