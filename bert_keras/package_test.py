"""Package-wide checks: backend-agnostic sources, runnable docstring examples, torch backend."""

import ast
import doctest
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(PACKAGE_DIR)
MODULES = sorted(
    name[:-3]
    for name in os.listdir(PACKAGE_DIR)
    if name.endswith(".py") and not name.endswith("_test.py") and name != "__init__.py"
)


def test_the_library_modules_exist():
    assert {"backbone", "checkpoint", "classifier", "optimization", "pretrainer"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_is_backend_agnostic(module):
    """No TensorFlow (nor torch/jax) in the library: keras.ops only, as it also runs on JAX."""
    path = os.path.join(PACKAGE_DIR, module + ".py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    banned = ("tensorflow", "tensorflow_text", "tf_keras", "torch", "jax")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Name) and node.id == "tf":
            names = ["tf"]
        else:
            continue
        for name in names:
            assert name.split(".")[0] not in (*banned, "tf"), f"{path}:{node.lineno}: {name}"


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module):
    imported = importlib.import_module(f"bert_keras.{module}")
    result = doctest.testmod(imported, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"bert_keras.{module} has no docstring example"


_TORCH_SCRIPT = """
import json, keras, numpy as np
from bert_keras.backbone import ConfigurableBertBackbone
from bert_keras.classifier import build_text_classifier
from bert_keras.pretrainer import BertPretrainer, split_pretraining_features
from bert_keras.pretrainer_test import TINY, _features

keras.utils.set_random_seed(0)
model = BertPretrainer(ConfigurableBertBackbone(**TINY))
model.compile(optimizer=keras.optimizers.Adam(1e-2))
x, y, sample_weight = split_pretraining_features(_features())
outputs = model(x)
first = model.train_on_batch(x, y, sample_weight=sample_weight, return_dict=True)
for _ in range(4):
    last = model.train_on_batch(x, y, sample_weight=sample_weight, return_dict=True)
classifier = build_text_classifier(model.backbone, num_classes=3)
logits = classifier({k: x[k] for k in ("token_ids", "segment_ids", "padding_mask")})
print(json.dumps({
    "backend": keras.backend.backend(),
    "tensor_type": type(outputs["mlm_logits"]).__module__,
    "mlm_shape": list(outputs["mlm_logits"].shape),
    "nsp_shape": list(outputs["nsp_logits"].shape),
    "classifier_shape": list(logits.shape),
    "first_loss": float(first["loss"]), "last_loss": float(last["loss"]),
}))
"""


@pytest.fixture(scope="module", autouse=True)
def torch_subprocess(request):
    """Starts the torch-backend run before this module's other tests, to overlap them."""
    wanted = any(item.name == "test_pretrainer_runs_on_the_torch_backend"
                 for item in request.session.items)
    process = None
    if wanted:  # torch is pinned by requirements-dev.lock: without it the run fails loudly
        env = dict(os.environ, KERAS_BACKEND="torch", CUDA_VISIBLE_DEVICES="")
        process = subprocess.Popen(
            [sys.executable, "-c", _TORCH_SCRIPT], cwd=REPO, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
    yield process
    if process is not None and process.poll() is None:
        process.kill()
        process.communicate()


def test_pretrainer_runs_on_the_torch_backend(torch_subprocess):
    """A tiny forward + loss + a few train steps with KERAS_BACKEND=torch, in a subprocess."""
    assert torch_subprocess is not None
    stdout, stderr = torch_subprocess.communicate(timeout=300)
    assert torch_subprocess.returncode == 0, stderr[-3000:]
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["backend"] == "torch" and report["tensor_type"].startswith("torch")
    assert report["mlm_shape"] == [8, 4, 40] and report["nsp_shape"] == [8, 2]
    assert report["classifier_shape"] == [8, 3]
    assert np.isfinite(report["first_loss"]) and report["last_loss"] < report["first_loss"]
