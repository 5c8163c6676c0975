"""The protocol-neutral core behind the REST and gRPC front ends.

Implements TF Serving's Predict, Classify, Regress, GetModelMetadata and GetModelStatus
semantics (validation order, error codes and messages) on top of a `ModelManager`, routing
every model call through the batch scheduler when batching is enabled.

Classify follows TF Serving: the signature needs one input named `inputs` (serialized
tf.Examples) and outputs `classes` and/or `scores`. bertpipe's export contract instead has
`from_examples` (`examples` -> `probabilities`, `label`); such a signature is accepted too,
with `scores` = `probabilities` and `classes` = the model's class names, and it is the
default for classify requests without `signature_name` when `serving_default` is not a
classification signature. On a real TF Serving, name the export's TF-Serving-style
`classification` signature (`"signature_name": "classification"`), which works here too.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np
from google.protobuf import text_format

from serving.batching import BatchingOptions, BatchScheduler, BatchStats
from serving.errors import Code, ServingError, invalid_argument
from serving.json_tensor import DT_STRING
from serving.model_manager import ModelManager, ModelSpec
from serving.protos import serving_protos
from serving.servable import DEFAULT_SIGNATURE, PREDICT_METHOD, Servable

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
EXAMPLES_SIGNATURE = "from_examples"
SIGNATURE_DEF_FIELD = "signature_def"


@dataclasses.dataclass
class Result:
    """A model call's outcome with the servable that produced it (for the response's spec)."""

    servable: Servable
    signature_name: str
    outputs: dict[str, np.ndarray] | None = None
    classifications: list[list[tuple[str, float]]] | None = None
    regressions: list[float] | None = None


class PredictionService:
    """Serves one model (via `manager`); thread-safe."""

    def __init__(self, manager: ModelManager, batching: BatchingOptions | None = None):
        self.manager = manager
        self.stats = BatchStats()
        self.batcher = BatchScheduler(batching, self.stats) if batching is not None else None

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.stop()

    # -- model calls -----------------------------------------------------------------

    def _run(
        self, servable: Servable, signature_name: str, inputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        if self.batcher is None:
            rows = next((int(np.shape(a)[0]) for a in inputs.values() if np.ndim(a)), 1)
            self.stats.record(1, rows)
            return servable.run(signature_name, inputs)
        key = (
            id(servable),
            servable.version,
            signature_name,
            tuple((name, a.dtype.str, a.shape[1:]) for name, a in sorted(inputs.items())),
        )
        return self.batcher.submit(key, functools.partial(servable.run, signature_name), inputs)

    def predict(
        self,
        spec: ModelSpec,
        inputs: dict[str, np.ndarray],
        output_filter: Sequence[str] = (),
        servable: Servable | None = None,
    ) -> Result:
        """Predict. `servable` may be passed when the caller already resolved it (REST)."""
        servable = servable or self.manager.servable_for(spec)
        signature_name = spec.signature_name or DEFAULT_SIGNATURE
        signature = servable.signature_def(signature_name)
        if signature.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
            raise ServingError(
                Code.INTERNAL,
                "Expected prediction signature method_name to be one of "
                f"{{{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: {signature.method_name}",
            )
        servable.validate_inputs(signature_name, inputs)
        seen = set()
        for alias in output_filter:
            if alias not in signature.outputs:
                raise invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs expected to be "
                    f"in the set {{{', '.join(sorted(signature.outputs))}}}."
                )
            if alias in seen:
                raise invalid_argument(f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        outputs = self._run(servable, signature_name, inputs)
        if output_filter:
            outputs = {alias: outputs[alias] for alias in output_filter}
        return Result(servable, signature_name, outputs=outputs)

    def _examples_signature(self, servable: Servable, requested: str, method: str):
        """(signature name, input alias) for classify/regress, with TF Serving's checks."""
        name = requested
        if not name:
            name = DEFAULT_SIGNATURE
            default = servable.signature_defs.get(DEFAULT_SIGNATURE)
            if (
                default is None or "inputs" not in default.inputs
            ) and EXAMPLES_SIGNATURE in servable.signature_names:
                name = EXAMPLES_SIGNATURE
        signature = servable.signature_def(name)
        if len(signature.inputs) != 1:
            raise invalid_argument("Expected one input Tensor.")
        alias = next(iter(signature.inputs))
        contract = (
            method == "classify"
            and alias == "examples"
            and signature.inputs[alias].dtype == DT_STRING
            and "probabilities" in signature.outputs
        )
        if alias != "inputs" and not contract:
            raise invalid_argument(
                f"No {'classification' if method == 'classify' else 'regression'} inputs found in "
                f"SignatureDef: {text_format.MessageToString(signature, as_one_line=True)}"
            )
        return name, alias, signature, contract

    def classify(self, spec: ModelSpec, serialized_examples: list[bytes]) -> Result:
        servable = self.manager.servable_for(spec)
        name, alias, signature, contract = self._examples_signature(
            servable, spec.signature_name, "classify"
        )
        has_classes, has_scores = "classes" in signature.outputs, "scores" in signature.outputs
        if not contract:
            if len(signature.outputs) not in (1, 2):
                raise invalid_argument(
                    f"Expected one or two output Tensors, found {len(signature.outputs)}"
                )
            if not (has_classes or has_scores):
                raise invalid_argument(
                    'Expected classification signature outputs to contain at least one of "classes" '
                    f'or "scores". Signature was: {text_format.MessageToString(signature, as_one_line=True)}'
                )
        examples = np.empty(len(serialized_examples), dtype=object)
        examples[:] = list(serialized_examples)
        outputs = self._run(servable, name, {alias: examples})
        num_examples = len(serialized_examples)
        if contract:
            scores = np.asarray(outputs["probabilities"], dtype=np.float32)
            names = servable.class_names or [""] * scores.shape[-1]
            classes = np.array([[n.encode() for n in names]] * num_examples, dtype=object)
        else:
            scores = np.asarray(outputs["scores"], dtype=np.float32) if has_scores else None
            classes = outputs.get("classes") if has_classes else None
        for tensor, what in ((scores, "scores"), (classes, "classes")):
            if tensor is not None and (np.ndim(tensor) != 2 or np.shape(tensor)[0] != num_examples):
                raise invalid_argument(
                    f"Expected {what} output shape [{num_examples}, num_classes], got "
                    f"{list(np.shape(tensor))}"
                )
        width = (scores if scores is not None else classes).shape[1]
        rows = []
        for i in range(num_examples):
            rows.append(
                [
                    (
                        _to_text(classes[i][j]) if classes is not None else "",
                        float(scores[i][j]) if scores is not None else 0.0,
                    )
                    for j in range(width)
                ]
            )
        return Result(servable, name, classifications=rows)

    def regress(self, spec: ModelSpec, serialized_examples: list[bytes]) -> Result:
        servable = self.manager.servable_for(spec)
        name, alias, signature, _ = self._examples_signature(
            servable, spec.signature_name, "regress"
        )
        if len(signature.outputs) != 1:
            raise invalid_argument("Expected one output Tensor.")
        if "outputs" not in signature.outputs:
            raise invalid_argument(
                "No regression outputs found in SignatureDef: "
                + text_format.MessageToString(signature, as_one_line=True)
            )
        examples = np.empty(len(serialized_examples), dtype=object)
        examples[:] = list(serialized_examples)
        values = np.asarray(
            self._run(servable, name, {alias: examples})["outputs"], dtype=np.float32
        )
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1 or values.shape[0] != len(serialized_examples):
            raise invalid_argument(
                f"Expected output Tensor shape to be [{len(serialized_examples)}] or "
                f"[{len(serialized_examples)}, 1] but got {list(values.shape)}"
            )
        return Result(servable, name, regressions=[float(v) for v in values])

    # -- model information -------------------------------------------------------------

    def model_status(self, spec: ModelSpec):
        """A GetModelStatusResponse proto."""
        protos = serving_protos()
        response = protos.get_model_status_pb2.GetModelStatusResponse()
        for status in self.manager.statuses(spec):
            entry = response.model_version_status.add()
            entry.version = status.version
            entry.state = status.state
            entry.status.SetInParent()  # TF Serving always reports the (possibly OK) status
            entry.status.error_code = int(status.error_code)
            entry.status.error_message = status.error_message
        return response

    def model_metadata(
        self, spec: ModelSpec, metadata_fields: Sequence[str] = (SIGNATURE_DEF_FIELD,)
    ):
        """A GetModelMetadataResponse proto (only the `signature_def` field exists)."""
        if not metadata_fields:
            raise invalid_argument(
                "GetModelMetadataRequest must specify at least one metadata_field"
            )
        for field in metadata_fields:
            if field != SIGNATURE_DEF_FIELD:
                raise invalid_argument(f"Metadata field {field} is not supported")
        servable = self.manager.servable_for(spec)
        protos = serving_protos()
        signature_map = protos.get_model_metadata_pb2.SignatureDefMap()
        for name, signature in servable.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(signature)
        response = protos.get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.model_name
        response.model_spec.version.value = servable.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response


def _to_text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
