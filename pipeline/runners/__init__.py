"""Runners: where a pipeline definition meets an orchestrator.

`pipeline.finetune.create_pipeline(config)` and `pipeline.pretrain.create_pipeline(config)`
build a `tfx.dsl.Pipeline` that knows nothing of where it will run. Each module here hands
one to an orchestrator, and only these modules import an orchestrator's runner:

| module | orchestrator (TFX runner) | command |
|---|---|---|
| `local.py` | this process (`LocalDagRunner`) | `bertpipe run CONFIG` |
| `airflow.py` | Apache Airflow: a DAG file (`AirflowDagRunner`) | `bertpipe compile CONFIG --target airflow --output DIR` |
| `vertex.py` | Kubeflow Pipelines v2 / Vertex AI Pipelines: a JSON spec (`KubeflowV2DagRunner`) | `bertpipe compile CONFIG --target vertex --output FILE.json` |

A new runner goes here, as `<name>.py`: a function that takes the validated config (and the
runner's own options), builds the pipeline with `create_pipeline` below and gives it to the
orchestrator's TFX runner, importing TFX inside the function (importing this package must
stay cheap: `bertpipe predict` never pays for TFX). A runner that writes something for an
orchestrator to run later is a `bertpipe compile --target <name>`: add it to `TARGETS` in
`pipeline/compile_cli.py`. One that runs the pipeline itself gets a command of its own in
`pipeline/cli.py`, as `run` does. The pipeline definitions never change for a runner; a
runner only says what its orchestrator cannot do (`custom_resolvers`).
"""

from __future__ import annotations


def create_pipeline(config, enable_cache: bool | None = None, custom_resolvers: bool = True,
                    packages_dir: str | None = None):
    """The config's pipeline (fine-tuning or pretraining, by `kind`), for any runner.

    `custom_resolvers=False` for an orchestrator that runs only TFX's built-in resolver
    strategies (Vertex): the rolling range of spans is then read by ExampleGen itself.
    `packages_dir`: the site-packages of the image the components run in, where a
    `package:` checkpoint is read (`pipeline.finetune.create_pipeline`).
    """
    if config.kind == "pretrain":
        from pipeline.pretrain import create_pipeline as create

        return create(config, enable_cache=enable_cache)
    from pipeline.finetune import create_pipeline as create

    return create(config, enable_cache=enable_cache, custom_resolvers=custom_resolvers,
                  packages_dir=packages_dir)
