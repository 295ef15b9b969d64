# Trading Engine: the Kedro project in a container (docker-compose.yml runs its services).
#   docker build -t trading-engine .                                     # CPU torch (small)
#   docker build -t trading-engine --build-arg TORCH_VARIANT=cu128 .     # CUDA torch for a GPU host
# TORCH_VARIANT is a folder of https://download.pytorch.org/whl/ (cpu, cu126, cu128, ...) that has
# a wheel of TORCH_VERSION. TRADER_UID: the owner of files written to a mounted data/ folder.
FROM python:3.11-slim

ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG TRADER_UID=1000

ENV KEDRO_DISABLE_TELEMETRY=true \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    COLUMNS=160

RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid "${TRADER_UID}" trader

WORKDIR /home/trader/app

# Dependencies first (torch, then the project's from pyproject.toml against a placeholder
# package), so that a code change only re-copies src/.
RUN pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"
COPY pyproject.toml README.md ./
RUN mkdir -p src/trading_engine && touch src/trading_engine/__init__.py \
    && pip install -e . optuna-dashboard
COPY src ./src

COPY conf ./conf
COPY notebooks ./notebooks
COPY data ./data
RUN chown -R trader:trader /home/trader/app

USER trader
# kedro-viz, optuna-dashboard
EXPOSE 4141 8080
CMD ["kedro", "run"]
