"""TF Serving's REST API: request/response shapes, status, metadata and errors, over HTTP."""

from __future__ import annotations

import base64
import json
import urllib.request

import numpy as np
import pytest
from serving_test_support import MODEL_NAME, SENTENCES

from serving.protos import serving_protos


def post(rest, path: str, payload) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return rest.request("POST", path, body)


def model_path(rest, suffix: str = "") -> str:
    return f"/v1/models/{rest.model}{suffix}"


def assert_error(response: tuple[int, dict], status: int, message_part: str) -> None:
    code, body = response
    assert code == status, body
    assert set(body) == {"error"}, body
    assert message_part in body["error"], body


def example_bytes(text: str) -> bytes:
    example = serving_protos().example_pb2.Example()
    example.features.feature["text"].bytes_list.value.append(text.encode())
    return example.SerializeToString()


def test_model_status_has_tf_servings_shape(rest, target):
    code, body = rest.request("GET", model_path(rest))
    assert code == 200
    assert set(body) == {"model_version_status"}
    for entry in body["model_version_status"]:
        assert set(entry) == {"version", "state", "status"}
        assert set(entry["status"]) == {"error_code", "error_message"}
        assert entry["version"].isdigit()  # int64 fields are JSON strings
    assert any(e["state"] == "AVAILABLE" for e in body["model_version_status"])
    if target.builtin:
        # Versions 1 and 2 are on disk; only the newest is loaded (TF Serving's latest policy).
        assert body == {
            "model_version_status": [
                {
                    "version": "2",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }
        code, one = rest.request("GET", model_path(rest, "/versions/2"))
        assert (code, one) == (200, body)


def test_metadata_lists_the_export_contract_signatures(rest, target):
    code, body = rest.request("GET", model_path(rest, "/metadata"))
    assert code == 200
    assert set(body) == {"model_spec", "metadata"}
    assert body["model_spec"]["name"] == rest.model
    assert body["model_spec"]["signature_name"] == ""
    assert body["model_spec"]["version"].isdigit()
    signatures = body["metadata"]["signature_def"]["signature_def"]
    serving_default = signatures["serving_default"]
    assert serving_default["method_name"] == "tensorflow/serving/predict"
    text = serving_default["inputs"]["text"]
    assert text["dtype"] == "DT_STRING"
    assert text["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
    probabilities = serving_default["outputs"]["probabilities"]
    assert probabilities["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in probabilities["tensor_shape"]["dim"]] == ["-1", "2"]
    assert serving_default["outputs"]["label"]["dtype"] == "DT_STRING"
    assert signatures["from_examples"]["inputs"]["examples"]["dtype"] == "DT_STRING"
    if target.builtin:
        assert body["model_spec"]["version"] == "2"
        code, versioned = rest.request("GET", model_path(rest, "/versions/2/metadata"))
        assert (code, versioned) == (200, body)


def test_predict_row_format(rest, target, exports):
    code, body = post(rest, model_path(rest, ":predict"), {"instances": SENTENCES})
    assert code == 200
    assert set(body) == {"predictions"}
    predictions = body["predictions"]
    assert len(predictions) == len(SENTENCES)
    for row in predictions:
        assert set(row) == {"label", "probabilities"}
        assert isinstance(row["label"], str)
        assert len(row["probabilities"]) == 2
        assert sum(row["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    if target.builtin:
        reference = exports.reference(2, SENTENCES)
        np.testing.assert_allclose(
            [r["probabilities"] for r in predictions], reference["probabilities"], atol=1e-5
        )
        assert [r["label"] for r in predictions] == [v.decode() for v in reference["label"]]


def test_row_format_with_named_inputs_and_columnar_format_agree(rest):
    _, plain = post(rest, model_path(rest, ":predict"), {"instances": SENTENCES})
    code, named = post(
        rest, model_path(rest, ":predict"), {"instances": [{"text": t} for t in SENTENCES]}
    )
    assert code == 200
    code, columnar = post(
        rest,
        model_path(rest, ":predict"),
        {"signature_name": "serving_default", "inputs": {"text": SENTENCES}},
    )
    assert code == 200
    code, columnar_plain = post(rest, model_path(rest, ":predict"), {"inputs": SENTENCES})
    assert code == 200
    assert set(columnar) == {"outputs"}
    assert set(columnar["outputs"]) == {"label", "probabilities"}
    assert columnar == columnar_plain
    assert [r["label"] for r in named["predictions"]] == columnar["outputs"]["label"]
    np.testing.assert_allclose(
        [r["probabilities"] for r in plain["predictions"]],
        columnar["outputs"]["probabilities"],
        atol=1e-5,
    )
    np.testing.assert_allclose(
        [r["probabilities"] for r in named["predictions"]],
        columnar["outputs"]["probabilities"],
        atol=1e-5,
    )


def test_from_examples_signature_takes_base64_examples(rest):
    _, by_text = post(rest, model_path(rest, ":predict"), {"inputs": SENTENCES[:3]})
    payload = {
        "signature_name": "from_examples",
        "instances": [{"b64": base64.b64encode(example_bytes(t)).decode()} for t in SENTENCES[:3]],
    }
    code, by_example = post(rest, model_path(rest, ":predict"), payload)
    assert code == 200
    assert [r["label"] for r in by_example["predictions"]] == by_text["outputs"]["label"]
    np.testing.assert_allclose(
        [r["probabilities"] for r in by_example["predictions"]],
        by_text["outputs"]["probabilities"],
        atol=1e-5,
    )


def test_predict_a_specific_version(rest, needs_own_server):
    code, body = post(rest, model_path(rest, "/versions/2:predict"), {"instances": ["a film"]})
    assert code == 200 and len(body["predictions"]) == 1
    # Version 1 is on disk but not loaded: TF Serving's answer for it is the same 404.
    assert_error(
        post(rest, model_path(rest, "/versions/1:predict"), {"instances": ["a film"]}),
        404,
        f"Servable not found for request: Specific({MODEL_NAME}, 1)",
    )


def test_classify_uses_from_examples_and_returns_label_score_pairs(rest, exports, needs_own_server):
    code, body = post(
        rest, model_path(rest, ":classify"), {"examples": [{"text": t} for t in SENTENCES]}
    )
    assert code == 200
    assert set(body) == {"results"}
    reference = exports.reference(2, SENTENCES)["probabilities"]
    assert len(body["results"]) == len(SENTENCES)
    for row, expected in zip(body["results"], reference, strict=True):
        assert [label for label, _ in row] == ["positive", "negative"]  # version 2's class order
        np.testing.assert_allclose([score for _, score in row], expected, atol=1e-5)
    # A context example is merged into every example, as in TF Serving.
    code, with_context = post(
        rest,
        model_path(rest, ":classify"),
        {"context": {"text": SENTENCES[0]}, "examples": [{}, {}]},
    )
    assert code == 200
    np.testing.assert_allclose([s for _, s in with_context["results"][1]], reference[0], atol=1e-5)


def test_classify_with_the_exported_classification_signature(rest, exports):
    """`classification` is TF Serving's own classify signature: portable to a real server."""
    request = {"signature_name": "classification", "examples": [{"text": t} for t in SENTENCES]}
    code, body = post(rest, model_path(rest, ":classify"), request)
    assert code == 200, body
    reference = exports.reference(2, SENTENCES)["probabilities"]
    for row, expected in zip(body["results"], reference, strict=True):
        assert [label for label, _ in row] == ["positive", "negative"]
        np.testing.assert_allclose([score for _, score in row], expected, atol=1e-5)


@pytest.mark.parametrize(
    "method, path, body, status, message",
    [
        (
            "POST",
            "/v1/models/nope:predict",
            {"instances": ["a"]},
            404,
            "Servable not found for request: Latest(nope)",
        ),
        (
            "POST",
            "/v1/models/{model}/versions/99:predict",
            {"instances": ["a"]},
            404,
            "Servable not found for request: Specific",
        ),
        ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        ("GET", "/v1/models/{model}/versions/99", None, 404, "Could not find version 99 of model"),
        (
            "GET",
            "/v1/models/nope/metadata",
            None,
            404,
            "Servable not found for request: Latest(nope)",
        ),
        # Path traversal: an encoded name is decoded, then only compared with the served name.
        ("POST", "/v1/models/..%2F..:predict", {"instances": ["a"]}, 404, "Latest(../..)"),
        ("GET", "/v1/models/..%2F..%2Fetc%2Fpasswd/metadata", None, 404, "Servable not found"),
        ("GET", "/v1/models/%2E%2E", None, 404, "Could not find any versions of model .."),
        # A literal "../x" is no model name at all.
        ("POST", "/v1/models/../x:predict", {"instances": ["a"]}, 400, "Malformed request"),
        ("GET", "/v1/models/../../etc/passwd", None, 400, "Malformed request"),
        ("POST", "/v1/models/{model}:predict", b"", 400, "JSON Parse error: The document is empty"),
        ("POST", "/v1/models/{model}:predict", b"instances = [1, 2]", 400, "JSON Parse error"),
        ("POST", "/v1/models/{model}:predict", [1, 2], 400, "Is not object"),
        (
            "POST",
            "/v1/models/{model}:predict",
            {"instances": [1, 2]},
            400,
            "is not of expected type: string",
        ),
        (
            "POST",
            "/v1/models/{model}:predict",
            {"inputs": {"text": [1.5]}},
            400,
            "is not of expected type: string",
        ),
        (
            "POST",
            "/v1/models/{model}:predict",
            {"inputs": {"txt": ["a"]}},
            400,
            "Missing named input: text in 'inputs' object.",
        ),
        (
            "POST",
            "/v1/models/{model}:predict",
            {"instances": [{"txt": "a"}]},
            400,
            "does not have named input: txt",
        ),
        ("POST", "/v1/models/{model}:predict", {}, 400, "Missing 'inputs' or 'instances' key"),
        (
            "POST",
            "/v1/models/{model}:predict",
            {
                "instances": [],
            },
            400,
            "No values in 'instances' array",
        ),
        (
            "POST",
            "/v1/models/{model}:predict",
            {"instances": ["a"], "inputs": ["a"]},
            400,
            "expecting only one of 'inputs' or 'instances'",
        ),
        (
            "POST",
            "/v1/models/{model}:predict",
            {"signature_name": 7, "instances": ["a"]},
            400,
            "'signature_name' key must be a string value.",
        ),
        (
            "POST",
            "/v1/models/{model}:predict",
            {"signature_name": "nope", "instances": ["a"]},
            400,
            'Serving signature name: "nope" not found',
        ),
        (
            "POST",
            "/v1/models/{model}/labels/stable:predict",
            {"instances": ["a"]},
            400,
            "Unrecognized servable version label: stable",
        ),
        (
            "POST",
            "/v1/models/{model}:classify",
            {"instances": ["a"]},
            400,
            "key 'examples' is expected",
        ),
        ("GET", "/v1/models", None, 400, "Missing model name in request."),
        ("GET", "/v1/models/{model}:predict", None, 400, "Malformed request: GET"),
        (
            "POST",
            "/v1/models/{model}/versions/x:predict",
            {"instances": ["a"]},
            400,
            "Malformed request",
        ),
    ],
)
def test_errors_have_tf_servings_status_and_body(rest, method, path, body, status, message):
    path = path.format(model=rest.model)
    payload = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    assert_error(rest.request(method, path, payload), status, message)


def test_wrong_shape_is_a_bad_request(rest):
    code, body = post(rest, model_path(rest, ":predict"), {"instances": [["a", "b"]]})
    assert code == 400 and "error" in body


def test_responses_are_json_and_unknown_paths_404(target):
    if not target.rest_url:
        pytest.skip("no REST API")
    request = urllib.request.Request(
        f"{target.rest_url}/v1/models/{target.model}:predict",
        data=json.dumps({"instances": ["a film"]}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"] == "application/json"
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{target.rest_url}/index.html", timeout=30)
    assert error.value.code == 404
