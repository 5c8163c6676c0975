"""A pipeline's run history, read from its ML Metadata store (`bertpipe runs`), and
rollbacks of the served model recorded there (`bertpipe rollback`).

TFX records every run of a pipeline as a `pipeline_run` context holding the executions of
that run (each also in its component's `node` context; TFX's Airflow runner: a `run` context,
the component in each execution's properties). A run's row is assembled from them:
when it started, which spans it read (the Examples artifacts Transform read, or ExampleGen's
when Transform did not run), how many rows ingestion read, kept and quarantined, the
Evaluator's metrics, whether the candidate was blessed, and what the pusher did. A rollback
is recorded as an execution of type `bertpipe.Rollback` in a `pipeline_run` context of its
own (`rollback-<time>`), so it shows in the same history.

Nothing here imports TFX; reading a text-classification run's metrics imports TFMA.

Example:

>>> from pipeline.config import load_config  # doctest: +SKIP
>>> for run in run_history(load_config("configs/demo_sst2.yaml")):  # doctest: +SKIP
...     print(run.started_text, run.outcome, run.version)
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
from typing import Any

from components.atomic_pusher.push import newest_version, push_atomically
from components.quarantine import (
    QUARANTINE_FILE_PROPERTY,
    ROWS_KEPT_PROPERTY,
    ROWS_QUARANTINED_PROPERTY,
    ROWS_READ_PROPERTY,
    SPANS_READ_PROPERTY,
)
from pipeline.run_folder import report_path

ROLLBACK_EXECUTION_TYPE = "bertpipe.Rollback"
ROLLBACK_RUN_PREFIX = "rollback-"
# Custom properties ingestion sets on its Examples artifact.
ROW_COUNT_PROPERTIES = (ROWS_READ_PROPERTY, ROWS_KEPT_PROPERTY, ROWS_QUARANTINED_PROPERTY)

PUSHED, UNCHANGED, NOT_BLESSED, FAILED, RUNNING, ROLLED_BACK = (
    "PUSHED", "UNCHANGED", "NOT BLESSED", "FAILED", "INCOMPLETE", "ROLLED BACK")


@dataclasses.dataclass
class RunRecord:
    run_id: str
    started: float  # Unix seconds
    outcome: str  # one of PUSHED ... ROLLED_BACK
    version: str | None = None  # the served version this run pushed (or rolled back to)
    spans: list[int] = dataclasses.field(default_factory=list)
    rows: dict[str, int] = dataclasses.field(default_factory=dict)
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    blessed: bool | None = None
    warm_start: str | None = None  # "checkpoint" or "latest_blessed"
    warm_start_note: str | None = None  # why it fell back to the checkpoint, when it did
    quarantine_file: str | None = None  # the ingested span's bad rows, when there were any
    detail: str = ""  # the failed component, or what a rollback did
    report: str | None = None  # the run's HTML report (`bertpipe run` writes it), if there
    cached: list[str] = dataclasses.field(default_factory=list)

    @property
    def started_text(self) -> str:
        return datetime.datetime.fromtimestamp(self.started, datetime.UTC).strftime(
            "%Y-%m-%d %H:%M:%S")


def open_store(metadata_path: str, writable: bool = False):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    if not writable and not os.path.exists(metadata_path):
        raise FileNotFoundError(f"no ML Metadata store at {metadata_path}: the pipeline has "
                                f"not run yet")
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE if writable
        else metadata_store_pb2.SqliteMetadataSourceConfig.READONLY)
    return metadata_store.MetadataStore(connection)


def events_of_executions(store, execution_ids: list[int], types: tuple) -> dict[int, list]:
    """The MLMD events of `types` (e.g. `Event.OUTPUT`) of each execution, by execution id."""
    by_execution: dict[int, list] = {}
    for event in store.get_events_by_execution_ids(execution_ids):
        if event.type in types:
            by_execution.setdefault(event.execution_id, []).append(event)
    return by_execution


def _spans_read(artifact) -> list[int]:
    """An Examples artifact's spans: the `spans_read` ExampleGen sets when it reads several
    (`components.quarantine.read_newest_spans`), else its `span`."""
    several = custom_property(artifact, SPANS_READ_PROPERTY)
    if several:
        return [int(span) for span in str(several).split(",")]
    return [int(custom_property(artifact, "span") or 0)]


def custom_property(artifact_or_execution, name: str) -> Any:
    """An MLMD artifact's or execution's custom property as a Python value; None if unset."""
    if name not in artifact_or_execution.custom_properties:
        return None
    value = artifact_or_execution.custom_properties[name]
    return getattr(value, value.WhichOneof("value"))


def run_history(config, read_metrics: bool = True) -> list[RunRecord]:
    """Every run of `config`'s pipeline recorded in its ML Metadata store, oldest first."""
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    store = open_store(config.metadata_path)
    pipeline_name = config.pipeline.name
    node_of: dict[int, str] = {}  # execution id -> component id
    prefix = f"{pipeline_name}."
    for context in store.get_contexts_by_type("node"):
        if context.name.startswith(prefix):
            for execution in store.get_executions_by_context(context.id):
                node_of[execution.id] = context.name[len(prefix):]

    records = []
    for run in store.get_contexts_by_type("pipeline_run"):
        executions = store.get_executions_by_context(run.id)
        if run.name.startswith(ROLLBACK_RUN_PREFIX):
            records.extend(_rollback_record(run, e) for e in executions
                           if custom_property(e, "pipeline_name") == pipeline_name)
            continue
        executions = [e for e in executions if e.id in node_of]
        if executions:
            records.append(_run_record(store, config, run, executions, node_of, read_metrics,
                                       mlmd))
    # TFX's Airflow runner records a run as a `run` context named `<pipeline>.<run id>`, and
    # the component in each execution's `component_id` property.
    for run in store.get_contexts_by_type("run"):
        if not run.name.startswith(prefix):
            continue
        executions = store.get_executions_by_context(run.id)
        for execution in executions:
            node_of[execution.id] = execution.properties["component_id"].string_value
        if executions:
            records.append(_run_record(store, config, run, executions, node_of, read_metrics,
                                       mlmd))
    for record in records:
        report = report_path(config.pipeline.root, record.run_id)
        if os.path.exists(report):
            record.report = report
    return sorted(records, key=lambda r: r.started)


def _rollback_record(run, execution) -> RunRecord:
    return RunRecord(
        run_id=run.name, started=execution.create_time_since_epoch / 1000,
        outcome=ROLLED_BACK, version=custom_property(execution, "new_version"),
        detail=(f"serves version {custom_property(execution, 'rolled_back_to')}'s files as version "
                f"{custom_property(execution, 'new_version')}"),
    )


def _run_record(store, config, run, executions, node_of, read_metrics, mlmd) -> RunRecord:
    by_node = {node_of[e.id]: e for e in executions}
    record = RunRecord(run_id=run.name,
                       started=min(e.create_time_since_epoch for e in executions) / 1000,
                       outcome=RUNNING)
    record.cached = [node_of[e.id] for e in executions
                     if e.last_known_state == mlmd.Execution.CACHED]
    failed = [node_of[e.id] for e in executions if e.last_known_state == mlmd.Execution.FAILED]
    ids = [e.id for e in executions]
    outputs = events_of_executions(store, ids, (mlmd.Event.OUTPUT, mlmd.Event.DECLARED_OUTPUT))
    inputs = events_of_executions(store, ids, (mlmd.Event.INPUT, mlmd.Event.DECLARED_INPUT))
    artifact_ids = {ev.artifact_id for evs in (*outputs.values(), *inputs.values()) for ev in evs}
    artifacts = {a.id: a for a in store.get_artifacts_by_id(sorted(artifact_ids))}

    def artifacts_of(node: str, events: dict, key: str) -> list:
        execution = by_node.get(node)
        if execution is None:
            return []
        return [artifacts[ev.artifact_id] for ev in events.get(execution.id, [])
                if ev.path.steps and ev.path.steps[0].key == key and ev.artifact_id in artifacts]

    # The labelled data's ingestion: what StatisticsGen read (a scoring config's
    # UnlabelledExampleGen feeds only the BulkInferrer); when the run stopped before it, the
    # ExampleGen's own output.
    ingested = artifacts_of("StatisticsGen", inputs, "examples") or next(
        (artifacts_of(n, outputs, "examples") for n in sorted(by_node)
         if n.endswith("ExampleGen") and not n.startswith("Unlabelled")), [])
    read = artifacts_of("Transform", inputs, "examples") or ingested
    record.spans = sorted({span for artifact in read for span in _spans_read(artifact)})
    if ingested:
        record.rows = {name: int(custom_property(ingested[0], name)) for name in ROW_COUNT_PROPERTIES
                       if custom_property(ingested[0], name) is not None}
        if record.rows.get(ROWS_QUARANTINED_PROPERTY):
            record.quarantine_file = custom_property(ingested[0], QUARANTINE_FILE_PROPERTY)
    for model_run in artifacts_of("Trainer", outputs, "model_run"):
        path = os.path.join(model_run.uri, "warm_start.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                source = json.load(f)
            record.warm_start = source.get("from")
            record.warm_start_note = source.get("note")
    for blessing in artifacts_of("Evaluator", outputs, "blessing"):
        record.blessed = custom_property(blessing, "blessed") == 1
    if read_metrics and config.kind == "finetune":
        from pipeline.tasks import get_task

        for evaluation in artifacts_of("Evaluator", outputs, "evaluation"):
            if os.path.exists(evaluation.uri):
                record.metrics = get_task(config).read_evaluation(evaluation.uri)[0]
    pushed = next(iter(artifacts_of("AtomicPusher", outputs, "pushed_model")), None)
    if failed:
        record.outcome, record.detail = FAILED, f"failed in {', '.join(failed)}"
    elif pushed is not None:
        if custom_property(pushed, "pushed") == 1:
            record.version = custom_property(pushed, "pushed_version")
            record.outcome = UNCHANGED if custom_property(pushed, "already_served") == 1 else PUSHED
        else:
            record.outcome = NOT_BLESSED
    return record


def rollback(config, to_version: str) -> tuple[str, bool]:
    """Makes TF Serving serve `to_version`'s files again: they are pushed atomically as a new,
    highest version (TF Serving serves the highest), and the rollback is recorded in the
    pipeline's ML Metadata store. Returns (the version now served, whether it is new: False
    when `to_version` is identical to the newest version already).

    Raises:
        FileNotFoundError: no such version under the serving base path.
    """
    base = config.serving_model_dir
    versions = sorted((v for v in (os.listdir(base) if os.path.isdir(base) else [])
                       if v.isdigit()), key=int)
    if to_version not in versions:
        raise FileNotFoundError(
            f"no version {to_version!r} under {base} (versions there: "
            f"{', '.join(versions) or 'none'})")
    newest = newest_version(base)
    _, version, is_new = push_atomically(os.path.join(base, to_version), base)
    if is_new:
        record_rollback(config, to_version, version, replaced=newest)
    return version, is_new


def record_rollback(config, rolled_back_to: str, new_version: str, replaced: str | None) -> None:
    """An execution of type `bertpipe.Rollback` in a `rollback-<time>` run context of the
    pipeline, with the versions as custom properties."""
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    store = open_store(config.metadata_path, writable=True)
    execution_type = mlmd.ExecutionType(name=ROLLBACK_EXECUTION_TYPE)
    type_id = store.put_execution_type(execution_type)
    run_type_id = store.put_context_type(mlmd.ContextType(name="pipeline_run"))
    pipeline_type_id = store.put_context_type(mlmd.ContextType(name="pipeline"))
    pipeline_context = store.get_context_by_type_and_name("pipeline", config.pipeline.name)
    if pipeline_context is None:
        pipeline_context = mlmd.Context(type_id=pipeline_type_id, name=config.pipeline.name)
        [pipeline_context.id] = store.put_contexts([pipeline_context])
    run_context = mlmd.Context(
        type_id=run_type_id,
        name=f"{ROLLBACK_RUN_PREFIX}{datetime.datetime.now(datetime.UTC).isoformat()}")
    [run_context.id] = store.put_contexts([run_context])
    execution = mlmd.Execution(type_id=type_id, last_known_state=mlmd.Execution.COMPLETE)
    for name, value in {"pipeline_name": config.pipeline.name,
                        "rolled_back_to": rolled_back_to, "new_version": new_version,
                        "replaced_version": replaced or "", "serving_dir":
                        config.serving_model_dir, "time": str(int(time.time()))}.items():
        execution.custom_properties[name].string_value = value
    store.put_execution(execution, artifact_and_events=[],
                        contexts=[pipeline_context, run_context])


def describe_data(record: RunRecord) -> str:
    """What `bertpipe run` prints about a run's data: spans, rows, warm start."""
    lines = []
    if record.spans != [0]:  # span 0: input patterns without {SPAN}, nothing to say
        lines.append(f"spans read: {', '.join(map(str, record.spans)) or 'none'}")
    rows = record.rows
    if ROWS_READ_PROPERTY in rows:
        line = (f"rows ingested: {rows[ROWS_READ_PROPERTY]} read, "
                f"{rows.get(ROWS_KEPT_PROPERTY, 0)} kept, "
                f"{rows.get(ROWS_QUARANTINED_PROPERTY, 0)} quarantined")
        if record.quarantine_file:
            line += f" ({record.quarantine_file})"
        lines.append(line)
    if record.warm_start:
        line = "warm start: " + {"latest_blessed": "the latest blessed model",
                                 "checkpoint": "model.checkpoint"}[record.warm_start]
        if record.warm_start_note:  # a fallback the person should know about
            line += f" ({record.warm_start_note})"
        lines.append(line)
    return "\n".join(lines)


def render_history(records: list[RunRecord]) -> str:
    """The table `bertpipe runs` prints, oldest run first."""
    header = ("started (UTC)", "outcome", "version", "spans", "rows kept/read (bad)",
              "warm start", "metrics")
    rows = [header]
    for r in records:
        rows_text = (f"{r.rows.get(ROWS_KEPT_PROPERTY, 0)}/{r.rows[ROWS_READ_PROPERTY]} "
                     f"({r.rows.get(ROWS_QUARANTINED_PROPERTY, 0)})"
                     if ROWS_READ_PROPERTY in r.rows else "-")
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(r.metrics.items())
                            if k != "example_count") or r.detail or "-"
        rows.append((r.started_text, r.outcome, r.version or "-",
                     ",".join(map(str, r.spans)) or "-", rows_text, r.warm_start or "-",
                     metrics))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row, record in zip(rows, [None, *records], strict=True):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths,
                                                                        strict=True))
                     + "  " + row[-1])
        if record is not None and record.report:
            lines.append(f"  report: {record.report}")
    return "\n".join(lines)
