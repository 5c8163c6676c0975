"""Several models and versions from one `--model_config_file` (TF Serving's ModelServerConfig).

One built-in server serves the SST-2 classifier (conftest's exports), the NER model and the
QA model (their tests' export helpers) from one config file written with the
tensorflow_serving.config protos, each with a different version policy:

* sst2, `latest { num_versions: 2 }` over versions 1, 2, 3: versions 3 and 2 are served,
  1 never loaded; labels stable -> 2, canary -> 3;
* ner, `all {}` over versions 1 and 2;
* squad, `specific { versions: 1 }` over versions 1 and 2.

Expectations follow TF Serving 2.16.1's sources: file_system_storage_path_source.cc (policies),
server_core.cc (labels: "Unrecognized servable version label", FAILED_PRECONDITION for a label
on a version not available when the config is applied, checked before the config loads
anything — so the server starts with --allow_version_labels_for_unavailable_models, as
serving_config.md prescribes for labels given at start-up), get_model_status_impl.cc (a status
request with a label is not resolved: it lists every version, the label is only looked up for
inference and metadata).

These control the server's files, so they skip against a real TF Serving.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import text_format
from serving_test_support import SENTENCES

from serving import server_config
from serving.client import GrpcClient, RestClient
from serving.errors import Code, ServingError
from serving.model_server import ModelServer

pytestmark = pytest.mark.usefixtures("needs_own_server")

AVAILABLE, END = "AVAILABLE", "END"


def _copy_as(source: Path, base_path: Path, version: int) -> None:
    """Copies a SavedModel in as `version` the way the pusher does: temp name + rename."""
    base_path.mkdir(parents=True, exist_ok=True)
    temporary = base_path / f".tmp-{version}"
    shutil.copytree(source, temporary)
    temporary.rename(base_path / str(version))


def _config(root: Path, sst2_labels: dict[str, int] | None = None):
    """The ModelServerConfig of this test, built with the protos."""
    config = server_config.ModelServerConfig()
    sst2 = config.model_config_list.config.add(
        name="sst2", base_path=str(root / "sst2"), model_platform="tensorflow"
    )
    sst2.model_version_policy.latest.num_versions = 2
    for label, version in (sst2_labels or {"stable": 2, "canary": 3}).items():
        sst2.version_labels[label] = version
    ner = config.model_config_list.config.add(
        name="ner", base_path=str(root / "ner"), model_platform="tensorflow"
    )
    ner.model_version_policy.all.SetInParent()
    squad = config.model_config_list.config.add(
        name="squad", base_path=str(root / "squad"), model_platform="tensorflow"
    )
    squad.model_version_policy.specific.versions.append(1)
    return config


@pytest.fixture(scope="module")
def models_root(exports, tmp_path_factory) -> Path:
    """sst2 versions 1-3 (3 is a copy of 1), ner versions 1-2, squad versions 1-2."""
    import test_serving_ner as ner
    import test_serving_qa as qa

    from serving.question_answering_encoder import QuestionAnsweringEncoder
    from serving.question_answering_export import export_question_answering
    from serving.test_models import span_model
    from serving.token_classification_export import export_token_classifier
    from serving.word_encoder import BertWordEncoder

    root = tmp_path_factory.mktemp("config_models")
    scratch = tmp_path_factory.mktemp("config_exports")
    for version in (1, 2):
        exports.copy_version(version, root / "sst2")
    _copy_as(exports.paths[1], root / "sst2", 3)

    model, tags = ner._controlled_model()
    export_token_classifier(model, BertWordEncoder(ner.VOCAB, 32), tags, str(scratch / "ner"))
    for version in (1, 2):
        _copy_as(scratch / "ner", root / "ner", version)

    encoder = QuestionAnsweringEncoder(qa.VOCAB, max_seq_length=32, max_query_length=8, doc_stride=8)
    export_question_answering(
        span_model(qa.VOCAB, qa.START, qa.END), encoder, str(scratch / "squad"), max_answer_length=5
    )
    for version in (1, 2):
        _copy_as(scratch / "squad", root / "squad", version)
    return root


@pytest.fixture(scope="module")
def config_file(models_root) -> Path:
    path = models_root / "models.config"
    path.write_text(server_config.config_text(_config(models_root), header="written by the test"))
    return path


@pytest.fixture(scope="module")
def server(config_file):
    server = ModelServer(
        rest_port=0,
        grpc_port=0,
        host="127.0.0.1",
        model_config_file=str(config_file),
        model_config_file_poll_wait_seconds=0.5,
        file_system_poll_wait_seconds=-1,
        allow_version_labels_for_unavailable_models=True,  # labels in the start-up config
    )
    server.start()
    yield server
    server.stop()


def _versions(status: dict) -> dict[int, str]:
    return {int(s["version"]): s["state"] for s in status["model_version_status"]}


def _sst2_version(client, exports) -> int:
    """Which export answered (version 3 is a copy of 1, so 1 means 1 or 3)."""
    probabilities = [p.probabilities for p in client.predict(SENTENCES[:2])]
    for version in (1, 2):
        reference = exports.reference(version, SENTENCES[:2])["probabilities"]
        if np.allclose(probabilities, reference, atol=1e-5):
            return version
    raise AssertionError(probabilities)


def test_the_config_file_is_a_model_server_config_text_proto(config_file, models_root):
    parsed = server_config.read_model_server_config(str(config_file))
    assert parsed == _config(models_root)
    assert text_format.MessageToString(parsed) in config_file.read_text()


def test_each_model_serves_the_versions_its_policy_names(server):
    rest = {name: RestClient(server.rest_url, name) for name in ("sst2", "ner", "squad")}
    assert _versions(rest["sst2"].status()) == {3: AVAILABLE, 2: AVAILABLE}  # latest 2
    assert _versions(rest["ner"].status()) == {2: AVAILABLE, 1: AVAILABLE}  # all
    assert _versions(rest["squad"].status()) == {1: AVAILABLE}  # specific 1
    for name, client in rest.items():
        grpc_status = GrpcClient(server.grpc_target, name).status()
        assert {s.version: s.state for s in grpc_status.model_version_status} == {
            v: 30 for v in _versions(client.status())
        }


def test_three_tasks_from_one_server_over_rest_and_grpc(server, exports):
    import test_serving_ner as ner
    import test_serving_qa as qa

    for transport in (RestClient(server.rest_url, "ner"), GrpcClient(server.grpc_target, "ner")):
        rows = transport.predict_outputs(["Paris", "nothing here"])
        assert [list(r["entity_label"][: r["num_entities"]]) for r in rows] == [["LOC"], []]
    question, context, answer, _ = qa.CASES[0]
    for transport in (
        RestClient(server.rest_url, "squad"),
        GrpcClient(server.grpc_target, "squad"),
    ):
        rows = transport.predict_outputs([{"question": question, "context": context}])
        assert rows[0]["answer_text"] == answer
    # sst2 without a version: the newest (3, a copy of 1); pinned versions and labels.
    assert _sst2_version(RestClient(server.rest_url, "sst2"), exports) == 1
    assert _sst2_version(RestClient(server.rest_url, "sst2", version=2), exports) == 2
    assert _sst2_version(RestClient(server.rest_url, "sst2", label="stable"), exports) == 2
    assert _sst2_version(GrpcClient(server.grpc_target, "sst2", label="stable"), exports) == 2
    response = GrpcClient(server.grpc_target, "sst2", label="canary").predict_response(["x"])
    assert response.model_spec.version.value == 3
    assert ner.MODEL == "ner"


def test_versions_outside_the_policy_and_unknown_labels(server):
    rest = RestClient(server.rest_url, "sst2")
    status, body = rest.request("POST", "/v1/models/sst2/versions/1:predict", {"instances": ["x"]})
    assert (status, body) == (404, {"error": "Servable not found for request: Specific(sst2, 1)"})
    status, body = rest.request(
        "POST", "/v1/models/sst2/labels/nope:predict", {"instances": ["x"]}
    )
    assert (status, body) == (400, {"error": "Unrecognized servable version label: nope"})
    # A label is per model: squad has none.
    status, body = rest.request(
        "POST", "/v1/models/squad/labels/stable:predict", {"instances": ["x"]}
    )
    assert (status, body) == (400, {"error": "Unrecognized servable version label: stable"})
    with pytest.raises(grpc.RpcError) as error:
        client = GrpcClient(server.grpc_target, "sst2", label="nope")
        request = client.protos.predict_pb2.PredictRequest()
        client._fill_spec(request.model_spec)
        request.inputs["text"].CopyFrom(client.string_tensor(["x"]))
        client.prediction_stub.Predict(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == "Unrecognized servable version label: nope"


def test_labels_routes_metadata_and_status(server):
    rest = RestClient(server.rest_url, "sst2")
    status, body = rest.request("GET", "/v1/models/sst2/labels/stable/metadata")
    assert status == 200 and body["model_spec"]["version"] == "2"
    status, body = rest.request("GET", "/v1/models/sst2/labels/canary/metadata")
    assert status == 200 and body["model_spec"]["version"] == "3"
    status, body = rest.request("GET", "/v1/models/sst2/labels/nope/metadata")
    assert (status, body) == (400, {"error": "Unrecognized servable version label: nope"})
    # GetModelStatus only looks at a *version*: with any label, known or not, it lists every
    # version of the model (get_model_status_impl.cc), over REST and gRPC alike.
    everything = _versions(rest.status())
    for label in ("stable", "canary", "nope"):
        status, body = rest.request("GET", f"/v1/models/sst2/labels/{label}")
        assert status == 200 and _versions(body) == everything
        grpc_status = GrpcClient(server.grpc_target, "sst2", label=label).status()
        assert {s.version for s in grpc_status.model_version_status} == set(everything)
    status, body = rest.request("GET", "/v1/models/sst2/versions/1")
    assert (status, body) == (404, {"error": "Could not find version 1 of model sst2"})


def test_a_label_on_an_unavailable_version_is_refused_and_the_old_labels_stay(server, models_root):
    with pytest.raises(ServingError) as error:
        server.core.reload(_config(models_root, {"stable": 1}))
    assert error.value.code == Code.FAILED_PRECONDITION
    assert error.value.message == (
        "Request to assign label to version 1 of model sst2, which is not currently "
        "available for inference"
    )
    response = GrpcClient(server.grpc_target, "sst2", label="stable").predict_response(["x"])
    assert response.model_spec.version.value == 2


def test_labels_at_start_up_need_allow_version_labels_for_unavailable_models(models_root, tmp_path):
    config = _config(models_root, {"stable": 3})
    del config.model_config_list.config[1:]  # sst2 only
    path = tmp_path / "models.config"
    path.write_text(server_config.config_text(config))
    server = ModelServer(
        rest_port=0, grpc_port=None, host="127.0.0.1", model_config_file=str(path),
        file_system_poll_wait_seconds=-1,
    )  # fmt: skip
    with pytest.raises(ServingError, match="Request to assign label to version 3 of model sst2"):
        server.start()
    assert server.manager is None  # refused before loading anything


def test_handle_reload_config_request_errors(server, models_root):
    """model_service_impl.cc: only a model_config_list; a refused config keeps the old one,
    with the status both in the call and in the response."""
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

    channel = grpc.insecure_channel(server.grpc_target)
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = model_management_pb2.ReloadConfigRequest()
    request.config.custom_model_config.type_url = "type.googleapis.com/some.Config"
    with pytest.raises(grpc.RpcError) as error:
        stub.HandleReloadConfigRequest(request, timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == (
        "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
        "ModelConfigList is currently supported"
    )
    request = model_management_pb2.ReloadConfigRequest(config=_config(models_root, {"stable": 1}))
    with pytest.raises(grpc.RpcError) as error:
        stub.HandleReloadConfigRequest(request, timeout=60)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    channel.close()
    assert server.core.config == _config(models_root)


def _wait(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_the_config_file_is_re_read_while_serving(server, config_file, models_root):
    """Every model_config_file_poll_wait_seconds: a model removed is unloaded, a new policy
    applies, then a label moves to the version it loaded (two configs, as serving_config.md
    says). Runs last in this module: it changes the served config."""
    rest = RestClient(server.rest_url, "sst2")
    original = config_file.read_text()
    config = _config(models_root, {"canary": 3})
    del config.model_config_list.config[2]  # squad
    sst2 = config.model_config_list.config[0]
    sst2.model_version_policy.specific.versions.extend([1, 3])
    try:
        config_file.write_text(server_config.config_text(config))
        _wait(lambda: _versions(rest.status()) == {3: AVAILABLE, 2: END, 1: AVAILABLE})
        _wait(lambda: server.core.config == config)
        sst2.version_labels["stable"] = 1
        config_file.write_text(server_config.config_text(config))
        _wait(lambda: server.core.config == config)
        status, body = rest.request("POST", "/v1/models/squad:predict", {"instances": []})
        assert (status, body) == (404, {"error": "Servable not found for request: Latest(squad)"})
        status, body = rest.request("GET", "/v1/models/squad")
        assert status == 200 and _versions(body) == {1: END}
        response = GrpcClient(server.grpc_target, "sst2", label="stable").predict_response(["x"])
        assert response.model_spec.version.value == 1
        # A file that does not parse is logged and the running config stays.
        config_file.write_text("model_config_list { config { name: ")
        time.sleep(1.5)
        assert server.core.config == config
    finally:
        config_file.write_text(original)


def test_config_validation_follows_server_core():
    def parse(text: str):
        return server_config.parse_model_server_config(text)

    with pytest.raises(ServingError, match="Illegal to list model a multiple times"):
        parse(
            'model_config_list { config { name: "a" base_path: "/m/a" model_platform: "tensorflow" }'
            ' config { name: "a" base_path: "/m/b" model_platform: "tensorflow" } }'
        )
    with pytest.raises(ServingError, match="to have an absolute path or URI; got base_path\\(\\)=m"):
        parse('model_config_list { config { name: "a" base_path: "m" model_platform: "tensorflow" } }')
    with pytest.raises(ServingError, match="Illegal setting neither ModelServerConfig::model_type"):
        parse('model_config_list { config { name: "a" base_path: "/m" } }')
    with pytest.raises(ServingError, match="Invalid ModelServerConfig"):
        parse("model_config_list { config { nme: 1 } }")
    model = server_config.ModelConfig()
    assert server_config.versions_to_serve(model, [1, 5, 3]) == {5}  # default: latest 1
    model.model_version_policy.latest.num_versions = 0  # TF Serving: at least 1
    assert server_config.versions_to_serve(model, [1, 5, 3]) == {5}
    model.model_version_policy.latest.num_versions = 2
    assert server_config.versions_to_serve(model, [1, 5, 3]) == {5, 3}
    model.model_version_policy.all.SetInParent()
    assert server_config.versions_to_serve(model, [1, 5, 3]) == {1, 3, 5}
    model.model_version_policy.specific.versions.extend([3, 4])
    assert server_config.versions_to_serve(model, [1, 5, 3]) == {3}
