"""StrictExampleValidator: TFX's ExampleValidator whose execution fails on anomalies."""

from __future__ import annotations

from tfx.components import ExampleValidator
from tfx.dsl.components.base import executor_spec

from components.strict_example_validator import executor


class StrictExampleValidator(ExampleValidator):
    """Same inputs, outputs and parameters as ExampleValidator; stops the run on anomalies."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
