"""One self-contained HTML page per pipeline run: what the run's data looked like, how the
model trained and how it was judged.

`write_report(config, run_id)` reads the run's artifacts through its ML Metadata store (the
`pipeline_run` context `bertpipe run` names) and writes `<root>/runs/<run>/report.html`
(`pipeline.run_folder.report_path`) with these sections, each with a stable id:

- `summary`: outcome, pushed version, spans, rows, blessing (`pipeline.history`'s record);
- `statistics`: StatisticsGen's TFDV statistics of each split (`FeatureStats.pb`), per
  feature the counts, missing values, numeric summary or top values, and a histogram;
- `anomalies`: ExampleValidator's TFDV anomalies of each split (`SchemaDiff.pb`);
- `evaluation`: the Evaluator's metrics per slice, the blessed baseline's beside them, the
  change, the thresholds the run used and which failed (TFMA's metrics, validation result
  and the eval config it wrote; the NER and QA evaluators' own JSON and execution
  properties);
- `training`: curves of every scalar in the Trainer's TensorBoard event files under its
  `model_run` artifact, or else of the per-epoch `history.json` Keras's fit returned;
- `task`: text classification: TFMA's multi-class confusion matrix plot; NER: seqeval's
  per-type precision/recall/F1; QA: exact match and F1, and the first wrong answers
  (`components.squad_evaluator`'s `wrong_answers.json`). Pretraining runs have no
  Evaluator: their report holds the summary, data and training sections, and says so.

Nothing is recomputed: every figure comes from what TFDV, TFMA and the evaluators wrote.
The page loads nothing from the network (no scripts at all; charts are inline SVG), so it
opens offline and from an archived run folder; every piece of text is HTML-escaped.

Example:

>>> from pipeline.config import load_config  # doctest: +SKIP
>>> write_report(load_config("configs/demo_sst2.yaml"))  # doctest: +SKIP
'build/pipelines/sst2_demo/runs/2026-11-25T07-01-02.123456/report.html'
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import html
import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

from pipeline import run_folder
from pipeline.history import custom_property, events_of_executions, open_store

Series = tuple[str, list[tuple[float, float]]]  # (legend label, [(x, y), ...])

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
MAX_CHARTS = 16  # training curves shown (one per scalar tag)


# --------------------------------------------------------------------------------------
# Finding the run and its artifacts in ML Metadata
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class RunArtifacts:
    """A run's output artifacts by output key (`statistics`, `anomalies`, `evaluation`,
    `blessing`, `model_run`, ...) and the executions that wrote them."""

    run_id: str
    outputs: dict[str, list] = dataclasses.field(default_factory=dict)
    producer: dict[int, Any] = dataclasses.field(default_factory=dict)  # artifact id -> execution

    def first(self, key: str):
        artifacts = self.outputs.get(key) or []
        return artifacts[0] if artifacts else None


def find_run(config, run_id: str | None = None) -> RunArtifacts:
    """The output artifacts of run `run_id` (the `pipeline_run` context's name) of
    `config`'s pipeline; the newest run when `run_id` is None.

    Raises:
        FileNotFoundError: no metadata store yet.
        LookupError: no such run (or no run at all) of this pipeline.
    """
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    from pipeline.history import ROLLBACK_RUN_PREFIX

    store = open_store(config.metadata_path)
    prefix = f"{config.pipeline.name}."
    ours: set[int] = set()  # execution ids of this pipeline's components
    for context in store.get_contexts_by_type("node"):
        if context.name.startswith(prefix):
            ours.update(e.id for e in store.get_executions_by_context(context.id))
    runs = []
    for context in store.get_contexts_by_type("pipeline_run"):
        if context.name.startswith(ROLLBACK_RUN_PREFIX):
            continue
        executions = [e for e in store.get_executions_by_context(context.id) if e.id in ours]
        if executions and (run_id is None or context.name == run_id):
            runs.append((min(e.create_time_since_epoch for e in executions), context,
                         executions))
    if not runs:
        raise LookupError(
            f"no run {run_id!r} of pipeline {config.pipeline.name!r} in {config.metadata_path}"
            if run_id else
            f"no run of pipeline {config.pipeline.name!r} in {config.metadata_path}")
    _, context, executions = max(runs, key=lambda run: run[0])
    found = RunArtifacts(run_id=context.name)
    by_id = {e.id: e for e in executions}
    events = events_of_executions(store, list(by_id), (mlmd.Event.OUTPUT, mlmd.Event.DECLARED_OUTPUT))
    pairs = [(ev, execution_id) for execution_id, evs in events.items() for ev in evs
             if ev.path.steps]
    artifacts = {a.id: a for a in store.get_artifacts_by_id(
        sorted({ev.artifact_id for ev, _ in pairs}))}
    for ev, execution_id in sorted(pairs, key=lambda pair: pair[0].artifact_id):
        artifact = artifacts.get(ev.artifact_id)
        if artifact is not None:
            found.outputs.setdefault(ev.path.steps[0].key, []).append(artifact)
            found.producer[artifact.id] = by_id[execution_id]
    return found


def _property(execution, name: str) -> Any:
    """An execution property TFX recorded (a typed property, or a custom one)."""
    if execution is None:
        return None
    if name in execution.properties:
        value = execution.properties[name]
        return getattr(value, value.WhichOneof("value"))
    return custom_property(execution, name)


def _splits(uri: str, filename: str) -> list[tuple[str, str]]:
    """[(split name, path of `filename` in its `Split-<name>` folder)], sorted, train first."""
    found = []
    for folder in glob.glob(os.path.join(glob.escape(uri), "Split-*")):
        path = os.path.join(folder, filename)
        if os.path.exists(path):
            found.append((os.path.basename(folder)[len("Split-"):], path))
    return sorted(found, key=lambda split: (split[0] != "train", split[0]))


# --------------------------------------------------------------------------------------
# Small HTML and SVG pieces
# --------------------------------------------------------------------------------------


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if float(value).is_integer() and abs(value) < 1e12:
        return f"{int(value):,}"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """A table; header cells are escaped here, row cells must already be HTML."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    if high <= low:
        return [low]
    return [low + (high - low) * i / count for i in range(count + 1)]


def line_chart(title: str, series: Sequence[Series], x_label: str = "step",
               width: int = 460, height: int = 240) -> str:
    """An SVG line chart (one path per series, a dot per point when there are few)."""
    points = [p for _, values in series for p in values]
    if not points:
        return ""
    left, right, top, bottom = 58, 12, 26, 36
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - (abs(y0) * 0.1 or 1), y1 + (abs(y1) * 0.1 or 1)
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * plot_h

    parts = [f'<svg class="chart" role="img" aria-label="{esc(title)}" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" '
             f'xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{left}" y="16" class="title">{esc(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="frame"/>']
    for y in _ticks(y0, y1):
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{sy(y):.1f}" '
                     f'y2="{sy(y):.1f}" class="grid"/>'
                     f'<text x="{left - 4}" y="{sy(y) + 4:.1f}" class="tick" '
                     f'text-anchor="end">{esc(fmt(y, 3))}</text>')
    x_ticks = _ticks(x0, x1)
    if x1 - x0 <= 8 and all(float(x).is_integer() for x in xs):  # epochs: whole numbers
        x_ticks = [float(x) for x in range(int(x0), int(x1) + 1)]
    for x in x_ticks:
        parts.append(f'<text x="{sx(x):.1f}" y="{top + plot_h + 14}" class="tick" '
                     f'text-anchor="middle">{esc(fmt(round(x, 2), 2))}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" class="tick" '
                 f'text-anchor="middle">{esc(x_label)}</text>')
    for i, (label, values) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        values = sorted(values)
        if not values:
            continue
        d = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}"
                     for j, (x, y) in enumerate(values))
        parts.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="1.8"/>')
        if len(values) <= 30:
            parts.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"/>'
                         for x, y in values)
        legend_x = width - right - 110 * (len(series) - i)
        parts.append(f'<rect x="{legend_x}" y="7" width="10" height="10" '
                     f'fill="{color}"/><text x="{legend_x + 14}" y="16" '
                     f'class="tick">{esc(label[:16])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(title: str, labels: Sequence[str], groups: Sequence[tuple[str, Sequence[float]]],
              maximum: float | None = None, width: int = 460) -> str:
    """Horizontal SVG bars: one row per label, one bar per group (e.g. candidate, baseline)."""
    if not labels or not groups:
        return ""
    bar, gap, left, top = 14, 10, 120, 40
    height = top + len(labels) * (bar * len(groups) + gap) + 10
    top_value = maximum or max([v for _, values in groups for v in values] + [1e-9])
    plot_w = width - left - 60
    parts = [f'<svg class="chart" role="img" aria-label="{esc(title)}" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" '
             f'xmlns="http://www.w3.org/2000/svg">',
             f'<text x="4" y="16" class="title">{esc(title)}</text>']
    for g, (name, _) in enumerate(groups):
        x = left + g * 110
        parts.append(f'<rect x="{x}" y="22" width="10" height="10" '
                     f'fill="{PALETTE[g % len(PALETTE)]}"/>'
                     f'<text x="{x + 14}" y="31" class="tick">{esc(name)}</text>')
    for i, label in enumerate(labels):
        y = top + i * (bar * len(groups) + gap)
        parts.append(f'<text x="{left - 6}" y="{y + bar * len(groups) / 2 + 4:.1f}" '
                     f'class="tick" text-anchor="end">{esc(label)}</text>')
        for g, (_, values) in enumerate(groups):
            value = values[i]
            if value is None or math.isnan(value):
                continue
            w = max(0.0, value) / top_value * plot_w
            parts.append(f'<rect x="{left}" y="{y + g * bar}" width="{w:.1f}" '
                         f'height="{bar - 2}" fill="{PALETTE[g % len(PALETTE)]}"/>'
                         f'<text x="{left + w + 4:.1f}" y="{y + g * bar + bar - 4}" '
                         f'class="tick">{esc(fmt(value, 3))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(heights: Sequence[float], width: int = 150, height: int = 36) -> str:
    """A sparkline histogram (one rect per bucket), for a statistics table cell."""
    if not heights or max(heights) <= 0:
        return ""
    step = width / len(heights)
    top = max(heights)
    rects = "".join(
        f'<rect x="{i * step:.1f}" y="{height - h / top * height:.1f}" '
        f'width="{max(step - 1, 0.5):.1f}" height="{h / top * height:.1f}"/>'
        for i, h in enumerate(heights))
    return (f'<svg class="spark" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">{rects}</svg>')


def heatmap(title: str, rows: Sequence[str], columns: Sequence[str],
            counts: Sequence[Sequence[float]]) -> str:
    """An SVG confusion matrix: rows actual, columns predicted, shade by row share."""
    cell, left, top = 64, 130, 70
    width = max(left + cell * len(columns) + 20, 8 * len(title) + 10)
    height = top + cell * len(rows) + 30
    parts = [f'<svg class="chart" role="img" aria-label="{esc(title)}" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" '
             f'xmlns="http://www.w3.org/2000/svg">',
             f'<text x="4" y="16" class="title">{esc(title)}</text>',
             f'<text x="{left + cell * len(columns) / 2:.0f}" y="36" class="tick" '
             f'text-anchor="middle">predicted</text>',
             f'<text x="8" y="{top + cell * len(rows) / 2:.0f}" class="tick">actual</text>']
    for j, name in enumerate(columns):
        parts.append(f'<text x="{left + j * cell + cell / 2:.0f}" y="{top - 8}" class="tick" '
                     f'text-anchor="middle">{esc(name)}</text>')
    for i, name in enumerate(rows):
        total = sum(counts[i]) or 1.0
        parts.append(f'<text x="{left - 6}" y="{top + i * cell + cell / 2 + 4:.0f}" '
                     f'class="tick" text-anchor="end">{esc(name)}</text>')
        for j, value in enumerate(counts[i]):
            share = value / total
            light = 97 - int(share * 55)
            ink = "#fff" if share > 0.6 else "#111"
            parts.append(f'<rect x="{left + j * cell}" y="{top + i * cell}" width="{cell}" '
                         f'height="{cell}" fill="hsl(210,70%,{light}%)" stroke="#fff"/>'
                         f'<text x="{left + j * cell + cell / 2:.0f}" '
                         f'y="{top + i * cell + cell / 2 + 5:.0f}" fill="{ink}" '
                         f'text-anchor="middle" class="cell">{esc(fmt(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------------------
# Statistics and anomalies (TFDV protos)
# --------------------------------------------------------------------------------------


def _feature_name(feature) -> str:
    return ".".join(feature.path.step) if feature.path.step else feature.name


def render_statistics(split: str, statistics) -> str:
    """One split's `DatasetFeatureStatisticsList` as a table: a row per feature."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    parts = []
    for dataset in statistics.datasets:
        rows = []
        for feature in dataset.features:
            kind = statistics_pb2.FeatureNameStatistics.Type.Name(feature.type)
            if feature.HasField("num_stats"):
                stats = feature.num_stats
                common = stats.common_stats
                standard = [h for h in stats.histograms
                            if h.type == statistics_pb2.Histogram.STANDARD]
                detail = (f"mean {fmt(stats.mean, 3)} · std {fmt(stats.std_dev, 3)}<br>"
                          f"min {fmt(stats.min, 3)} · median {fmt(stats.median, 3)} · "
                          f"max {fmt(stats.max, 3)} · zeros {fmt(stats.num_zeros)}")
                figure = histogram_svg([b.sample_count for b in standard[0].buckets]
                                       if standard else [])
            elif feature.HasField("string_stats"):
                stats = feature.string_stats
                common = stats.common_stats
                top = ", ".join(f"{esc(v.value[:40])} ({fmt(v.frequency)})"
                                for v in stats.top_values[:3])
                detail = (f"{fmt(stats.unique)} unique · avg length "
                          f"{fmt(stats.avg_length, 1)}<br>top: {top or '–'}")
                figure = histogram_svg([b.sample_count for b in
                                        stats.rank_histogram.buckets[:20]])
            else:
                rows.append([esc(_feature_name(feature)), esc(kind), "", "", "", ""])
                continue
            present = common.num_non_missing
            total = present + common.num_missing
            missing = common.num_missing / total if total else 0.0
            values = (f"{fmt(common.avg_num_values, 1)} avg "
                      f"({fmt(common.min_num_values)}–{fmt(common.max_num_values)})")
            rows.append([esc(_feature_name(feature)), esc(kind), fmt(present),
                         f'<span class="{"bad" if missing else ""}">{missing:.1%}</span>',
                         values, detail, figure])
        parts.append(
            f'<div class="split"><h3>split <code>{esc(split)}</code>: '
            f'{fmt(dataset.num_examples)} examples</h3>'
            + table(["feature", "type", "present", "missing", "values per example",
                     "summary", "histogram"], rows, "stats") + "</div>")
    return "".join(parts)


def render_anomalies(split: str, anomalies) -> str:
    """One split's TFDV `Anomalies`: a table of each anomalous feature, or 'none'."""
    rows = []
    for name, info in sorted(anomalies.anomaly_info.items()):
        reasons = "<br>".join(f"{esc(r.short_description)}: {esc(r.description)}"
                              for r in info.reason) or esc(info.description)
        rows.append([f"<code>{esc(name)}</code>", reasons])
    if anomalies.HasField("dataset_anomaly_info"):
        reasons = "<br>".join(esc(r.description) for r in anomalies.dataset_anomaly_info.reason)
        rows.append(["(dataset)", reasons])
    heading = f"<h3>split <code>{esc(split)}</code></h3>"
    if not rows:
        return heading + '<p class="ok">no anomalies: the data matches the schema</p>'
    return heading + table(["feature", "anomaly"], rows, "anomalies bad")


def statistics_section(run: RunArtifacts) -> str:
    import tensorflow_data_validation as tfdv

    artifact = run.first("statistics")
    if artifact is None:
        return note("This run has no StatisticsGen output (a pretraining pipeline, or the run "
                    "stopped before StatisticsGen).")
    splits = _splits(artifact.uri, "FeatureStats.pb")
    if not splits:
        return note(f"No statistics files under {artifact.uri}.")
    return "".join(render_statistics(name, tfdv.load_stats_binary(path))
                   for name, path in splits)


def anomalies_section(run: RunArtifacts) -> str:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    artifact = run.first("anomalies")
    if artifact is None:
        return note("This run has no ExampleValidator output (a pretraining pipeline, or the "
                    "run stopped before validation).")
    splits = _splits(artifact.uri, "SchemaDiff.pb")
    if not splits:
        return note(f"No anomalies files under {artifact.uri}.")
    parts = []
    for name, path in splits:
        with open(path, "rb") as f:
            parts.append(render_anomalies(name, anomalies_pb2.Anomalies.FromString(f.read())))
    return "".join(parts)


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class MetricRow:
    name: str
    candidate: float | None = None
    baseline: float | None = None
    change: float | None = None
    thresholds: list[str] = dataclasses.field(default_factory=list)
    failed: bool = False


def render_metrics(slices: dict[str, list[MetricRow]], failures: Sequence[str],
                   blessed: bool | None) -> str:
    """A table per slice: metric, candidate, blessed baseline, change, thresholds."""
    verdict = {True: '<p class="ok">blessed: the candidate met every threshold</p>',
               False: '<p class="bad">not blessed</p>',
               None: ""}[blessed]
    parts = [verdict]
    if failures:
        parts.append('<ul class="bad">' + "".join(f"<li>{esc(f)}</li>" for f in failures)
                     + "</ul>")
    for slice_name, rows in slices.items():
        has_baseline = any(r.baseline is not None for r in rows)
        body = [[esc(r.name), f"<b>{fmt(r.candidate)}</b>", fmt(r.baseline),
                 fmt(r.change) if r.change is None else f"{r.change:+.4f}",
                 (f'<span class="{"bad" if r.failed else "ok"}">'
                  + esc("; ".join(r.thresholds)) + "</span>") if r.thresholds else "–"]
                for r in rows]
        parts.append(f"<h3>slice: {esc(slice_name)}</h3>" + table(
            ["metric", "candidate", "blessed baseline", "change", "threshold"], body,
            "metrics"))
        if not has_baseline:
            parts.append(note("No blessed baseline in this run (the pipeline's first "
                              "blessed model is compared with thresholds only)."))
    return "".join(parts)


def _tfma_metric_name(key) -> str:
    """A TFMA `MetricKey` proto as the console report names it (`auc (class 1)`)."""
    name = key.name
    if key.sub_key.HasField("class_id"):
        name += f" (class {key.sub_key.class_id.value})"
    elif key.sub_key.HasField("k"):
        name += f" (k {key.sub_key.k.value})"
    if key.aggregation_type.macro_average:
        name += " (macro average)"
    elif key.aggregation_type.micro_average:
        name += " (micro average)"
    return name


def _threshold_text(threshold) -> str:
    """A TFMA GenericValueThreshold or GenericChangeThreshold in words."""
    if hasattr(threshold, "direction"):  # GenericChangeThreshold
        parts = []
        if threshold.HasField("absolute"):
            parts.append(f"change vs baseline ≥ {threshold.absolute.value:+.4g}")
        if threshold.HasField("relative"):
            parts.append(f"relative change ≥ {threshold.relative.value:+.4g}")
        return ", ".join(parts)
    parts = []
    if threshold.HasField("lower_bound"):
        parts.append(f"≥ {threshold.lower_bound.value:.4g}")
    if threshold.HasField("upper_bound"):
        parts.append(f"≤ {threshold.upper_bound.value:.4g}")
    return " and ".join(parts)


def _slice_name(slice_key) -> str:
    if not slice_key.single_slice_keys:
        return "overall"
    def value(key) -> str:
        found = getattr(key, key.WhichOneof("kind"))
        return found.decode("utf-8", "replace") if isinstance(found, bytes) else str(found)

    return ", ".join(f"{k.column} = {value(k)}" for k in slice_key.single_slice_keys)


def tfma_metric_rows(evaluation_uri: str) -> tuple[dict[str, list[MetricRow]], list[str]]:
    """({slice: rows}, failure descriptions) from what TFMA wrote: its metrics (candidate,
    baseline and diff), the eval config it ran with (thresholds) and its validation result."""
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.metrics import metric_specs
    from tensorflow_model_analysis.writers import eval_config_writer

    from pipeline.tasks.text_classification import _describe_failure

    thresholds: dict[tuple[str, bool], list[str]] = {}
    try:
        eval_config = eval_config_writer.load_eval_run(evaluation_uri)[0]
    except (FileNotFoundError, OSError, ValueError):
        eval_config = None
    if eval_config is not None:
        for key, specs in metric_specs.metric_thresholds_from_metrics_specs(
                eval_config.metrics_specs, eval_config=eval_config).items():
            if key.model_name == tfma.BASELINE_KEY:
                continue
            proto = key.to_proto()
            texts = thresholds.setdefault((_tfma_metric_name(proto), proto.is_diff), [])
            texts.extend(_threshold_text(t) for _, t in specs if _threshold_text(t) not in texts)

    failed: dict[str, set[str]] = {}
    failures = []
    validation = tfma.load_validation_result(evaluation_uri)
    for per_slice in validation.metric_validations_per_slice:
        slice_name = _slice_name(per_slice.slice_key)
        for failure in per_slice.failures:
            failed.setdefault(slice_name, set()).add(_tfma_metric_name(failure.metric_key))
            failures.append(_describe_failure(failure)
                            + ("" if slice_name == "overall" else f" (slice {slice_name})"))

    slices: dict[str, list[MetricRow]] = {}
    for metrics_for_slice in tfma.load_metrics(evaluation_uri):
        slice_name = _slice_name(metrics_for_slice.slice_key)
        rows: dict[str, MetricRow] = {}
        for item in metrics_for_slice.metric_keys_and_values:
            if not item.value.HasField("double_value"):
                continue  # confusion matrices and other structured values
            name = _tfma_metric_name(item.key)
            row = rows.setdefault(name, MetricRow(name))
            value = item.value.double_value.value
            if item.key.is_diff:
                row.change = value
            elif item.key.model_name == tfma.BASELINE_KEY:
                row.baseline = value
            else:
                row.candidate = value
        for row in rows.values():
            row.thresholds = (thresholds.get((row.name, False), [])
                              + thresholds.get((row.name, True), []))
            row.failed = row.name in failed.get(slice_name, set())
        slices[slice_name] = sorted(rows.values(), key=lambda r: r.name)
    return slices, failures


def json_metric_rows(candidate: dict[str, float], baseline: dict[str, float],
                     failures: Sequence[str],
                     thresholds: dict[str, list[str]]) -> dict[str, list[MetricRow]]:
    """The NER and QA evaluators' flattened metrics as rows of the overall slice."""
    rows = []
    for name in sorted(candidate):
        base = baseline.get(name)
        rows.append(MetricRow(
            name, candidate[name], base,
            candidate[name] - base if base is not None else None,
            thresholds.get(name, []),
            failed=any(f.startswith(f"{name}:") for f in failures)))
    return {"overall": rows}


def _json_thresholds(config, evaluator) -> dict[str, list[str]]:
    """The NER/QA blessing rules as the run's Evaluator execution recorded them (the
    config's, for a store without them)."""
    evaluation = getattr(config, "evaluation", None)

    def value(name: str) -> float | None:
        recorded = _property(evaluator, name)
        if recorded is None and evaluation is not None:
            recorded = getattr(evaluation, name, None)
        return None if recorded is None else float(recorded)

    found: dict[str, list[str]] = {}
    for metric, key in (("f1", "min_f1"), ("exact_match", "min_exact_match")):
        bound = value(key)
        if bound is not None:
            found.setdefault(metric, []).append(f"≥ {bound:.4g}")
    tolerance = value("baseline_tolerance")
    if tolerance is not None:
        found.setdefault("f1", []).append(f"change vs baseline ≥ {-tolerance:+.4g}")
    return found


def evaluation_section(config, run: RunArtifacts, task_name: str | None) -> str:
    artifact = run.first("evaluation")
    if artifact is None or not os.path.exists(artifact.uri):
        return note("This run has no Evaluator output (a pretraining pipeline, or the run "
                    "stopped before evaluation).")
    blessing = run.first("blessing")
    blessed = None if blessing is None else custom_property(blessing, "blessed") == 1
    if task_name == "text_classification":
        slices, failures = tfma_metric_rows(artifact.uri)
    else:
        from pipeline.tasks import get_task

        candidate, baseline, failures = get_task(task_name).read_evaluation(artifact.uri)
        slices = json_metric_rows(candidate, baseline, failures, _json_thresholds(
            config, run.producer.get(artifact.id)))
    return render_metrics(slices, failures, blessed)


# --------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------


def read_event_scalars(directory: str) -> dict[str, list[Series]]:
    """{tag: [(run subfolder, [(step, value)])]} of every scalar in the TensorBoard event
    files under `directory` (Keras's callback writes `train/` and `validation/`)."""
    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(glob.escape(directory), "**",
                                          "events.out.tfevents.*"), recursive=True))
    found: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for path in files:
        label = os.path.relpath(os.path.dirname(path), directory)
        label = "run" if label == "." else label
        try:
            for event in tf.compat.v1.train.summary_iterator(path):
                for value in event.summary.value:
                    if value.HasField("simple_value"):
                        y = float(value.simple_value)
                    elif value.HasField("tensor") and not value.tensor.tensor_shape.dim:
                        array = tf.make_ndarray(value.tensor)
                        if array.dtype.kind not in "fiu":
                            continue
                        y = float(array)
                    else:
                        continue
                    found.setdefault(value.tag, {}).setdefault(label, []).append(
                        (float(event.step), y))
        except tf.errors.DataLossError:
            continue  # a file still being written: keep what was read
    return {tag: sorted(series.items()) for tag, series in sorted(found.items())}


def history_series(history: dict[str, list[float]]) -> dict[str, list[Series]]:
    """Keras's `history.json` ({metric: per-epoch values}, `val_` for validation) as one
    chart per metric with train and validation lines."""
    charts: dict[str, list[Series]] = {}
    for key, values in sorted(history.items()):
        name, label = (key[4:], "validation") if key.startswith("val_") else (key, "train")
        charts.setdefault(name, []).append(
            (label, [(float(epoch), float(v)) for epoch, v in enumerate(values, start=1)]))
    return charts


def training_section(run: RunArtifacts) -> str:
    model_run = run.first("model_run")
    if model_run is None or not os.path.isdir(model_run.uri):
        return note("This run has no Trainer output (it stopped before training).")
    charts = read_event_scalars(model_run.uri)
    parts = []
    if charts:
        source, x_label = "TensorBoard event files", "step"
        parts.append(
            "<p>Scalars from the Trainer's TensorBoard logs; to browse them: "
            f"<code>tensorboard --logdir {esc(model_run.uri)}</code></p>")
    else:
        history_path = os.path.join(model_run.uri, "history.json")
        history = {}
        if os.path.exists(history_path):
            with open(history_path, encoding="utf-8") as f:
                history = json.load(f)
        charts, source, x_label = history_series(history), "history.json", "epoch"
    if not charts:
        return note(f"The Trainer wrote no TensorBoard logs and no training history under "
                    f"{model_run.uri} (e.g. training.max_steps: 0 exports the model "
                    f"untrained).")
    names = list(charts)
    shown = names[:MAX_CHARTS]
    parts.append('<div class="charts">' + "".join(
        line_chart(name, charts[name], x_label) for name in shown) + "</div>")
    if len(names) > len(shown):
        parts.append(note(f"{len(names) - len(shown)} more scalars in the {source}: "
                          + ", ".join(names[len(shown):])))
    parts.append(note(f"source: {source} in {model_run.uri}"))
    return "".join(parts)


# --------------------------------------------------------------------------------------
# Task-specific figures
# --------------------------------------------------------------------------------------


def confusion_matrices(evaluation_uri: str) -> dict[str, list[list[float]]]:
    """{model ("candidate"/"baseline"/""): counts[actual][predicted]} of TFMA's
    multi-class confusion matrix plot (its first threshold, 0.0: the top class), overall
    slice."""
    import tensorflow_model_analysis as tfma

    found = {}
    for plots in tfma.load_plots(evaluation_uri):
        if plots.slice_key.single_slice_keys:
            continue
        for item in plots.plot_keys_and_values:
            matrices = item.value.multi_class_confusion_matrix_at_thresholds.matrices
            if not matrices:
                continue
            entries = matrices[0].entries
            size = 1 + max([max(e.actual_class_id, e.predicted_class_id) for e in entries]
                           + [-1])
            counts = [[0.0] * size for _ in range(size)]
            for e in entries:
                if e.predicted_class_id >= 0:  # NO_PREDICTED_CLASS_ID is -1
                    counts[e.actual_class_id][e.predicted_class_id] += e.num_weighted_examples
            found[item.key.model_name] = counts
    return found


def classification_figures(config, evaluation_uri: str) -> str:
    import tensorflow_model_analysis as tfma

    matrices = confusion_matrices(evaluation_uri)
    if not matrices:
        return note("The Evaluator computed no confusion matrix (an evaluation from before "
                    "MultiClassConfusionMatrixPlot was in the eval config).")
    classes = list(config.data.classes)
    parts = []
    for model in sorted(matrices, key=lambda m: m == tfma.BASELINE_KEY):
        counts = matrices[model]
        names = [classes[i] if i < len(classes) else str(i) for i in range(len(counts))]
        who = "blessed baseline" if model == tfma.BASELINE_KEY else "candidate"
        parts.append(heatmap(f"confusion matrix ({who}, eval split)", names, names, counts))
    return '<div class="charts">' + "".join(parts) + "</div>"


def ner_figures(evaluation_uri: str) -> str:
    from components.entity_evaluator.executor import METRICS_FILE

    with open(os.path.join(evaluation_uri, METRICS_FILE), encoding="utf-8") as f:
        result = json.load(f)
    per_type = result["candidate"].get("per_type", {})
    baseline_types = (result.get("baseline") or {}).get("per_type", {})
    if not per_type:
        return note("The Evaluator recorded no per-type scores.")
    types = sorted(per_type)
    rows = [[f"<code>{esc(t)}</code>", fmt(per_type[t]["precision"]),
             fmt(per_type[t]["recall"]), f"<b>{fmt(per_type[t]['f1'])}</b>",
             fmt(baseline_types.get(t, {}).get("f1")), fmt(per_type[t].get("support"))]
            for t in types]
    candidate = result["candidate"]
    rows.append(["<b>all (micro)</b>", fmt(candidate["precision"]), fmt(candidate["recall"]),
                 f"<b>{fmt(candidate['f1'])}</b>",
                 fmt((result.get("baseline") or {}).get("f1")), ""])
    groups = [("candidate F1", [per_type[t]["f1"] for t in types])]
    if baseline_types:
        groups.append(("baseline F1", [baseline_types.get(t, {}).get("f1", math.nan)
                                       for t in types]))
    return (table(["entity type", "precision", "recall", "F1", "baseline F1",
                   "gold entities"], rows, "metrics")
            + bar_chart("entity F1 per type (seqeval, exact span and type)", types, groups,
                        maximum=1.0))


def qa_figures(evaluation_uri: str) -> str:
    from components.squad_evaluator.executor import read_evaluation, read_wrong_answers

    candidate, baseline, _ = read_evaluation(evaluation_uri)
    groups = [("candidate", [candidate["exact_match"], candidate["f1"]])]
    if baseline:
        groups.append(("baseline", [baseline["exact_match"], baseline["f1"]]))
    parts = [bar_chart("SQuAD v1.1 exact match and F1 (0-100)", ["exact match", "F1"], groups,
                       maximum=100.0)]
    wrong = read_wrong_answers(evaluation_uri)
    if wrong is None:
        parts.append(note("This evaluation kept no wrong answers (written before "
                          "wrong_answers.json existed); predictions.json has every answer."))
        return "".join(parts)
    parts.append(f"<h3>wrong answers: {fmt(wrong['wrong'])} of {fmt(wrong['questions'])} "
                 f"questions are not an exact match; the first {len(wrong['examples'])}"
                 "</h3>")
    rows = []
    for example in wrong["examples"]:
        rows.append([esc(example["question"]),
                     " | ".join(esc(g) for g in dict.fromkeys(example["gold"])),
                     f'<span class="bad">{esc(example["predicted"]) or "(empty)"}</span>',
                     fmt(example["f1"], 2), _context_snippet(example["context"],
                                                             example["gold"])])
    parts.append(table(["question", "gold answers", "model's answer", "F1", "context"], rows,
                       "wrong"))
    return "".join(parts)


def _context_snippet(context: str, golds: Sequence[str], width: int = 160) -> str:
    """The context around the first gold answer, the answer highlighted."""
    gold = next((g for g in golds if g and g in context), "")
    at = context.find(gold) if gold else 0
    start = max(0, at - width // 2)
    end = min(len(context), at + len(gold) + width // 2)
    before, after = context[start:at], context[at + len(gold):end]
    return (("…" if start else "") + esc(before) + f"<mark>{esc(gold)}</mark>" + esc(after)
            + ("…" if end < len(context) else ""))


def task_section(config, run: RunArtifacts, task_name: str | None) -> str:
    if task_name is None:
        return note("Pretraining runs have no task evaluation; `bertpipe run` prints the "
                    "pushed encoder's masked-LM and next-sentence accuracy.")
    artifact = run.first("evaluation")
    if artifact is None or not os.path.exists(artifact.uri):
        return note("This run has no Evaluator output, so no task figures.")
    if task_name == "text_classification":
        return classification_figures(config, artifact.uri)
    if task_name == "token_classification":
        return ner_figures(artifact.uri)
    if task_name == "question_answering":
        return qa_figures(artifact.uri)
    return note(f"No task figures for task {task_name!r}.")


# --------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
 color:#1b1f24;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:18px;margin:0 0 10px}
h3{font-size:15px;margin:16px 0 6px}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:16px 20px;
 margin:16px 0}
nav a{margin-right:14px;color:#0b5cad;text-decoration:none}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border-bottom:1px solid #e5e8ec;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600}
td:nth-child(n+2){font-variant-numeric:tabular-nums}
table.wrong td{max-width:340px}
.note{color:#57606a}.ok{color:#1a7f37}.bad{color:#cf222e}
code{background:#f0f2f5;padding:1px 4px;border-radius:3px}
.charts{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{background:#fff;border:1px solid #e5e8ec;border-radius:6px}
svg .title{font-size:13px;font-weight:600}svg .tick{font-size:11px;fill:#444}
svg .cell{font-size:13px}svg .frame{fill:none;stroke:#ccd}svg .grid{stroke:#eef}
svg.spark rect{fill:#4c8ed9}
dl.summary{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:0}
dl.summary dt{color:#57606a}dl.summary dd{margin:0}
mark{background:#fff3b0}
"""

SECTIONS = (("summary", "Run"), ("statistics", "Data statistics"),
            ("anomalies", "Data anomalies"), ("evaluation", "Evaluation"),
            ("training", "Training"), ("task", "Task figures"))


def summary_section(config, run: RunArtifacts) -> str:
    from pipeline.history import describe_data, run_history

    record = next((r for r in run_history(config, read_metrics=False)
                   if r.run_id == run.run_id), None)
    items = [("pipeline", config.pipeline.name), ("run", run.run_id),
             ("kind", config.kind + (f" ({config.task})" if config.kind == "finetune" else ""))]
    if record is not None:
        items += [("started (UTC)", record.started_text), ("outcome", record.outcome)]
        if record.version:
            items.append(("served version", record.version))
        if record.blessed is not None:
            items.append(("blessed", "yes" if record.blessed else "no"))
        items += [(line.split(": ", 1)[0], line.split(": ", 1)[1])
                  for line in describe_data(record).splitlines()]
        if record.cached:
            items.append(("re-used from cache", ", ".join(record.cached)))
        if record.detail:
            items.append(("detail", record.detail))
    return ('<dl class="summary">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>"
                                             for k, v in items) + "</dl>")


def _guarded(render, *args) -> str:
    """A section's HTML, or what went wrong reading its artifacts: one unreadable artifact
    must not cost the person the rest of the report."""
    try:
        return render(*args)
    except Exception as error:  # noqa: BLE001 (shown on the page, the rest still renders)
        return (f'<p class="bad">This section could not be read: '
                f"{esc(type(error).__name__)}: {esc(error)}</p>")


def render_report(config, run: RunArtifacts) -> str:
    """The report page of `run` (see the module docstring)."""
    task_name = config.task if config.kind == "finetune" else None
    bodies = {
        "summary": _guarded(summary_section, config, run),
        "statistics": _guarded(statistics_section, run),
        "anomalies": _guarded(anomalies_section, run),
        "evaluation": _guarded(evaluation_section, config, run, task_name),
        "training": _guarded(training_section, run),
        "task": _guarded(task_section, config, run, task_name),
    }
    titles = dict(SECTIONS)
    if task_name:
        titles["task"] = {"text_classification": "Confusion matrix",
                          "token_classification": "Entities per type",
                          "question_answering": "Answers"}.get(task_name, "Task figures")
    nav = "".join(f'<a href="#{key}">{esc(titles[key])}</a>' for key, _ in SECTIONS)
    sections = "".join(f'<section id="{key}"><h2>{esc(titles[key])}</h2>{bodies[key]}</section>'
                       for key, _ in SECTIONS)
    written = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    title = f"{config.pipeline.name}: run {run.run_id}"
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{esc(title)}</h1><p class=\"note\">bertpipe run report, written {written}"
            f"</p><nav>{nav}</nav>{sections}</main></body></html>\n")


def write_report(config, run_id: str | None = None, path: str | None = None) -> str:
    """Writes run `run_id`'s report (the newest run when None) to `path` (default: the run
    folder's `report.html`, `pipeline.run_folder.report_path`) and returns the path.

    Raises:
        FileNotFoundError: the pipeline has no metadata store yet.
        LookupError: no such run of this pipeline in its store.
    """
    run = find_run(config, run_id)
    path = path or run_folder.report_path(config.pipeline.root, run.run_id)
    page = render_report(config, run)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(partial, path)  # a reader never sees half a report
    return path
