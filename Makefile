# Two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel keeps the virtual environment small; set TORCH_SPEC=torch for a CUDA build.
TORCH_SPEC ?= torch==2.13.0
export KEDRO_DISABLE_TELEMETRY := true
export MLFLOW_DISABLE_TELEMETRY := true
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test setup bench viz mlflow docker-wheelhouse docker-smoke clean-data

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q --upgrade pip 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/pip install -q "$(TORCH_SPEC)" 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/pip install -q -e ".[dev]" 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -c "import trading_engine, torch, kedro, ccxt, optuna"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/kedro run

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/pip install -q -e ".[dev,bench]" 2>&1 | grep -v "is ignored: it is neither" || true
	for f in bench/bench_*.py; do $(BIN)/python $$f || exit 1; done

# kedro-viz on http://127.0.0.1:$(VIZ_PORT); Ctrl-C or SIGTERM stops it and its uvicorn child
# (trading_engine/serve.py). One pipeline: http://127.0.0.1:$(VIZ_PORT)/?pid=evaluation
VIZ_PORT ?= 4141
viz: setup
	$(BIN)/python -m trading_engine.serve $(BIN)/kedro viz run --host 127.0.0.1 --port $(VIZ_PORT)

# The MLflow UI on the runs every `kedro run` logs (conf/base/tracking.yml, docs/tracking.md):
# http://127.0.0.1:$(MLFLOW_PORT); Ctrl-C stops it and its workers.
MLFLOW_PORT ?= 5000
mlflow: setup
	$(BIN)/python -m trading_engine.serve $(BIN)/python -m trading_engine.tracking ui --port $(MLFLOW_PORT)

# Every wheel the image needs, built or downloaded on this machine into docker/wheelhouse, for a
# `docker build --build-arg WHEELHOUSE=true` that reaches no package index (docs/docker.md).
docker-wheelhouse: setup
	$(BIN)/pip wheel -q --wheel-dir docker/wheelhouse "setuptools>=68" wheel "$(TORCH_SPEC)" ".[docker]" 2>&1 \
		| grep -v "is ignored: it is neither" || true
	rm -f docker/wheelhouse/trading_engine-*.whl

# Build the images and run every compose service for real, then clean up (docker/smoke.sh). Not
# part of `make test`: it needs Docker, about 6 GB of disk and several minutes.
docker-smoke: docker-wheelhouse
	bash docker/smoke.sh

clean-data:
	find data -type f ! -name .gitkeep -delete
