"""The local runner: TFX's LocalDagRunner, in this process (`bertpipe run`)."""

from __future__ import annotations


def run_locally(pipeline) -> None:
    """Runs a `tfx.dsl.Pipeline` to the end in this process; a component's error propagates.

    Example:

    >>> from pipeline.config import load_config  # doctest: +SKIP
    >>> from pipeline.finetune import create_pipeline  # doctest: +SKIP
    >>> run_locally(create_pipeline(load_config("configs/demo_sst2.yaml")))  # doctest: +SKIP
    """
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    LocalDagRunner().run(pipeline)
