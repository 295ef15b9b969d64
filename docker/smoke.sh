#!/usr/bin/env bash
# `make docker-smoke`: build the images and run every service of docker-compose.yml for real, then
# clean up (docs/docker.md). Needs Docker (dockerd 20.10+, started here when it is installed but not
# running) and docker-compose 1.29+ (or `docker compose`), and the wheelhouse of `make
# docker-wheelhouse`. No container registry is needed: the base image is made with debootstrap
# (docker/base-image.sh) and PostgreSQL is a stand-in built from Debian's PostgreSQL 15
# (docker/postgres/). It checks:
#   pipeline          `kedro run` exits 0; the report exists and belongs to the owner of the data folder
#   tuning            `kedro run --pipelines tuning` on PostgreSQL exits 0; the study has its trials
#   deploy, replay    the live path: the model deployed, its signals replayed against the backtest
#   viz               HTTP 200 on /, and the API lists every pipeline
#   optuna-dashboard  HTTP 200, the study in its API, no restart
#   mlflow            HTTP 200; the runs of pipeline, deploy, replay and tuning, the trials nested under it
# and removes the containers, networks and volumes it created, and the daemon if it started it.
# The images stay (trading-engine:latest, trading-engine-postgres:15, trading-engine-base:bookworm)
# so that a second run takes minutes; `docker image rm` them to get the disk back.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
docker=${DOCKER:-docker}
project=trading-engine-smoke
export BASE_IMAGE=${BASE_IMAGE:-trading-engine-base:bookworm}
export POSTGRES_IMAGE=${POSTGRES_IMAGE:-trading-engine-postgres:15}
export WHEELHOUSE=${WHEELHOUSE:-true}
export VIZ_PORT=${VIZ_PORT:-14141} DASHBOARD_PORT=${DASHBOARD_PORT:-18080} MLFLOW_PORT=${MLFLOW_PORT:-15000}
data_owner=${SMOKE_DATA_OWNER:-4242}  # neither root nor the image's uid 1000: the entrypoint must adapt
dockerd_pid=""
SMOKE_DATA=$(mktemp -d)
export SMOKE_DATA

say() { printf '[docker-smoke %4ds] %s\n' "$(( $(date +%s) - started ))" "$*"; }
fail() { say "FAILED: $*"; exit 1; }

if command -v docker-compose >/dev/null; then compose=(docker-compose); else compose=("$docker" compose); fi
compose+=(-p "$project" -f docker-compose.yml -f docker/smoke.compose.yml)

cleanup() {
    status=$?
    if [ "$status" != 0 ] && "$docker" info >/dev/null 2>&1; then
        say "logs of the services (last lines)"
        "${compose[@]}" logs --no-color --tail=40 2>&1 | tail -200 || true
    fi
    "${compose[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || true
    rm -rf "$SMOKE_DATA" "$SMOKE_DATA".*.log
    if [ -n "$dockerd_pid" ]; then
        say "stopping the Docker daemon it started (pid $dockerd_pid)"
        kill "$dockerd_pid" 2>/dev/null || true
        for _ in $(seq 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
    fi
    say "$([ "$status" = 0 ] && echo passed || echo failed) in $(( $(date +%s) - started )) s"
}
trap cleanup EXIT

# ------------------------------------------------------------------ the daemon
if ! "$docker" info >/dev/null 2>&1; then
    command -v dockerd >/dev/null || fail "no Docker daemon and no dockerd to start (apt-get install docker.io)"
    say "starting dockerd"
    setsid dockerd >"$SMOKE_DATA.dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 60); do "$docker" info >/dev/null 2>&1 && break; sleep 1; done
    "$docker" info >/dev/null 2>&1 || fail "dockerd did not start: $(tail -5 "$SMOKE_DATA.dockerd.log")"
fi

# ------------------------------------------------------------------ the images
ls docker/wheelhouse/torch-*.whl >/dev/null 2>&1 || fail "no wheelhouse: run make docker-wheelhouse first"
DOCKER=$docker docker/base-image.sh "$BASE_IMAGE"
say "building $POSTGRES_IMAGE (Debian's PostgreSQL 15)"
"$docker" build -q -t "$POSTGRES_IMAGE" --build-arg BASE_IMAGE="$BASE_IMAGE" docker/postgres >/dev/null
say "building trading-engine:latest from the wheelhouse"
"${compose[@]}" build -q pipeline >/dev/null

# ------------------------------------------------------------------ the runs
for layer in data/0*_*/; do mkdir -p "$SMOKE_DATA/$(basename "$layer")"; done
chown -R "$data_owner:$data_owner" "$SMOKE_DATA"

# What a user's `docker compose up -d` does: every service, each when what it depends on is ready
# (the pipeline after the study's tables, tuning after the pipeline); it returns once tuning started.
say "docker-compose up: pipeline, then tuning; viz, optuna-dashboard, mlflow"
"${compose[@]}" up -d --no-color >"$SMOKE_DATA.up.log" 2>&1 || { tail -20 "$SMOKE_DATA.up.log"; fail "docker-compose up"; }
finished() {  # wait for a one-shot service and check its exit status
    container=$("${compose[@]}" ps -q "$1")
    [ -n "$container" ] || fail "no container for $1"
    code=$("$docker" wait "$container")
    [ "$code" = 0 ] || { "$docker" logs --tail 60 "$container"; fail "$1 exited with $code"; }
    say "$1 exited with 0"
}
finished pipeline
report="$SMOKE_DATA/08_reporting/backtest_report.md"
[ -s "$report" ] || fail "no backtest report"
[ "$(stat -c %u "$report")" = "$data_owner" ] || fail "the report belongs to uid $(stat -c %u "$report"), not $data_owner"
finished tuning
[ -s "$SMOKE_DATA/08_reporting/tuning_summary.json" ] || fail "no tuning summary"
# The live path in the image: deploy the model, then replay its signals bar by bar against the
# backtest (the `signals` service itself needs the real exchange: `--profile live`, docs/live.md).
say "deploy, then replay: the live signals' code path in the container"
"${compose[@]}" run --rm -T pipeline kedro run --pipelines deploy >"$SMOKE_DATA.deploy.log" 2>&1 \
    || { tail -30 "$SMOKE_DATA.deploy.log"; fail "kedro run --pipelines deploy"; }
"${compose[@]}" run --rm -T pipeline kedro run --pipelines replay >"$SMOKE_DATA.replay.log" 2>&1 \
    || { tail -30 "$SMOKE_DATA.replay.log"; fail "kedro run --pipelines replay"; }
ls "$SMOKE_DATA"/08_reporting/replay* >/dev/null 2>&1 || fail "no replay report in 08_reporting"
say "deploy and replay exited with 0; the replay report exists"

# ------------------------------------------------------------------ the servers
http_get() { python3 -c 'import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    sys.stdout.write(f"{r.status}\n" + r.read().decode(errors="replace"))' "$1" 2>/dev/null; }
wait_for_200() {
    for _ in $(seq 120); do
        body=$(http_get "$1") && [ "$(head -1 <<<"$body")" = 200 ] && { printf '%s' "$body"; return 0; }
        sleep 2
    done
    fail "no HTTP 200 from $1"
}
wait_for_200 "http://127.0.0.1:$VIZ_PORT/" >/dev/null
pipelines=$(wait_for_200 "http://127.0.0.1:$VIZ_PORT/api/main")
for name in ingestion features training evaluation tuning; do
    grep -q "\"$name\"" <<<"$pipelines" || fail "kedro-viz does not list the pipeline $name"
done
say "viz: HTTP 200, every pipeline"
wait_for_200 "http://127.0.0.1:$DASHBOARD_PORT/" >/dev/null
studies=$(wait_for_200 "http://127.0.0.1:$DASHBOARD_PORT/api/studies")
grep -q trading_engine_transformer <<<"$studies" || fail "optuna-dashboard does not show the study"
sleep 10  # a dashboard that cannot read the study restarts within seconds
dashboard=$("${compose[@]}" ps -q optuna-dashboard)
[ "$("$docker" inspect -f '{{.RestartCount}} {{.State.Running}}' "$dashboard")" = "0 true" ] \
    || fail "optuna-dashboard restarted: $("$docker" inspect -f '{{.RestartCount}} {{.State.Status}}' "$dashboard")"
say "optuna-dashboard: HTTP 200, the study, no restart"
wait_for_200 "http://127.0.0.1:$MLFLOW_PORT/" >/dev/null
runs=$(python3 - "http://127.0.0.1:$MLFLOW_PORT" <<'PY'
import json, sys, urllib.request
def post(path, body):
    request = urllib.request.Request(sys.argv[1] + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)
experiment = post("/ajax-api/2.0/mlflow/experiments/search", {"max_results": 10})["experiments"]
ids = [e["experiment_id"] for e in experiment if e["name"] == "trading_engine"]
runs = post("/ajax-api/2.0/mlflow/runs/search", {"experiment_ids": ids, "max_results": 100}).get("runs", [])
tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs]
parents = sorted(t.get("mlflow.runName") for t in tags if "mlflow.parentRunId" not in t)
print(" ".join(parents), len([t for t in tags if "mlflow.parentRunId" in t]))
PY
)
[ "$runs" = "default deploy replay tuning 2" ] || fail "MLflow runs: expected 'default deploy replay tuning 2' (runs, trials), got '$runs'"
say "mlflow: HTTP 200, the runs default, deploy, replay and tuning, 2 nested trials"
say "every service ran"
