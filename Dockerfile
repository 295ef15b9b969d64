# Trading Engine: the Kedro project in a container (docker-compose.yml runs its services; docs/docker.md).
#   docker build -t trading-engine .                                     # CPU torch (small)
#   docker build -t trading-engine --build-arg TORCH_VARIANT=cu128 .     # CUDA torch for a GPU host
#   docker build -t trading-engine --build-arg WHEELHOUSE=true .         # offline: docker/wheelhouse only
# TORCH_VARIANT is a folder of https://download.pytorch.org/whl/ (cpu, cu126, cu128, ...) that has a
# wheel of TORCH_VERSION. WHEELHOUSE=true installs every package from the wheels in docker/wheelhouse
# (`make docker-wheelhouse` prepares them on the host) and reaches no index: for machines whose
# builds cannot reach PyPI or download.pytorch.org. BASE_IMAGE: any Debian-like image with
# Python 3.11 and its venv module (docker/base-image.sh builds one from Debian's packages).
# The container starts as root only to take the owner of the mounted data/ (docker/entrypoint.sh),
# then runs as the user `trader`.
ARG BASE_IMAGE=python:3.11-slim

# ------------------------------------------------------------------ dependencies (a virtualenv)
FROM ${BASE_IMAGE} AS dependencies
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG WHEELHOUSE=false
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv
# The dependencies of pyproject.toml against a placeholder package, so that a code change only
# re-copies src/ in the final stage.
COPY pyproject.toml README.md /tmp/build/
COPY docker/wheelhouse /tmp/wheelhouse
RUN mkdir -p /tmp/build/src/trading_engine && touch /tmp/build/src/trading_engine/__init__.py \
    && if [ "${WHEELHOUSE}" = "true" ]; then \
           pip install --no-index --find-links /tmp/wheelhouse "setuptools>=68" "torch==${TORCH_VERSION}" "/tmp/build[docker]"; \
       else \
           pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
           && pip install "setuptools>=68" "/tmp/build[docker]"; \
       fi \
    && pip uninstall -y trading_engine

# ------------------------------------------------------------------ the image
FROM ${BASE_IMAGE}
ARG TRADER_UID=1000
ENV PATH=/opt/venv/bin:$PATH \
    KEDRO_DISABLE_TELEMETRY=true \
    MLFLOW_DISABLE_TELEMETRY=true \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    COLUMNS=160
RUN (dpkg -s libgomp1 >/dev/null 2>&1 \
        || (apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*)) \
    && useradd --create-home --uid "${TRADER_UID}" trader
COPY --from=dependencies /opt/venv /opt/venv

WORKDIR /home/trader/app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-deps --no-build-isolation -e .
COPY conf ./conf
COPY notebooks ./notebooks
COPY data ./data
COPY docker/entrypoint.sh /usr/local/bin/trading-engine-entrypoint
RUN chown -R trader:trader /home/trader

# kedro-viz, optuna-dashboard, the MLflow UI
EXPOSE 4141 8080 5000
ENTRYPOINT ["trading-engine-entrypoint"]
CMD ["kedro", "run"]
