"""One loaded model version: its SignatureDefs, callable signatures and a completeness check.

A `Servable` is what TF Serving calls a SavedModelBundle: it answers `run(signature, inputs)`
with numpy arrays in and out, validating inputs against the SignatureDef exactly as clients
see them in the model metadata.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer ops the exported graph uses)

from serving.errors import Code, ServingError, invalid_argument
from serving.json_tensor import DT_STRING, dtype_name
from serving.saved_model_files import class_names, read_saved_model_proto

logger = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
INIT_OP_SIGNATURE = "__saved_model_init_op"


@dataclass(frozen=True)
class InputSpec:
    dtype: int
    shape: tuple[int, ...] | None  # None: unknown rank; -1: unknown dimension


def _tensor_spec(tensor_info) -> InputSpec:
    shape = tensor_info.tensor_shape
    dims = None if shape.unknown_rank else tuple(int(d.size) for d in shape.dim)
    return InputSpec(int(tensor_info.dtype), dims)


def _shape_string(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


class Servable:
    """A loaded SavedModel version. Thread-safe: concurrent `run` calls are fine."""

    def __init__(self, model_name: str, version: int, export_dir: str):
        self.model_name = model_name
        self.version = int(version)
        self.export_dir = export_dir
        saved_model = read_saved_model_proto(export_dir)
        # The SignatureDefs TF Serving reports as metadata: straight from the graph proto.
        self.signature_defs = dict(saved_model.meta_graphs[0].signature_def)
        self._loaded = tf.saved_model.load(export_dir, tags=["serve"])
        self._functions = {
            name: self._loaded.signatures[name]
            for name in self.signature_defs
            if name != INIT_OP_SIGNATURE and name in self._loaded.signatures
        }
        # For :classify on the export contract's signatures (scores = probabilities).
        self.class_names = class_names(saved_model)

    def __repr__(self) -> str:
        return f"Servable({self.model_name!r}, version={self.version}, {self.export_dir!r})"

    @property
    def signature_names(self) -> list[str]:
        return sorted(self._functions)

    def signature_def(self, signature_name: str):
        """The SignatureDef, or TF Serving's FAILED_PRECONDITION for an unknown name."""
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self._functions:
            raise ServingError(
                Code.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.'
            )
        return self.signature_defs[name]

    def input_specs(self, signature_name: str) -> dict[str, InputSpec]:
        signature = self.signature_def(signature_name)
        return {alias: _tensor_spec(info) for alias, info in sorted(signature.inputs.items())}

    def validate_inputs(self, signature_name: str, inputs: dict[str, np.ndarray]) -> None:
        """Checks names, dtypes and shapes against the SignatureDef (INVALID_ARGUMENT)."""
        signature = self.signature_def(signature_name)
        expected = sorted(signature.inputs)
        if len(inputs) != len(expected):
            raise invalid_argument(
                f"input size does not match signature: {len(inputs)}!={len(expected)} "
                f"len({{{','.join(sorted(inputs))}}}) != len({{{','.join(expected)}}}). "
                f"Sent extra: {{{','.join(sorted(set(inputs) - set(expected)))}}}. "
                f"Missing but required: {{{','.join(sorted(set(expected) - set(inputs)))}}}."
            )
        for alias, array in inputs.items():
            if alias not in signature.inputs:
                raise invalid_argument(
                    f"input tensor alias not found in signature: {alias}. Inputs expected to be "
                    f"in the set {{{', '.join(expected)}}}."
                )
            spec = _tensor_spec(signature.inputs[alias])
            if not _dtype_matches(array, spec.dtype):
                raise invalid_argument(
                    f"input '{alias}' of signature '{signature_name or DEFAULT_SIGNATURE}' "
                    f"expects {dtype_name(spec.dtype)} values, got {_array_dtype_name(array)}"
                )
            if spec.shape is not None and (
                array.ndim != len(spec.shape)
                or any(
                    want not in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True)
                )
            ):
                raise invalid_argument(
                    f"input '{alias}' of signature '{signature_name or DEFAULT_SIGNATURE}' has "
                    f"shape {_shape_string(array.shape)}, expected {_shape_string(spec.shape)} "
                    "(-1: any size)"
                )

    def run(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calls the signature on validated inputs; returns all its outputs as numpy."""
        function = self._functions[signature_name or DEFAULT_SIGNATURE]
        signature = self.signature_defs[signature_name or DEFAULT_SIGNATURE]
        feeds = {
            alias: tf.constant(array, dtype=tf.dtypes.as_dtype(signature.inputs[alias].dtype))
            for alias, array in inputs.items()
        }
        try:
            outputs = function(**feeds)
        except tf.errors.OpError as e:
            raise ServingError(Code(e.error_code), e.message) from None
        except (TypeError, ValueError) as e:
            raise invalid_argument(str(e)) from None
        return {name: tensor.numpy() for name, tensor in outputs.items()}

    def warm_up(self) -> None:
        """Runs every all-string-input signature once, so the first request does not pay for
        graph optimization. Failures are only logged: odd inputs may be legitimately rejected.
        """
        for name in self._functions:
            specs = self.input_specs(name)
            if not specs or any(
                s.dtype != DT_STRING or s.shape not in ((-1,), None) for s in specs.values()
            ):
                continue
            try:
                self.run(name, {alias: np.array([b""], dtype=object) for alias in specs})
            except Exception as e:  # noqa: BLE001  (warm-up is best effort)
                logger.warning("Warm-up of %s signature %s failed: %s", self, name, e)


def _dtype_matches(array: np.ndarray, dtype: int) -> bool:
    kind = array.dtype.kind
    if dtype == DT_STRING:
        return kind in "OSU"
    try:
        return np.dtype(tf.dtypes.as_dtype(dtype).as_numpy_dtype) == array.dtype
    except TypeError:
        return False


def _array_dtype_name(array: np.ndarray) -> str:
    return "string" if array.dtype.kind in "OSU" else str(array.dtype)
