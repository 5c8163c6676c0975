"""ExampleValidator executor that stops the pipeline when the data has anomalies.

TFX's ExampleValidator records anomalies but lets downstream components run. Here the
anomalies are written as usual (for TFDV's viewers) and then the execution fails with a
message naming each split, feature and anomaly, so nothing after it trains on bad data.
"""

from __future__ import annotations

from typing import Any

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.components.example_validator import executor as example_validator_executor


class DataValidationError(RuntimeError):
    """The examples do not match the schema."""


def describe_anomalies(split: str, anomalies: anomalies_pb2.Anomalies) -> list[str]:
    """One line per anomalous feature: split, feature, short and long description."""
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        reasons = "; ".join(
            f"{reason.short_description}: {reason.description}" for reason in info.reason
        ) or f"{info.short_description}: {info.description}"
        lines.append(f"split {split!r}, feature {feature!r}: {reasons}")
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        lines.append(f"split {split!r}, dataset: {info.short_description}: {info.description}")
    return lines


class Executor(example_validator_executor.Executor):
    """Validates like TFX's ExampleValidator, then raises DataValidationError on anomalies."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ):
        self._found: list[str] = []
        result = super().Do(input_dict, output_dict, exec_properties)
        if self._found:
            anomalies_uri = output_dict["anomalies"][0].uri
            raise DataValidationError(
                "the examples do not match the schema, so the pipeline stops here:\n  "
                + "\n  ".join(self._found)
                + f"\n(anomalies written to {anomalies_uri})"
            )
        return result

    def _Validate(self, inputs: dict[str, Any], outputs: dict[str, Any]):
        anomalies = super()._Validate(inputs, outputs)
        split = outputs.get("schema_diff_path", "").rstrip("/").rsplit("Split-", 1)[-1]
        self._found.extend(describe_anomalies(split, anomalies))
        return anomalies
