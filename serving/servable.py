"""One loaded model version: its SignatureDefs, callable signatures and a completeness check.

A `Servable` is what TF Serving calls a SavedModelBundle, and it is loaded the same way: the
`serve` MetaGraph is imported into its own graph and restored into a TF1 session
(`tf.compat.v1.saved_model.loader.load`, TF Serving's `LoadSavedModel`), and a request runs
the signature's tensors by name with feeds (`Session::Run`). So any SavedModel TF Serving
loads is served, TF1 models with ref variables and ParseExample included, every signature
answers (not only those with a TF2 concrete function), and TensorFlow itself decides whether
an input's dtype and shape fit the graph, with TensorFlow's messages ("Expects arg[0] to be
float but string is provided"): a `[-1, 1]` signature input fed `[1.0, 2.0, 5.0]` runs, as
TF Serving runs it, because a fed placeholder's declared shape is not enforced.

bertpipe's own TF2 exports (tf.Module signatures calling a Keras model, tensorflow-text ops)
load the same way; a session call takes about 0.75 of the time of calling the restored
concrete function eagerly (`bench/session_vs_eager.py`, BUILD.md), so there is one path for
every model.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer ops the exported graph uses)

from serving.batching import concatenate_parts
from serving.errors import Code, ServingError, invalid_argument
from serving.json_tensor import DT_STRING
from serving.saved_model_files import class_names, read_saved_model_proto

logger = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
INIT_OP_SIGNATURE = "__saved_model_init_op"
SERVE_TAG = "serve"


@dataclass(frozen=True)
class InputSpec:
    dtype: int
    shape: tuple[int, ...] | None  # None: unknown rank; -1: unknown dimension


def _tensor_spec(tensor_info) -> InputSpec:
    shape = tensor_info.tensor_shape
    dims = None if shape.unknown_rank else tuple(int(d.size) for d in shape.dim)
    # A TF1 graph may name a ref tensor (DT_FLOAT_REF = 101): its value has the base dtype.
    dtype = int(tensor_info.dtype)
    return InputSpec(dtype - 100 if dtype > 100 else dtype, dims)


@dataclass(frozen=True)
class _Signature:
    """A signature's tensors resolved in the session's graph (sorted by alias)."""

    input_aliases: tuple[str, ...]
    inputs: tuple  # TF_Output of each input, for the session's C API
    output_aliases: tuple[str, ...]
    outputs: tuple


class Servable:
    """A loaded SavedModel version. Thread-safe: concurrent `run` calls are fine (a TF
    session runs concurrent steps)."""

    # Rows per session run before a request is split (see `run`): BERT-base activations for
    # 256 rows of 128 tokens take a few hundred MB.
    MAX_ROWS_PER_RUN = 256

    def __init__(
        self,
        model_name: str,
        version: int,
        export_dir: str,
        max_rows_per_run: int = MAX_ROWS_PER_RUN,
    ):
        if max_rows_per_run < 1:
            raise ValueError(f"max_rows_per_run must be >= 1, got {max_rows_per_run}")
        self.max_rows_per_run = max_rows_per_run
        self.model_name = model_name
        self.version = int(version)
        self.export_dir = export_dir
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph)
        try:
            with self._graph.as_default():
                meta_graph = tf.compat.v1.saved_model.loader.load(
                    self._session, [SERVE_TAG], export_dir
                )
        except Exception:
            self._session.close()
            raise
        # The SignatureDefs TF Serving reports as metadata: those of the loaded MetaGraph.
        self.signature_defs = dict(meta_graph.signature_def)
        self._signatures = {
            name: self._resolve(signature)
            for name, signature in self.signature_defs.items()
            if name != INIT_OP_SIGNATURE
        }
        self._closed = threading.Event()
        # For :classify on the export contract's signatures (scores = probabilities).
        self.class_names = class_names(read_saved_model_proto(export_dir))

    def _resolve(self, signature) -> _Signature:
        def outputs_of(infos) -> tuple[tuple[str, ...], tuple]:
            aliases = tuple(sorted(infos))
            tensors = tuple(
                self._graph.get_tensor_by_name(infos[alias].name)._as_tf_output()
                for alias in aliases
            )
            return aliases, tensors

        return _Signature(*outputs_of(signature.inputs), *outputs_of(signature.outputs))

    def close(self) -> None:
        """Releases the session (its variables and kernels); `run` fails afterwards."""
        if not self._closed.is_set():
            self._closed.set()
            self._session.close()

    def __repr__(self) -> str:
        return f"Servable({self.model_name!r}, version={self.version}, {self.export_dir!r})"

    @property
    def signature_names(self) -> list[str]:
        return sorted(self._signatures)

    def signature_def(self, signature_name: str):
        """The SignatureDef, or TF Serving's FAILED_PRECONDITION for an unknown name."""
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self._signatures:
            raise ServingError(
                Code.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.'
            )
        return self.signature_defs[name]

    def input_specs(self, signature_name: str) -> dict[str, InputSpec]:
        signature = self.signature_def(signature_name)
        return {alias: _tensor_spec(info) for alias, info in sorted(signature.inputs.items())}

    def validate_inputs(self, signature_name: str, inputs: dict[str, np.ndarray]) -> None:
        """TF Serving's checks before `Session::Run` (predict_util.cc: input names only).

        Dtypes and shapes are TensorFlow's to judge when the graph runs, as in TF Serving.
        """
        signature = self.signature_def(signature_name)
        expected = sorted(signature.inputs)
        if len(inputs) != len(expected):
            raise invalid_argument(
                f"input size does not match signature: {len(inputs)}!={len(expected)} "
                f"len({{{','.join(sorted(inputs))}}}) != len({{{','.join(expected)}}}). "
                f"Sent extra: {{{','.join(sorted(set(inputs) - set(expected)))}}}. "
                f"Missing but required: {{{','.join(sorted(set(expected) - set(inputs)))}}}."
            )
        for alias in inputs:
            if alias not in signature.inputs:
                raise invalid_argument(
                    f"input tensor alias not found in signature: {alias}. Inputs expected to be "
                    f"in the set {{{', '.join(expected)}}}."
                )

    def run(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the signature's output tensors with `inputs` fed by alias; all outputs as numpy.

        TensorFlow's errors keep their canonical code and message (TF Serving returns the
        session's status as it is). A request with more than `max_rows_per_run` rows, on a
        signature whose every input declares a batch dimension (`[-1, ...]`), runs as several
        session runs of at most that many rows whose outputs are joined: the answer is the
        same for row-wise models, and one request of 200,000 rows cannot make the server
        allocate every activation at once (TF Serving would run it as one step).
        """
        name = signature_name or DEFAULT_SIGNATURE
        rows = self._batch_rows(name, inputs)
        if rows is None or rows <= self.max_rows_per_run:
            return self._run_once(name, inputs)
        parts = []
        for start in range(0, rows, self.max_rows_per_run):
            chunk = {
                alias: array[start : start + self.max_rows_per_run]
                for alias, array in inputs.items()
            }
            outputs = self._run_once(name, chunk)
            chunk_rows = min(self.max_rows_per_run, rows - start)
            for alias, array in outputs.items():
                if np.ndim(array) == 0 or np.shape(array)[0] != chunk_rows:
                    raise ServingError(
                        Code.FAILED_PRECONDITION,
                        f"Output {alias!r} of signature {name!r} is not batched along dim 0 "
                        f"(shape {list(np.shape(array))} for {chunk_rows} input rows), so a "
                        f"request of {rows} rows cannot be split; send at most "
                        f"{self.max_rows_per_run} rows per request",
                    )
            parts.append(outputs)
        return {alias: concatenate_parts([part[alias] for part in parts]) for alias in parts[0]}

    def _batch_rows(self, name: str, inputs: dict[str, np.ndarray]) -> int | None:
        """Rows along dim 0 when every input is batched as its signature declares, else None."""
        signature = self.signature_defs[name]
        sizes = set()
        for alias, array in inputs.items():
            spec = _tensor_spec(signature.inputs[alias]) if alias in signature.inputs else None
            if spec is None or not spec.shape or spec.shape[0] != -1 or np.ndim(array) < 1:
                return None
            sizes.add(int(np.shape(array)[0]))
        return sizes.pop() if len(sizes) == 1 else None

    def _run_once(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        signature = self._signatures[name]
        feeds = {}
        for alias, tensor in zip(signature.input_aliases, signature.inputs, strict=True):
            array = np.asarray(inputs[alias])
            if array.dtype.kind == "U":  # numpy text -> the bytes a DT_STRING tensor holds
                array = np.char.encode(array, "utf-8").astype(object)
            feeds[tensor] = array
        try:
            values = self._session._call_tf_sessionrun(  # noqa: SLF001
                None, feeds, list(signature.outputs), [], None
            )
        except tf.errors.OpError as e:
            raise ServingError(Code(e.error_code), e.message) from None
        except (TypeError, ValueError) as e:  # a value numpy/TF cannot turn into a tensor
            raise invalid_argument(str(e)) from None
        except RuntimeError as e:  # the session was closed (version unloaded mid-request)
            raise ServingError(Code.UNAVAILABLE, f"Servable {self} is unloaded: {e}") from None
        return {
            alias: np.asarray(value)
            for alias, value in zip(signature.output_aliases, values, strict=True)
        }

    def warm_up(self, iterations: int = 1) -> int:
        """Replays the SavedModel's warm-up requests (`serving.warmup`) `iterations` times, as
        TF Serving does before a version is available; a failing one raises, so the load
        fails. Without a warm-up file, runs every signature whose inputs are all string
        vectors ([-1]: bertpipe's exports) once with "", so the first request does not pay
        for graph optimization (those failures are only logged: odd inputs may be
        legitimately rejected). Returns the warm-up requests replayed.
        """
        from serving.warmup import read_warmup_requests, replay

        logs = read_warmup_requests(self.export_dir)
        if logs:
            runs = replay(self, logs, iterations)
            logger.info("%s: replayed %d warm-up requests", self, runs)
            return runs
        for name in self._signatures:
            specs = self.input_specs(name)
            if not specs or any(s.dtype != DT_STRING or s.shape != (-1,) for s in specs.values()):
                continue
            try:
                self.run(name, {alias: np.array([b""], dtype=object) for alias in specs})
            except Exception as e:  # noqa: BLE001  (warm-up is best effort)
                logger.warning("Warm-up of %s signature %s failed: %s", self, name, e)
        return 0
