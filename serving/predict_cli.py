"""`bertpipe predict`: send texts to a TF Serving (or `bertpipe serve`) server.

    bertpipe predict --server http://127.0.0.1:8501 --model sst2 "a gorgeous film" "a dull mess"
    bertpipe predict --grpc 127.0.0.1:8500 --model sst2 --input sentences.txt

What it prints depends on the model, told by the outputs the server returns
(`serving.predictions`):

* a classifier (`label`, `probabilities`): one line per text,
  `label<TAB>probability of that label<TAB>text`; with `--json`, JSON lines
  `{"text", "label", "probabilities"}`.
* an entity recogniser (`entity_start`, `entity_end`, `entity_label`, `entity_score`,
  `num_entities`): per text, the text on its own line, then one line per entity starting
  with a TAB: `<TAB>entity text<TAB>label<TAB>score<TAB>start-end` (offsets in characters,
  end exclusive); with `--json`, JSON lines `{"text", "entities": [{"start", "end", "text",
  "label", "score"}, ...]}`.

Never imports TensorFlow, so it starts in well under a second over REST.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator

from serving import predictions
from serving.client import GrpcClient, RestClient, ServerError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bertpipe predict",
        description="Classify texts, or find their entities, with a model served over TF "
        "Serving's REST or gRPC API.",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--server", metavar="URL", help="REST API root, e.g. http://127.0.0.1:8501")
    target.add_argument("--grpc", metavar="HOST:PORT", help="gRPC API address, e.g. 127.0.0.1:8500")
    parser.add_argument("--model", required=True, help="model name, e.g. sst2")
    version = parser.add_mutually_exclusive_group()
    version.add_argument("--version", type=int, help="model version (default: the latest)")
    version.add_argument("--label", help="model version label")
    parser.add_argument(
        "--signature", default="serving_default", help="signature (default: %(default)s)"
    )
    parser.add_argument(
        "--input", metavar="FILE", help="read texts from FILE, one per line ('-': standard input)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="texts per request (default: %(default)s)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds per request (default: %(default)s)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON lines (all probabilities, or every entity with its offsets)",
    )
    parser.add_argument("texts", nargs="*", help="texts to classify or tag")
    return parser


def _read_texts(args: argparse.Namespace) -> Iterator[str]:
    yield from args.texts
    if args.input:
        stream = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")  # noqa: SIM115
        try:
            for line in stream:
                line = line.rstrip("\r\n")
                if line.strip():
                    yield line
        finally:
            if stream is not sys.stdin:
                stream.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.batch_size < 1:
        print("bertpipe predict: --batch-size must be >= 1", file=sys.stderr)
        return 2
    try:
        texts = list(_read_texts(args))
    except (OSError, UnicodeDecodeError) as e:
        print(f"bertpipe predict: cannot read {args.input}: {e}", file=sys.stderr)
        return 2
    if not texts:
        print(
            "bertpipe predict: no texts given (pass them as arguments or with --input)",
            file=sys.stderr,
        )
        return 2
    if args.server:
        client = RestClient(args.server, args.model, args.version, args.label, args.timeout)
    else:
        client = GrpcClient(args.grpc, args.model, args.version, args.label, args.timeout)
    try:
        for start in range(0, len(texts), args.batch_size):
            batch = texts[start : start + args.batch_size]
            rows = client.predict_outputs(batch, args.signature)
            # Every row of one response has the same outputs, so the first names the task.
            task = predictions.task_for(rows[0])
            for text, row in zip(batch, rows, strict=True):
                record = task.record(text, row)
                if args.json:
                    print(json.dumps({"text": text, **record}, ensure_ascii=False))
                else:
                    print("\n".join(task.lines(text, record)))
            sys.stdout.flush()
    except ServerError as e:
        print(f"bertpipe predict: server error {e.status}: {e.message}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        where = args.server or args.grpc
        print(f"bertpipe predict: cannot get predictions from {where}: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
