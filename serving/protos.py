"""TF Serving's API protos (tensorflow-serving-api) without paying for `import tensorflow`.

The generated modules in `tensorflow_serving.apis` import their TensorFlow dependencies as
`from tensorflow.core.framework import tensor_pb2`, and importing *anything* under the
`tensorflow` package first runs `tensorflow/__init__.py`, which loads the whole runtime
(about 10 s here). The protos themselves are plain generated Python, so a client that only
builds `PredictRequest`s does not need the runtime at all.

`serving_protos()` imports them with a placeholder `tensorflow` package object that only
carries the package's search path: Python then finds `tensorflow/core/...` submodules on disk
without executing `tensorflow/__init__.py`. The placeholder is removed right after, so a later
`import tensorflow` in the same process runs the real initialisation and reuses the very same
proto modules (the descriptors are registered once). When TensorFlow is already imported
(e.g. in the server), this is a plain import.

>>> protos = serving_protos()
>>> request = protos.predict_pb2.PredictRequest()
>>> request.model_spec.name = "sst2"
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types

_MODULES = {
    "predict_pb2": "tensorflow_serving.apis.predict_pb2",
    "classification_pb2": "tensorflow_serving.apis.classification_pb2",
    "regression_pb2": "tensorflow_serving.apis.regression_pb2",
    "prediction_log_pb2": "tensorflow_serving.apis.prediction_log_pb2",
    "input_pb2": "tensorflow_serving.apis.input_pb2",
    "model_pb2": "tensorflow_serving.apis.model_pb2",
    "get_model_metadata_pb2": "tensorflow_serving.apis.get_model_metadata_pb2",
    "get_model_status_pb2": "tensorflow_serving.apis.get_model_status_pb2",
    "prediction_service_pb2_grpc": "tensorflow_serving.apis.prediction_service_pb2_grpc",
    "model_service_pb2_grpc": "tensorflow_serving.apis.model_service_pb2_grpc",
    "tensor_pb2": "tensorflow.core.framework.tensor_pb2",
    "tensor_shape_pb2": "tensorflow.core.framework.tensor_shape_pb2",
    "types_pb2": "tensorflow.core.framework.types_pb2",
    "example_pb2": "tensorflow.core.example.example_pb2",
    "feature_pb2": "tensorflow.core.example.feature_pb2",
    "meta_graph_pb2": "tensorflow.core.protobuf.meta_graph_pb2",
    "saved_model_pb2": "tensorflow.core.protobuf.saved_model_pb2",
    "error_codes_pb2": "tensorflow.core.protobuf.error_codes_pb2",
}

_lock = threading.Lock()
_cached: types.SimpleNamespace | None = None


def _import_all() -> types.SimpleNamespace:
    return types.SimpleNamespace(
        **{alias: importlib.import_module(module) for alias, module in _MODULES.items()}
    )


def serving_protos() -> types.SimpleNamespace:
    """Returns the proto modules as attributes (`predict_pb2`, `tensor_pb2`, ...)."""
    global _cached
    with _lock:
        if _cached is not None:
            return _cached
        if "tensorflow" in sys.modules:
            _cached = _import_all()
            return _cached
        spec = importlib.util.find_spec("tensorflow")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("the `tensorflow` package (for its proto modules) is not installed")
        placeholder = types.ModuleType("tensorflow")
        placeholder.__path__ = list(spec.submodule_search_locations)
        sys.modules["tensorflow"] = placeholder
        try:
            _cached = _import_all()
        finally:
            # Only remove our placeholder: a thread that imported the real TF meanwhile wins.
            if sys.modules.get("tensorflow") is placeholder:
                del sys.modules["tensorflow"]
        return _cached
