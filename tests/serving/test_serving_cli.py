"""`bertpipe serve` and `bertpipe predict` end to end, as users run them (subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serving_test_support import MODEL_NAME, REPO, SENTENCES, free_port, free_ports

from serving import serve_cli
from serving.client import RestClient

BERTPIPE = Path(sys.executable).with_name("bertpipe")


def bertpipe(*args: str) -> list[str]:
    if BERTPIPE.exists():
        return [str(BERTPIPE), *args]
    return [sys.executable, "-m", "pipeline.cli", *args]


def run_predict(
    *args: str, input_text: str | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(
        bertpipe("predict", *args),
        cwd=REPO,
        capture_output=True,
        text=True,
        input=input_text,
        timeout=60,
    )
    return result, time.monotonic() - started


def parse_lines(stdout: str) -> list[tuple[str, float, str]]:
    rows = []
    for line in stdout.splitlines():
        label, probability, text = line.split("\t")
        rows.append((label, float(probability), text))
    return rows


def test_predict_over_rest_and_grpc(target, rest, tmp_path):
    expected = rest.predict(SENTENCES)
    if target.rest_url:
        result, seconds = run_predict(
            "--server", target.rest_url, "--model", target.model, *SENTENCES[:2]
        )
        assert result.returncode == 0, result.stderr
        rows = parse_lines(result.stdout)
        assert [r[2] for r in rows] == SENTENCES[:2]
        assert [r[0] for r in rows] == [p.label for p in expected[:2]]
        assert [r[1] for r in rows] == [
            pytest.approx(p.probability, abs=1e-4) for p in expected[:2]
        ]
        assert seconds < 5, f"bertpipe predict over REST took {seconds:.1f} s"
    if target.grpc_target:
        sentences = tmp_path / "sentences.txt"
        sentences.write_text("\n".join(SENTENCES) + "\n\n", encoding="utf-8")
        result, seconds = run_predict(
            "--grpc",
            target.grpc_target,
            "--model",
            target.model,
            "--input",
            str(sentences),
            "--json",
        )
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert [r["text"] for r in records] == SENTENCES
        assert [r["label"] for r in records] == [p.label for p in expected]
        for record, prediction in zip(records, expected, strict=True):
            assert record["probabilities"] == pytest.approx(prediction.probabilities, abs=1e-5)
        assert seconds < 10, f"bertpipe predict over gRPC took {seconds:.1f} s"


def test_predict_reports_server_errors(target):
    url = target.rest_url
    if not url:
        pytest.skip("no REST API")
    result, _ = run_predict("--server", url, "--model", "no-such-model", "a film")
    assert result.returncode == 1
    assert "server error 404" in result.stderr and "no-such-model" in result.stderr
    result, _ = run_predict("--server", f"http://127.0.0.1:{free_port()}", "--model", "m", "a film")
    assert result.returncode == 1 and "cannot get predictions" in result.stderr
    result, _ = run_predict("--server", url, "--model", target.model)
    assert result.returncode == 2 and "no texts" in result.stderr


def test_free_ports_are_distinct():
    # The servers below take several ports at once; two equal ones would fail to start.
    ports = free_ports(8)
    assert len(set(ports)) == 8 and all(port > 0 for port in ports)


def test_serve_runs_the_builtin_server_until_terminated(exports, tmp_path, needs_own_server):
    base_path = tmp_path / "serving_models" / MODEL_NAME
    exports.copy_version(1, base_path)
    exports.copy_version(2, base_path)
    rest_port, grpc_port = free_ports(2)
    command = bertpipe(
        "serve",
        "--model-base-path", str(base_path),
        "--model-name", MODEL_NAME,
        "--rest-port", str(rest_port),
        "--grpc-port", str(grpc_port),
        "--host", "127.0.0.1",
        "--enable-batching",
        "--max-batch-size", "16",
        "--batch-timeout-micros", "500",
        "--file-system-poll-wait-seconds", "0.5",
    )  # fmt: skip
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115  (closed below)
    server = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        client = RestClient(f"http://127.0.0.1:{rest_port}", MODEL_NAME, timeout=10)
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                status = client.status()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.5)
        assert status["model_version_status"][0]["version"] == "2"
        result, _ = run_predict(
            "--grpc", f"127.0.0.1:{grpc_port}", "--model", MODEL_NAME, SENTENCES[0]
        )
        assert result.returncode == 0, result.stderr
        expected = exports.reference(2, SENTENCES[:1])["label"][0].decode()
        assert parse_lines(result.stdout)[0][0] == expected
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()
    # The files a real TF Serving needs were written next to the base path.
    models_config = (base_path.parent / f"{MODEL_NAME}.models.config").read_text()
    assert f'name: "{MODEL_NAME}"' in models_config and f'base_path: "{base_path}"' in models_config
    batching = (base_path.parent / f"{MODEL_NAME}.batching_parameters.txt").read_text()
    assert "max_batch_size { value: 16 }" in batching
    assert "batch_timeout_micros { value: 500 }" in batching


def test_serve_delegates_to_tensorflow_model_server_when_installed(tmp_path, monkeypatch):
    """With a `tensorflow_model_server` on PATH, serve runs it with TF Serving's flags and the
    generated config files (the binary here only records how it was called)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.json"
    fake = bin_dir / "tensorflow_model_server"
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    base_path = tmp_path / "serving_models" / MODEL_NAME
    base_path.mkdir(parents=True)
    parameters = tmp_path / "batching.txt"
    parameters.write_text("max_batch_size { value: 48 }\nbatch_timeout_micros { value: 250 }\n")

    code = serve_cli.main(
        [
            "--model_base_path", str(base_path),
            "--model_name", MODEL_NAME,
            "--rest_api_port", "8601",
            "--port", "8600",
            "--enable_batching=true",
            "--batching_parameters_file", str(parameters),
            "--max-batch-size", "64",
        ]
    )  # fmt: skip
    assert code == 0
    argv = json.loads(record.read_text())
    config = base_path.parent / f"{MODEL_NAME}.models.config"
    batching = base_path.parent / f"{MODEL_NAME}.batching_parameters.txt"
    assert argv == [
        "--port=8600",
        "--rest_api_port=8601",
        f"--model_config_file={config}",
        "--file_system_poll_wait_seconds=1",
        "--xla_cpu_compilation_enabled=true",  # serving.jit_compile exports need it
        "--enable_batching=true",
        f"--batching_parameters_file={batching}",
    ]
    assert f'base_path: "{base_path}"' in config.read_text()
    written = batching.read_text()
    assert "max_batch_size { value: 64 }" in written  # the flag wins over the file
    assert "batch_timeout_micros { value: 250 }" in written
