"""The local runner: TFX's LocalDagRunner, in this process (`bertpipe run`)."""

from __future__ import annotations

import logging


def run_locally(pipeline, run_id: str | None = None, progress=None) -> None:
    """Runs a `tfx.dsl.Pipeline` to the end in this process; a component's error propagates.

    Args:
        pipeline: the pipeline (`pipeline.runners.create_pipeline`).
        run_id: the ML Metadata `pipeline_run` name to record the run under (default: the
            time, as LocalDagRunner chooses it): `bertpipe run` names its run folder with it.
        progress: a `pipeline.run_progress.ComponentProgress` class (or factory) taking the
            compiled pipeline's node ids in run order; it prints the component lines.

    Example:

    >>> from pipeline.config import load_config  # doctest: +SKIP
    >>> from pipeline.finetune import create_pipeline  # doctest: +SKIP
    >>> run_locally(create_pipeline(load_config("configs/demo_sst2.yaml")))  # doctest: +SKIP
    """
    from tfx.dsl.compiler import constants
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.orchestration.portable import runtime_parameter_utils, tfx_runner

    # What LocalDagRunner.run does before run_with_ir (compile, resolve pip dependencies),
    # then the run id ours instead of its own timestamp.
    ir = tfx_runner._make_pipeline_proto(pipeline)  # noqa: SLF001
    if run_id is not None:
        runtime_parameter_utils.substitute_runtime_parameter(
            ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
    handler = None
    if progress is not None:
        handler = progress([node.pipeline_node.node_info.id for node in ir.nodes])
        logging.getLogger("absl").addHandler(handler)
    try:
        LocalDagRunner().run_with_ir(ir)
    except BaseException:
        if handler is not None:
            handler.component_failed()
        raise
    finally:
        if handler is not None:
            logging.getLogger("absl").removeHandler(handler)
