"""What a pipeline run produced, read back from its ML Metadata store."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class RunSummary:
    pushed: bool
    blessed: bool
    version: str | None
    destination: str | None
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    failures: list[str]  # why the candidate was not blessed
    cached_nodes: list[str]
    already_served: bool = False  # identical to the newest version: nothing new pushed
    scored_examples: str | None = None  # BulkInferrer output, when scoring ran

    def render(self, model_name: str) -> str:
        lines = []
        for name, value in sorted(self.metrics.items()):
            baseline = self.baseline_metrics.get(name)
            versus = f"   (blessed baseline: {baseline:.4f})" if baseline is not None else ""
            lines.append(f"  {name:<28} {value:.4f}{versus}")
        metrics = "\n".join(lines) or "  (none)"
        if self.pushed and self.already_served:
            head = (f"UNCHANGED: model {model_name!r} is identical to version {self.version}, "
                    f"already at {self.destination}; nothing new pushed")
        elif self.pushed:
            head = f"PUSHED model {model_name!r} version {self.version} to {self.destination}"
        else:
            reasons = "\n".join(f"  - {f}" for f in self.failures) or "  - (no reason recorded)"
            head = f"NOT PUSHED: the candidate was not blessed by the Evaluator:\n{reasons}"
        cached = f"\nre-used from cache: {', '.join(self.cached_nodes)}" if self.cached_nodes else ""
        if self.scored_examples:
            cached += f"\nscored unlabelled rows (tf.Examples + predictions): {self.scored_examples}"
        return (
            f"{head}\nblessed: {'yes' if self.blessed else 'no'}\n"
            f"evaluation metrics (eval split):\n{metrics}{cached}"
        )


def _store(metadata_path: str):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(connection)


def _latest_execution(store, pipeline_name: str, node_id: str):
    context = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node_id}")
    if context is None:
        return None
    executions = store.get_executions_by_context(context.id)
    return max(executions, key=lambda e: e.id) if executions else None


def _outputs(store, execution) -> dict[str, Any]:
    from ml_metadata.proto import metadata_store_pb2

    event_types = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    events = [e for e in store.get_events_by_execution_ids([execution.id])
              if e.type in event_types]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    return {e.path.steps[0].key: artifacts[e.artifact_id] for e in events if e.path.steps}


def _node_ids(store, pipeline_name: str) -> list[str]:
    """The pipeline's component ids, in the order they were first run."""
    prefix = f"{pipeline_name}."
    contexts = [c for c in store.get_contexts_by_type("node") if c.name.startswith(prefix)]
    return [c.name[len(prefix):] for c in sorted(contexts, key=lambda c: c.id)]


def summarize_run(config) -> RunSummary:
    """Reads the latest Evaluator and Pusher executions of a fine-tuning pipeline."""
    from ml_metadata.proto import metadata_store_pb2

    from pipeline.tasks import get_task

    pipeline_name = config.pipeline.name
    store = _store(config.metadata_path)
    cached = []
    for node in _node_ids(store, pipeline_name):
        execution = _latest_execution(store, pipeline_name, node)
        if execution and execution.last_known_state == metadata_store_pb2.Execution.CACHED:
            cached.append(node)

    evaluator = _latest_execution(store, pipeline_name, "Evaluator")
    metrics, baseline, failures, blessed = {}, {}, [], False
    if evaluator is not None:
        outputs = _outputs(store, evaluator)
        evaluation, blessing = outputs.get("evaluation"), outputs.get("blessing")
        if blessing is not None:
            blessed = blessing.custom_properties["blessed"].int_value == 1
        if evaluation is not None:
            metrics, baseline, failures = get_task(config).read_evaluation(evaluation.uri)
    pusher = _latest_execution(store, pipeline_name, "AtomicPusher")
    pushed, version, destination, already_served = False, None, None, False
    if pusher is not None:
        pushed_model = _outputs(store, pusher).get("pushed_model")
        if pushed_model is not None:
            props = pushed_model.custom_properties
            pushed = props["pushed"].int_value == 1 if "pushed" in props else False
            if pushed:
                version = props["pushed_version"].string_value
                destination = props["pushed_destination"].string_value
                already_served = props["already_served"].int_value == 1 \
                    if "already_served" in props else False
    scored = None
    bulk_inferrer = _latest_execution(store, pipeline_name, "BulkInferrer")
    if bulk_inferrer is not None and blessed:
        output = _outputs(store, bulk_inferrer).get("output_examples")
        scored = output.uri if output is not None else None
    return RunSummary(pushed, blessed, version, destination, metrics, baseline, failures, cached,
                      already_served, scored)


def _pushed_model(store, pipeline_name: str):
    pusher = _latest_execution(store, pipeline_name, "AtomicPusher")
    if pusher is None:
        return None
    pushed_model = _outputs(store, pusher).get("pushed_model")
    if pushed_model is None or pushed_model.custom_properties["pushed"].int_value != 1:
        return None
    props = pushed_model.custom_properties
    return props["pushed_version"].string_value, props["pushed_destination"].string_value


def summarize_pretraining(pipeline_name: str, metadata_path: str) -> tuple[str, bool]:
    """(the report: where the encoder checkpoint went, its metrics before and after
    pretraining; whether it was pushed)."""
    import json
    import os

    pushed = _pushed_model(_store(metadata_path), pipeline_name)
    if pushed is None:
        return "NOT PUSHED: no encoder checkpoint was pushed", False
    version, destination = pushed
    with open(os.path.join(destination, "pretraining_metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    rows = [("masked-LM accuracy", "mlm_logits_accuracy"),
            ("next-sentence accuracy", "nsp_logits_accuracy"), ("loss", "loss")]
    lines = [f"PUSHED encoder checkpoint version {version} to {destination}",
             f"optimizer steps: {metrics['optimizer_steps']}"
             + (f" (resumed from step {metrics['resumed_from_step']})"
                if metrics["resumed_from_step"] else "")]
    for label, key in rows:
        before, after = metrics["initial"].get(key), metrics["final"].get(key)
        if before is not None and after is not None:
            lines.append(f"  {label:<24} before {before:.4f}   after {after:.4f}")
    lines.append(f"fine-tune from it with model.checkpoint: {os.path.dirname(destination)}")
    return "\n".join(lines), True
