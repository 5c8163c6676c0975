"""`--monitoring_config_file`: TF Serving's Prometheus metrics for the built-in server.

TF Serving (2.16.1) records, for every request:

* `/tensorflow/serving/request_count` (counter; labels `model_name`, `status`, the status
  code's name) — every REST request (http_server.cc) and every gRPC Predict, Classify and
  Regress (prediction_service_impl.cc);
* `/tensorflow/serving/request_latency` (histogram of microseconds; labels `model_name`,
  `API`, `entrypoint`; buckets 10 * 1.8^i, i < 33) — successful requests only, `API` being
  the REST verb (`predict`, `classify`, `regress`; empty for status and metadata GETs) or the
  gRPC method (`Predict`, `Classify`, `Regress`), `entrypoint` `REST` or `GRPC`;

and prometheus_exporter.cc serves them, when `prometheus_config { enable: true }`, at
`prometheus_config.path` (default `/monitoring/prometheus/metrics`) on the REST port, as
Prometheus text with `/` turned into `:` (`:tensorflow:serving:request_count`). This module
keeps those two metrics and writes the same text; TensorFlow's own runtime metrics, which
TF Serving exports too, are not collected here.

The `MonitoringConfig` proto is not shipped in the tensorflow-serving-api wheel, so its
descriptor is built here from monitoring_config.proto's two messages and parsed with
`text_format` like the other config files.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

DEFAULT_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath
REQUEST_COUNT = "/tensorflow/serving/request_count"
REQUEST_LATENCY = "/tensorflow/serving/request_latency"
# monitoring::Buckets::Exponential(10, 1.8, 33): limits 10 * 1.8^i, then DBL_MAX (+Inf).
LATENCY_BUCKET_LIMITS = [10 * 1.8**i for i in range(33)]


def _monitoring_config_class():
    """tensorflow.serving.MonitoringConfig (monitoring_config.proto) as a message class."""
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="bertpipe/tensorflow_serving/config/monitoring_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
    )
    prometheus = file_proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(
        name="enable", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL, json_name="enable",
    )  # fmt: skip
    prometheus.field.add(
        name="path", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL, json_name="path",
    )  # fmt: skip
    monitoring = file_proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config", number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        type_name=".tensorflow.serving.PrometheusConfig",
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL, json_name="prometheusConfig",
    )  # fmt: skip
    # A private pool: the real monitoring_config_pb2, if some library registers it in the
    # default pool, must not collide with this copy.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    descriptor = pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")
    return message_factory.GetMessageClass(descriptor)


MonitoringConfig = _monitoring_config_class()


def parse_monitoring_config(text: str):
    """A MonitoringConfig from its text form (text_format.ParseError if malformed)."""
    config = MonitoringConfig()
    text_format.Parse(text, config)
    return config


def read_monitoring_config(path: str):
    with open(path, encoding="utf-8") as f:
        return parse_monitoring_config(f.read())


def metrics_path(config) -> str | None:
    """Where the metrics are served, or None when Prometheus export is off."""
    if config is None or not config.prometheus_config.enable:
        return None
    return config.prometheus_config.path or DEFAULT_PATH


def _prometheus_name(name: str) -> str:
    """prometheus_exporter.cc GetPrometheusMetricName: [^a-zA-Z0-9_] -> ':'."""
    new = "".join(c if c.isascii() and (c.isalnum() or c == "_") else ":" for c in name)
    return "_" + new if new[:1].isdigit() else new


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> list[str]:
    return [f'{n}="{_label_value(v)}"' for n, v in zip(names, values, strict=True)]


def _number(value: float) -> str:
    """absl::StrCat(double): six significant digits, like %g."""
    return f"{value:g}"


class Metrics:
    """TF Serving's request count and latency metrics; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = defaultdict(int)
        # (model, api, entrypoint) -> (bucket counts, sum of microseconds)
        self._latency: dict[tuple[str, str, str], list] = {}

    def record_request(self, model_name: str, status: str) -> None:
        """RecordModelRequestCount: `status` is the canonical code's name ("OK", ...)."""
        with self._lock:
            self._counts[(model_name, status)] += 1

    def record_latency(
        self, model_name: str, api: str, entrypoint: str, microseconds: float
    ) -> None:
        """RecordRequestLatency (successful requests only, as TF Serving)."""
        # tensorflow::histogram::Histogram::Add: bucket = upper_bound(limits, value).
        index = next(
            (i for i, limit in enumerate(LATENCY_BUCKET_LIMITS) if microseconds < limit),
            len(LATENCY_BUCKET_LIMITS),
        )
        with self._lock:
            cell = self._latency.setdefault(
                (model_name, api, entrypoint), [[0] * (len(LATENCY_BUCKET_LIMITS) + 1), 0.0]
            )
            cell[0][index] += 1
            cell[1] += microseconds

    def request_count(self, model_name: str, status: str = "OK") -> int:
        with self._lock:
            return self._counts.get((model_name, status), 0)

    def prometheus_text(self) -> str:
        """The page prometheus_exporter.cc writes (counter, then histogram; one line each)."""
        with self._lock:
            counts = dict(self._counts)
            latency = {k: (list(v[0]), v[1]) for k, v in self._latency.items()}
        lines = []
        name = _prometheus_name(REQUEST_COUNT)
        lines.append(f"# TYPE {name} counter")
        for key in sorted(counts):
            labels = ",".join(_labels(("model_name", "status"), key))
            lines.append(f"{name}{{{labels}}} {counts[key]}")
        name = _prometheus_name(REQUEST_LATENCY)
        lines.append(f"# TYPE {name} histogram")
        for key in sorted(latency):
            buckets, total = latency[key]
            labels = _labels(("model_name", "API", "entrypoint"), key)
            prefix = f"{name}_bucket{{" + ",".join(labels) + ("," if labels else "")
            cumulative = 0
            for i, count in enumerate(buckets):
                cumulative += count
                limit = _number(LATENCY_BUCKET_LIMITS[i]) if i < len(LATENCY_BUCKET_LIMITS) else "+Inf"
                lines.append(f'{prefix}le="{limit}"}} {cumulative}')
            joined = ",".join(labels)
            lines.append(f"{name}_sum{{{joined}}} {_number(total) if math.isfinite(total) else total}")
            lines.append(f"{name}_count{{{joined}}} {cumulative}")
        return "\n".join(lines) + "\n"
