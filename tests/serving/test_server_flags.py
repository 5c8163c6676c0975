"""`bertpipe serve` takes every `tensorflow_model_server` 2.16.1 flag.

FLAGS_2_16 is main.cc's flag list of the 2.16.1 release (tensorflow_serving/model_servers/
main.cc, `std::vector<tensorflow::Flag> flag_list`), copied here so that the CLI is checked
against TF Serving's source, not against itself. A real server started by `bertpipe serve`
checks the flags the built-in server applies: Prometheus metrics at the monitoring config's
path (TF Serving's names `:tensorflow:serving:request_count` / `request_latency`, labels as
util.cc records them), gRPC on a unix socket, CORS headers, and one warning line per flag it
does not apply.

Everything here starts its own server or runs the CLI: skipped against a real TF Serving.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.parse

import pytest
from serving_test_support import MODEL_NAME, REPO, SENTENCES, free_port

from serving import serve_cli
from serving.client import GrpcClient, RestClient

pytestmark = pytest.mark.usefixtures("needs_own_server")

# main.cc (2.16.1): name -> type of the variable the flag sets.
FLAGS_2_16 = {
    "port": "int32", "grpc_socket_path": "string", "rest_api_port": "int32",
    "rest_api_num_threads": "int32", "rest_api_timeout_in_ms": "int32",
    "rest_api_enable_cors_support": "bool", "enable_batching": "bool",
    "allow_version_labels_for_unavailable_models": "bool",
    "batching_parameters_file": "string", "enable_per_model_batching_parameters": "bool",
    "model_config_file": "string", "model_config_file_poll_wait_seconds": "int32",
    "model_name": "string", "model_base_path": "string", "num_load_threads": "int32",
    "num_unload_threads": "int32", "max_num_load_retries": "int32",
    "load_retry_interval_micros": "int64", "file_system_poll_wait_seconds": "int32",
    "flush_filesystem_caches": "bool", "tensorflow_session_parallelism": "int64",
    "tensorflow_session_config_file": "string", "tensorflow_intra_op_parallelism": "int64",
    "tensorflow_inter_op_parallelism": "int64", "use_alts_credentials": "bool",
    "ssl_config_file": "string", "platform_config_file": "string",
    "per_process_gpu_memory_fraction": "float", "saved_model_tags": "string",
    "grpc_channel_arguments": "string", "grpc_max_threads": "int32",
    "enable_model_warmup": "bool", "num_request_iterations_for_warmup": "int32",
    "version": "bool", "monitoring_config_file": "string",
    "remove_unused_fields_from_bundle_metagraph": "bool", "prefer_tflite_model": "bool",
    "num_tflite_pools": "int32", "num_tflite_interpreters_per_pool": "int32",
    "enable_signature_method_name_check": "bool", "xla_cpu_compilation_enabled": "bool",
    "enable_profiler": "bool", "thread_pool_factory_config_file": "string",
    "mixed_precision": "string", "skip_initialize_tpu": "bool",
    "enable_grpc_healthcheck_service": "bool",
}  # fmt: skip
SAMPLE = {"int32": ("7", 7), "int64": ("7", 7), "float": ("0.5", 0.5), "string": ("x", "x")}


def _argv_and_expected() -> tuple[list[str], dict[str, object]]:
    argv, expected = [], {}
    for index, (name, kind) in enumerate(FLAGS_2_16.items()):
        if kind == "bool":
            # Both of TF Serving's spellings: a bare flag, and --flag=false.
            argv.append(f"--{name}" if index % 2 else f"--{name}=false")
            expected[name] = bool(index % 2)
        else:
            text, value = SAMPLE[kind]
            argv.append(f"--{name}={text}")
            expected[name] = value
    return argv, expected


def test_the_cli_knows_exactly_the_2_16_flags():
    assert set(serve_cli.TF_SERVING_FLAGS) == set(FLAGS_2_16)


def test_every_flag_parses_with_tf_servings_syntax():
    argv, expected = _argv_and_expected()
    args = serve_cli._parser().parse_args(argv)
    given = serve_cli.given_tf_serving_flags(args, argv)
    assert given == expected
    # Space-separated values (`--port 8500`) are accepted too.
    args = serve_cli._parser().parse_args(["--port", "8600", "--model_config_file", "m.config"])
    assert (args.grpc_port, args.model_config_file) == (8600, "m.config")
    with pytest.raises(SystemExit):  # a prefix of a flag is not that flag
        serve_cli._parser().parse_args(["--model_config=m.config"])


def test_flags_that_do_not_apply_warn_in_one_line_each(caplog):
    argv, _ = _argv_and_expected()
    given = serve_cli.given_tf_serving_flags(serve_cli._parser().parse_args(argv), argv)
    with caplog.at_level("WARNING", logger="bertpipe.serve"):
        lines = serve_cli.warn_ignored_flags(given)
    ignored = {n for n, (_, use) in serve_cli.TF_SERVING_FLAGS.items() if use == "ignored"}
    assert [r.getMessage() for r in caplog.records] == lines
    assert len(lines) == len(ignored) and all("\n" not in line for line in lines)
    assert {re.match(r"--(\w+) ", line).group(1) for line in lines} == ignored
    # The ones the built-in server implements never warn.
    assert not ignored & {
        "model_config_file", "model_config_file_poll_wait_seconds", "monitoring_config_file",
        "grpc_channel_arguments", "grpc_socket_path", "rest_api_num_threads",
        "rest_api_timeout_in_ms", "rest_api_enable_cors_support", "port", "rest_api_port",
    }  # fmt: skip


def test_version_and_missing_model(capsys):
    assert serve_cli.main(["--version", "--server", "builtin"]) == 0
    assert "TensorFlow Library:" in capsys.readouterr().out
    assert serve_cli.main(["--server", "builtin"]) == 2
    assert "--model_config_file" in capsys.readouterr().err


def _metrics(url: str, path: str) -> tuple[int, str, str]:
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.netloc, timeout=30)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    return response.status, response.getheader("Content-Type") or "", body


def _sample(text: str, name: str, **labels: str) -> float:
    """A sample's value in Prometheus text (0 when absent); labels must match exactly."""
    for line in text.splitlines():
        match = re.fullmatch(r"([^{ ]+)\{(.*)\} (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2)))
        if found == labels:
            return float(match.group(3))
    return 0.0


def test_a_served_model_with_monitoring_a_unix_socket_and_cors(exports, tmp_path):
    base_path = tmp_path / "serving_models" / MODEL_NAME
    exports.copy_version(2, base_path)
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/monitoring/metrics" }\n')
    # A unix socket path must be short (108 bytes): not under pytest's tmp_path.
    socket_dir = tempfile.mkdtemp(prefix="bp-", dir="/tmp")
    socket_path = os.path.join(socket_dir, "grpc.sock")
    rest_port = free_port()
    command = [
        sys.executable, "-m", "pipeline.cli", "serve", "--server", "builtin",
        f"--model_base_path={base_path}", f"--model_name={MODEL_NAME}",
        f"--rest_api_port={rest_port}", "--port=0", f"--grpc_socket_path={socket_path}",
        f"--monitoring_config_file={monitoring}",
        "--grpc_channel_arguments=grpc.max_connection_age_ms=600000,grpc.primary_user_agent=t",
        "--rest_api_num_threads=4", "--rest_api_timeout_in_ms=20000",
        "--rest_api_enable_cors_support", "--enable_profiler=false", "--skip_initialize_tpu",
        "--no-write-configs", "--rest-api-max-body-bytes=100000",
    ]  # fmt: skip
    log_path = tmp_path / "serve.log"
    log = open(log_path, "w")  # noqa: SIM115  (closed below)
    server = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    rest = RestClient(f"http://127.0.0.1:{rest_port}", MODEL_NAME, timeout=30)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, log_path.read_text()
            try:
                rest.status()
                break
            except OSError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.5)
        status, content_type, before = _metrics(
            f"http://127.0.0.1:{rest_port}", "/monitoring/metrics"
        )
        assert status == 200 and content_type == "text/plain"
        assert "# TYPE :tensorflow:serving:request_count counter" in before
        assert "# TYPE :tensorflow:serving:request_latency histogram" in before

        rest.predict(SENTENCES[:2])
        rest.predict(SENTENCES[:1])
        rest.status()
        code, body = rest.request(
            "POST", f"/v1/models/{MODEL_NAME}:predict", {"signature_name": "nope", "instances": ["x"]}
        )
        assert code == 400, body
        # gRPC on the unix socket only (--port=0).
        unix = GrpcClient(f"unix:{socket_path}", MODEL_NAME)
        assert unix.predict(SENTENCES[:1])[0].label == rest.predict(SENTENCES[:1])[0].label
        unix.close()

        _, _, after = _metrics(f"http://127.0.0.1:{rest_port}", "/monitoring/metrics")
        count = ":tensorflow:serving:request_count"
        latency = ":tensorflow:serving:request_latency_count"

        def delta(name: str, **labels: str) -> float:
            return _sample(after, name, **labels) - _sample(before, name, **labels)

        # 3 REST predictions + 1 status over REST, 1 Predict over gRPC.
        assert delta(count, model_name=MODEL_NAME, status="OK") == 5
        assert delta(count, model_name=MODEL_NAME, status="INVALID_ARGUMENT") == 1
        assert delta(latency, model_name=MODEL_NAME, API="predict", entrypoint="REST") == 3
        assert delta(latency, model_name=MODEL_NAME, API="", entrypoint="REST") == 1
        assert delta(latency, model_name=MODEL_NAME, API="Predict", entrypoint="GRPC") == 1
        buckets = [line for line in after.splitlines() if "request_latency_bucket" in line
                   and 'API="predict"' in line]  # fmt: skip
        assert len(buckets) == 34 and buckets[-1].split(" ")[0].endswith('le="+Inf"}')
        # The default path is not served when the config names another one.
        assert _metrics(f"http://127.0.0.1:{rest_port}", "/monitoring/prometheus/metrics")[0] == 404

        # --rest-api-max-body-bytes (bertpipe's own): a larger body is a 400, unread.
        code, body = rest.request(
            "POST", f"/v1/models/{MODEL_NAME}:predict", {"instances": ["x" * 100_001]}
        )
        assert code == 400 and "100000" in body["error"], body

        # --rest_api_enable_cors_support: TF Serving's three headers on /v1/ responses.
        connection = http.client.HTTPConnection(f"127.0.0.1:{rest_port}", timeout=30)
        connection.request("GET", f"/v1/models/{MODEL_NAME}")
        response = connection.getresponse()
        response.read()
        connection.close()
        assert response.getheader("Access-Control-Allow-Origin") == "*"
        assert response.getheader("Access-Control-Allow-Methods") == "POST, GET"
        assert response.getheader("Access-Control-Allow-Headers") == "Content-Type"
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
        log.close()
        shutil.rmtree(socket_dir, ignore_errors=True)
    text = log_path.read_text()
    assert code == 0, text
    warnings = [line for line in text.splitlines() if "does not apply; ignored" in line]
    assert len(warnings) == 2, text
    assert any("--enable_profiler " in w for w in warnings)
    assert any("--skip_initialize_tpu " in w for w in warnings)
    # --no-write-configs: nothing written next to the base path.
    assert sorted(os.listdir(base_path.parent)) == [MODEL_NAME]


def test_no_write_configs_with_tensorflow_model_server(tmp_path, monkeypatch):
    """The binary gets --model_name/--model_base_path instead of a written models.config, a
    batching file only in a temporary directory (removed afterwards), and every other TF
    Serving flag it was given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.json"
    fake = bin_dir / "tensorflow_model_server"
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys, os\n"
        "batching = [a.split('=', 1)[1] for a in sys.argv if a.startswith('--batching_parameters_file=')]\n"
        f"json.dump([sys.argv[1:], [os.path.exists(b) for b in batching]], open({str(record)!r}, 'w'))\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    base_path = tmp_path / "serving_models" / MODEL_NAME
    base_path.mkdir(parents=True)

    code = serve_cli.main(
        [
            f"--model_base_path={base_path}", f"--model_name={MODEL_NAME}",
            "--rest_api_port=8601", "--port=8600", "--max-batch-size=8",
            "--monitoring_config_file=/etc/monitoring.config", "--enable_profiler=false",
            "--no-write-configs",
        ]
    )  # fmt: skip
    assert code == 0
    argv, batching_existed = json.loads(record.read_text())
    assert argv[:6] == [
        "--port=8600",
        "--rest_api_port=8601",
        f"--model_name={MODEL_NAME}",
        f"--model_base_path={base_path}",
        "--file_system_poll_wait_seconds=1",
        "--xla_cpu_compilation_enabled=true",
    ]
    assert argv[6] == "--enable_batching=true" and argv[7].startswith("--batching_parameters_file=")
    assert argv[8:] == ["--monitoring_config_file=/etc/monitoring.config", "--enable_profiler=false"]
    assert batching_existed == [True]
    assert not os.path.exists(argv[7].split("=", 1)[1])  # removed once the server exited
    assert sorted(os.listdir(base_path.parent)) == [MODEL_NAME]


def test_rest_api_timeout_and_threads(monkeypatch):
    """--rest_api_timeout_in_ms: a predict/classify/regress over the deadline answers 504
    DEADLINE_EXCEEDED with the message a TF session run past RunOptions.timeout_in_ms gives
    (checked in this TensorFlow: "Timed out waiting for notification"); status and metadata
    GETs have no deadline (TF Serving sets it on model calls only)."""
    import types

    from serving import rest_api

    def slow(self, method, path, body):
        time.sleep(1.0)
        return 200, {"slow": True}

    monkeypatch.setattr(rest_api.RestApi, "handle", slow)
    server = rest_api.RestServer(
        types.SimpleNamespace(), "127.0.0.1", 0, num_threads=2, timeout_ms=200
    )
    server.start()
    try:
        client = RestClient(f"http://127.0.0.1:{server.port}", MODEL_NAME, timeout=30)
        status, body = client.request("POST", f"/v1/models/{MODEL_NAME}:predict", {"instances": [1]})
        assert (status, body) == (504, {"error": "Timed out waiting for notification"})
        assert client.request("GET", f"/v1/models/{MODEL_NAME}") == (200, {"slow": True})
        client.close()
    finally:
        server.stop()
