"""The protocol-neutral core behind the REST and gRPC front ends.

Implements TF Serving's Predict, Classify, Regress, MultiInference, GetModelMetadata and GetModelStatus
semantics (validation order, error codes and messages) on top of a `ServerCore`, routing
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
from collections.abc import Callable, Sequence

import numpy as np
from google.protobuf import text_format

from serving.batching import BatchingOptions, BatchScheduler, BatchStats
from serving.errors import Code, ServingError, invalid_argument
from serving.json_tensor import DT_STRING
from serving.model_manager import ModelSpec, ServerCore
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
    """Serves the models of `manager` (a `ServerCore`); thread-safe."""

    def __init__(self, manager: ServerCore, batching: BatchingOptions | None = None):
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

    def _classification_signature(self, servable: Servable, requested: str):
        """(name, alias, signature, contract) with classifier.cc's PreProcessClassification
        checks."""
        name, alias, signature, contract = self._examples_signature(
            servable, requested, "classify"
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
        return name, alias, signature, contract

    @staticmethod
    def _classifications(
        servable: Servable, signature, contract: bool, outputs: dict, num_examples: int
    ) -> list[list[tuple[str, float]]]:
        """The model's outputs as ClassificationResult rows (PostProcessClassificationResult)."""
        if contract:
            scores = np.asarray(outputs["probabilities"], dtype=np.float32)
            names = servable.class_names or [""] * scores.shape[-1]
            classes = np.array([[n.encode() for n in names]] * num_examples, dtype=object)
        else:
            has_scores = "scores" in signature.outputs
            scores = np.asarray(outputs["scores"], dtype=np.float32) if has_scores else None
            classes = outputs.get("classes") if "classes" in signature.outputs else None
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
        return rows

    def classify(
        self, spec: ModelSpec, serialized_examples: list[bytes] | Callable[[], list[bytes]]
    ) -> Result:
        """`serialized_examples` may be a function, called after the servable and signature
        checks (so that their errors come first, as in TF Serving)."""
        servable = self.manager.servable_for(spec)
        name, alias, signature, contract = self._classification_signature(
            servable, spec.signature_name
        )
        if callable(serialized_examples):
            serialized_examples = serialized_examples()
        outputs = self._run(servable, name, {alias: _examples_array(serialized_examples)})
        rows = self._classifications(
            servable, signature, contract, outputs, len(serialized_examples)
        )
        return Result(servable, name, classifications=rows)

    def _regression_signature(self, servable: Servable, requested: str):
        """(name, alias) with regressor.cc's PreProcessRegression checks."""
        name, alias, signature, _ = self._examples_signature(servable, requested, "regress")
        if len(signature.outputs) != 1:
            raise invalid_argument("Expected one output Tensor.")
        if "outputs" not in signature.outputs:
            raise invalid_argument(
                "No regression outputs found in SignatureDef: "
                + text_format.MessageToString(signature, as_one_line=True)
            )
        return name, alias

    @staticmethod
    def _regressions(outputs: dict, num_examples: int) -> list[float]:
        values = np.asarray(outputs["outputs"], dtype=np.float32)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1 or values.shape[0] != num_examples:
            raise invalid_argument(
                f"Expected output Tensor shape to be [{num_examples}] or "
                f"[{num_examples}, 1] but got {list(values.shape)}"
            )
        return [float(v) for v in values]

    def regress(
        self, spec: ModelSpec, serialized_examples: list[bytes] | Callable[[], list[bytes]]
    ) -> Result:
        servable = self.manager.servable_for(spec)
        name, alias = self._regression_signature(servable, spec.signature_name)
        if callable(serialized_examples):
            serialized_examples = serialized_examples()
        outputs = self._run(servable, name, {alias: _examples_array(serialized_examples)})
        return Result(
            servable, name, regressions=self._regressions(outputs, len(serialized_examples))
        )

    def multi_inference(
        self,
        tasks: Sequence[tuple[ModelSpec, str]],
        serialized_examples: Callable[[], list[bytes]],
    ) -> list[Result]:
        """MultiInference: classification and regression tasks (signature, method name)
        over the same tf.Examples, in TF Serving's order of checks
        (multi_inference_helper.cc, then multi_inference.cc): the servable comes from the
        first task's ModelSpec; every task must name that model, a signature at most once,
        a signature that exists and the classify or regress method; only then is the input
        read ("Input is empty"). `serialized_examples` is called once, after those checks.
        Each result's `signature_name` is the task's as given (TF Serving echoes it)."""
        first = tasks[0][0] if tasks else ModelSpec("")
        servable = self.manager.servable_for(first)
        plans = []
        seen: set[str] = set()
        for spec, method in tasks:
            if not spec.name:
                raise invalid_argument("Found ModelSpec with an empty model name.")
            if spec.name != first.name:
                raise invalid_argument(
                    "All ModelSpecs in a MultiInferenceRequest must access the same model name."
                )
            name = spec.signature_name or DEFAULT_SIGNATURE
            if name in seen:
                raise invalid_argument(f"Duplicate evaluation of signature: {name}")
            seen.add(name)
            if name not in servable.signature_names:
                raise invalid_argument(f"Requested signature not found in model graph: {name}")
            if method == CLASSIFY_METHOD:
                plans.append((spec, method, self._classification_signature(servable, name)))
            elif method == REGRESS_METHOD:
                plans.append((spec, method, self._regression_signature(servable, name)))
            else:
                raise ServingError(
                    Code.UNIMPLEMENTED, f"Unsupported signature method_name: {method}"
                )
        examples = serialized_examples()
        results = []
        for spec, method, plan in plans:
            if method == CLASSIFY_METHOD:
                name, alias, signature, contract = plan
                outputs = self._run(servable, name, {alias: _examples_array(examples)})
                rows = self._classifications(servable, signature, contract, outputs, len(examples))
                results.append(Result(servable, spec.signature_name, classifications=rows))
            else:
                name, alias = plan
                outputs = self._run(servable, name, {alias: _examples_array(examples)})
                values = self._regressions(outputs, len(examples))
                results.append(Result(servable, spec.signature_name, regressions=values))
        return results

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


def _examples_array(serialized_examples: list[bytes]) -> np.ndarray:
    examples = np.empty(len(serialized_examples), dtype=object)
    examples[:] = list(serialized_examples)
    return examples


def _to_text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
