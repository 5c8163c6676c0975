"""Kubeflow Pipelines v2 / Vertex AI Pipelines: `bertpipe compile CONFIG --target vertex`.

`compile_vertex` builds the pipeline with the same `create_pipeline` as `bertpipe run` and
gives it to TFX's `KubeflowV2DagRunner`, which writes a `PipelineJob` JSON: its
`pipelineSpec` (a KFP `PipelineSpec`) has one task per TFX component, each running the
container image `image` as

    python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor \\
        --executor_class_path <the component's executor> --json_serialized_invocation_args {{$}}

and `runtimeConfig.gcsOutputDirectory` = `pipeline.root`. The image is built by the
`Dockerfile` at the project's root (Python 3.11, `requirements.lock`, this project).
Submit the JSON with the Vertex AI SDK (`aiplatform.PipelineJob(template_path=...)`) or the
console. Vertex keeps its own ML Metadata, so `pipeline.metadata_path` is not used there.

Paths in the config are what the containers see: on Vertex, `gs://` URIs. Local paths
still compile (the shipped configs do), with a note naming them. A `package:NAME/subdir`
checkpoint is read from the image's site-packages (`IMAGE_SITE_PACKAGES`); the compiling
machine needs the same package installed (it reads the checkpoint's casing).
"""

from __future__ import annotations

import os
import posixpath

# The image the spec names unless `--image` says otherwise: what `docker build -t
# bertpipe:latest .` makes. Vertex needs it pushed to a registry it can pull from.
DEFAULT_IMAGE = "bertpipe:latest"
# Where the Dockerfile installs Python packages in the image (its VIRTUAL_ENV, Python 3.11):
# a `package:` checkpoint is read there.
IMAGE_PREFIX = "/opt/bertpipe/venv"
IMAGE_SITE_PACKAGES = f"{IMAGE_PREFIX}/lib/python3.11/site-packages"
# Each component's container command: TFX's KFP v2 executor entry point, in the image's Python.
CONTAINER_COMMAND = (
    "python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor",
)


def local_paths(config) -> list[str]:
    """The config's path keys that hold local paths, which Vertex's containers do not see."""
    from pipeline.config import PATH_FIELDS

    found = []
    for dotted in PATH_FIELDS:
        section_name, _, name = dotted.rpartition(".")
        section = getattr(config, section_name, None) if section_name else config
        value = getattr(section, name, None) if section is not None else None
        if dotted == "pipeline.metadata_path":
            continue  # not used on Vertex
        if isinstance(value, str) and "://" not in value and not value.startswith("package:"):
            found.append(dotted)
    return found


def _split_output(output: str) -> tuple[str, str]:
    if "://" in output:  # gs://bucket/specs/x.json: written through TFX's fileio
        return posixpath.dirname(output), posixpath.basename(output)
    output = os.path.abspath(output)
    return os.path.dirname(output), os.path.basename(output)


def compile_vertex(config, output: str, image: str = DEFAULT_IMAGE) -> str:
    """Writes the config's pipeline as a Vertex AI PipelineJob JSON to `output`; returns it.

    TFX 1.16's Kubeflow V2 compiler runs only TFX's built-in resolver strategies (latest
    artifact, latest blessed model), and Vertex keeps its own metadata store: with
    `data.rolling_spans` > 1, ExampleGen reads the newest N spans itself in each run
    (`pipeline.finetune.training_spans`) instead of this project's rolling-range resolver.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kubeflow_v2

    from pipeline.runners import create_pipeline

    output_dir, output_filename = _split_output(output)
    runner = kubeflow_v2.KubeflowV2DagRunner(
        config=kubeflow_v2.KubeflowV2DagRunnerConfig(
            default_image=image, default_commands=list(CONTAINER_COMMAND)),
        output_dir=output_dir,
        output_filename=output_filename,
    )
    runner.run(create_pipeline(config, custom_resolvers=False,
                               packages_dir=IMAGE_SITE_PACKAGES))
    return output if "://" in output else os.path.abspath(output)
