# Trading Engine: the Kedro project in a container.
#   docker build -t trading-engine .                          # CPU torch (small)
#   docker build -t trading-engine --build-arg TORCH_VARIANT=cu126 .   # CUDA torch for a GPU host
FROM python:3.11-slim

ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0

ENV KEDRO_DISABLE_TELEMETRY=true \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 trader

WORKDIR /home/trader/app

# Dependencies first, so that code changes do not reinstall torch.
RUN pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install -e . && pip install optuna-dashboard

COPY conf ./conf
COPY notebooks ./notebooks
COPY data ./data
RUN chown -R trader:trader /home/trader/app

USER trader
EXPOSE 4141 8080
CMD ["kedro", "run"]
