"""Runs you can compare: every `kedro run` is one MLflow run in a local store (docs/tracking.md).

A run logs
- its parameters, flattened to dotted names (`training.learning_rate`, `trading.rule.min_probability_edge`);
- tags: the pipelines, the environment, the `--params` given, the Kedro session id;
- the headline metrics of `backtest_metrics` when the evaluation ran: for `out_of_sample` and
  `holdout`, the evaluation's own headline metrics (`evaluation.backtest.HEADLINE_METRICS`: Sharpe,
  Sortino, max drawdown, deflated Sharpe, ...), `turnover_per_day`, and the Sharpe and deflated
  Sharpe before costs, as `out_of_sample.sharpe`, `holdout.before_costs.sharpe`, ...;
- the files it wrote in the `models` and `reporting` layers as artifacts (the report, the plots,
  the metrics JSON, the fold checkpoints, the tuned parameters);
- for tuning, one nested run per trial this process ran (its parameters, its validation Sharpe, the
  Sharpe of each fold as steps, its state and worker).

The store is SQLite (`tracking.yml`: data/09_tracking/mlflow.db, artifacts beside it): it works
offline and needs no server; `make mlflow` opens the UI on it.

MLflow works in a process of its own (`TrackingWorker`, `python -m trading_engine.tracking worker`):
started when the run starts, it imports MLflow, opens the store and the run and logs the
parameters while the first nodes run, on the other core and without holding the run's GIL; at the
end it is sent the metrics, trials and artifact paths as JSON, logs them and ends the run. Tracking
never fails a run: a tracking error is logged as a warning.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trading_engine.params import known_params

logger = logging.getLogger(__name__)

# Set TRADING_ENGINE_TRACKING=0 to switch tracking off for a run (the test suite does by default).
SWITCH_VARIABLE = "TRADING_ENGINE_TRACKING"
BACKTEST_METRICS = "backtest_metrics"  # the dataset the headline metrics are read from
STUDY_TRIALS = "tuning_study_trials"  # the dataset of the tuning study's trials
PERIODS = ("out_of_sample", "holdout")
EXTRA_METRICS = ("turnover_per_day",)
BEFORE_COSTS_METRICS = ("sharpe", "deflated_sharpe")
TRIAL_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED", "WAITING": "SCHEDULED"}
FINISH_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class TrackingSettings:
    enabled: bool = True
    # An SQLite file (relative: to the project root) or any MLflow tracking URI (http://..., postgresql://...).
    store: str = "data/09_tracking/mlflow.db"
    artifacts: str = "data/09_tracking/artifacts"  # where a new experiment keeps its runs' files
    experiment: str = "trading_engine"
    artifact_layers: tuple[str, ...] = ("models", "reporting")  # data layers whose outputs are artifacts
    # Runs of only these pipelines are not tracked: a live signals run every 5 minutes is not an experiment.
    untracked_pipelines: tuple[str, ...] = ("signals",)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> TrackingSettings:
        """From `tracking.yml` (the `tracking:` mapping). TRADING_ENGINE_TRACKING=0 switches it off."""
        settings = known_params(config, cls, "tracking settings")
        for name in ("artifact_layers", "untracked_pipelines"):
            if name in settings:
                settings[name] = tuple(settings[name])
        if os.environ.get(SWITCH_VARIABLE, "").strip().lower() in ("0", "false", "no", "off"):
            settings["enabled"] = False
        return cls(**settings)

    def tracks(self, pipelines: list[str]) -> bool:
        """Whether a run of these pipelines is logged."""
        return self.enabled and not set(pipelines) <= set(self.untracked_pipelines)

    def tracking_uri(self, project_path: Path) -> str:
        """MLFLOW_TRACKING_URI when set, else the store: `sqlite:///<absolute path>` for a file."""
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        if "://" in self.store:
            return self.store
        return f"sqlite:///{(Path(project_path) / self.store).resolve()}"

    def artifact_location(self, project_path: Path) -> str:
        if "://" in self.artifacts:
            return self.artifacts
        return (Path(project_path) / self.artifacts).resolve().as_uri()


def flat_parameters(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"training": {"folds": {"n_folds": 3}}} -> {"training.folds.n_folds": "3"}; lists as text."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flat_parameters(value, name + "."))
        else:
            flat[name] = str(value)[:6000]  # MLflow's longest parameter value
    return flat


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def headline_metrics(backtest_metrics: Mapping[str, Any]) -> dict[str, float]:
    """The portfolio's headline metrics of every period, named `<period>.<metric>` and
    `<period>.before_costs.<metric>`; missing or non-finite values are left out."""
    from trading_engine.evaluation.backtest import HEADLINE_METRICS

    found: dict[str, float] = {}
    portfolio = backtest_metrics.get("portfolio") or {}
    for period in PERIODS:
        values = portfolio.get(period) or {}
        candidates = {name: values.get(name) for name in (*HEADLINE_METRICS, *EXTRA_METRICS)}
        before = values.get("before_costs") or {}
        candidates.update({f"before_costs.{name}": before.get(name) for name in BEFORE_COSTS_METRICS})
        found.update({f"{period}.{name}": float(value) for name, value in candidates.items() if _finite(value)})
    return found


def trial_record(trial: Any) -> dict[str, Any]:
    """What a nested run shows of an Optuna trial, as JSON."""
    def ms(stamp: Any) -> int | None:
        return int(stamp.timestamp() * 1000) if stamp is not None else None

    return {"number": trial.number, "state": trial.state.name,
            "value": trial.value if _finite(trial.value) else None,
            "params": {name: str(value) for name, value in trial.params.items()},
            "fold_values": {str(step): value for step, value in sorted(trial.intermediate_values.items()) if _finite(value)},
            "user_attrs": {key: str(value)[:8000] for key, value in trial.user_attrs.items()},
            "start_ms": ms(trial.datetime_start), "end_ms": ms(trial.datetime_complete)}


class TrackingWorker:
    """The parent's side: one MLflow run, logged by a worker process."""

    def __init__(self, settings: TrackingSettings, project_path: Path, run_name: str,
                 parameters: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        self.settings = settings
        self.start_message = {"uri": settings.tracking_uri(project_path), "experiment": settings.experiment,
                              "artifact_location": settings.artifact_location(project_path), "run_name": run_name,
                              "params": flat_parameters(parameters), "tags": dict(tags)}
        self.metrics: dict[str, float] = {}
        self.trials: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {}
        self._process: subprocess.Popen | None = None
        self._errors = tempfile.TemporaryFile(mode="w+")

    def start(self) -> None:
        env = {**os.environ, "MLFLOW_LOGGING_LEVEL": os.environ.get("MLFLOW_LOGGING_LEVEL", "WARNING")}
        self._process = subprocess.Popen([sys.executable, "-m", "trading_engine.tracking", "worker"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._errors, text=True, env=env)
        self._process.stdin.write(json.dumps(self.start_message) + "\n")
        self._process.stdin.flush()

    def add_metrics(self, metrics: Mapping[str, float]) -> None:
        self.metrics.update(metrics)

    def add_trials(self, trials: Iterable[Any]) -> None:
        """The trials of a tuning study this process ran (other workers' runs log theirs)."""
        from trading_engine.tuning.storage import worker_identity

        me = {key: str(value) for key, value in worker_identity().items()}
        self.trials.extend(trial_record(trial) for trial in trials
                           if all(str(trial.user_attrs.get(key)) == value for key, value in me.items()))

    def finish(self, status: str, artifacts: Iterable[tuple[Path, str]] = (), error: str | None = None) -> bool:
        """Send what the run produced and end the MLflow run; False (and a warning) when tracking failed."""
        message = {"status": status, "metrics": self.metrics, "trials": self.trials, "error": error,
                   "artifacts": [[str(path), folder] for path, folder in artifacts]}
        try:
            output, _ = self._process.communicate(json.dumps(message) + "\n", timeout=FINISH_TIMEOUT_S)
            self.result = json.loads(output.strip().splitlines()[-1]) if output.strip() else {}
            if self._process.returncode != 0 or "run_id" not in self.result:
                raise RuntimeError(f"the tracking process ended with status {self._process.returncode}")
        except Exception as failure:  # tracking never fails a run
            if self._process.poll() is None:
                self._process.kill()
            self._errors.seek(0)
            detail = self._errors.read().strip().splitlines()[-1:] or [""]
            logger.warning("MLflow tracking failed (%s) %s; the run itself is unaffected. Set %s=0 to switch "
                           "tracking off.", failure, detail[0], SWITCH_VARIABLE)
            return False
        finally:
            self._errors.close()
        return True

    def run_url(self, port: int = 5000) -> str:
        return f"http://127.0.0.1:{port}/#/experiments/{self.result.get('experiment_id')}/runs/{self.result.get('run_id')}"


# ------------------------------------------------------------------ the worker process


def _log_trial(client: Any, experiment_id: str, parent_run_id: str, trial: Mapping[str, Any]) -> None:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    start = trial["start_ms"] or int(time.time() * 1000)
    end = trial["end_ms"] or start
    run = client.create_run(experiment_id, start_time=start, tags={
        MLFLOW_PARENT_RUN_ID: parent_run_id, MLFLOW_RUN_NAME: f"trial {trial['number']}"})
    metrics = [Metric("fold_validation_sharpe", value, end, int(step)) for step, value in trial["fold_values"].items()]
    if trial["value"] is not None:
        metrics.append(Metric("validation_sharpe", trial["value"], end, 0))
    tags = {"trial.number": str(trial["number"]), "trial.state": trial["state"],
            **{f"trial.{key}": value for key, value in trial["user_attrs"].items()}}
    client.log_batch(run.info.run_id, metrics=metrics, params=[Param(k, v) for k, v in trial["params"].items()],
                     tags=[RunTag(k, v) for k, v in tags.items()])
    if trial["state"] in TRIAL_STATUS:
        client.set_terminated(run.info.run_id, TRIAL_STATUS[trial["state"]], trial["end_ms"])


def worker_main(stdin: Any = sys.stdin, stdout: Any = sys.stdout) -> int:
    """Open the run from the first JSON line; log and end it with the second (KILLED if the
    parent went away without one); print {"run_id", "experiment_id", "seconds"}."""
    started = time.perf_counter()
    start = json.loads(stdin.readline())
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME, MLFLOW_SOURCE_NAME

    if start["uri"].startswith("sqlite:///"):
        Path(start["uri"].removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=start["uri"])
    experiment = client.get_experiment_by_name(start["experiment"])
    experiment_id = (experiment.experiment_id if experiment
                     else client.create_experiment(start["experiment"], artifact_location=start["artifact_location"]))
    run_id = client.create_run(experiment_id, tags={MLFLOW_RUN_NAME: start["run_name"],
                                                    MLFLOW_SOURCE_NAME: "kedro run", **start["tags"]}).info.run_id
    client.log_batch(run_id, params=[Param(k, v) for k, v in start["params"].items()])
    opened = time.perf_counter() - started

    line = stdin.readline()
    started = time.perf_counter()
    if not line:
        client.set_terminated(run_id, "KILLED")
        return 1
    finish = json.loads(line)
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in finish["metrics"].items()],
                     tags=[RunTag("error", finish["error"][:8000])] if finish.get("error") else [])
    for trial in finish["trials"]:
        _log_trial(client, experiment_id, run_id, trial)
    for path, folder in finish["artifacts"]:
        path = Path(path)
        if path.is_dir():
            client.log_artifacts(run_id, str(path), f"{folder}/{path.name}")
        elif path.is_file():
            client.log_artifact(run_id, str(path), folder)
    client.set_terminated(run_id, finish["status"])
    stdout.write(json.dumps({"run_id": run_id, "experiment_id": experiment_id, "open_s": round(opened, 3),
                             "finish_s": round(time.perf_counter() - started, 3)}) + "\n")
    stdout.flush()
    return 0


# ------------------------------------------------------------------ the UI


def project_settings(project_path: Path, env: str | None = None) -> TrackingSettings:
    """The tracking settings of the project's configuration (`conf/base`, then `env`)."""
    from kedro.config import OmegaConfigLoader

    from trading_engine.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(str(Path(project_path) / "conf"), env=env, **CONFIG_LOADER_ARGS)
    return TrackingSettings.from_config(loader["tracking"].get("tracking"))


def ui_command(project_path: Path, host: str, port: int, env: str | None = None) -> list[str]:
    """`mlflow ui` on the project's tracking store (what `make mlflow` runs)."""
    settings = project_settings(project_path, env)
    uri = settings.tracking_uri(project_path)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--default-artifact-root",
            settings.artifact_location(project_path), "--host", host, "--port", str(port), "--workers", "1"]


def main(argv: list[str]) -> int:
    """`python -m trading_engine.tracking worker` (used by TrackingWorker) or
    `python -m trading_engine.tracking ui [--host H] [--port N] [--env E]` (exec's `mlflow ui`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m trading_engine.tracking")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="log one run: JSON messages on stdin (TrackingWorker)")
    ui = commands.add_parser("ui", help="the MLflow UI on the project's tracking store")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--env", default=None, help="the Kedro environment whose tracking.yml to read")
    arguments = parser.parse_args(argv)
    if arguments.command == "ui":
        command = ui_command(Path.cwd(), arguments.host, arguments.port, arguments.env)
        # One local user: no server-side job runner (its queue workers are a dozen processes).
        os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        os.execv(command[0], command)
    import warnings

    # MLflow's SQLAlchemy store uses a loader option SQLAlchemy 2.1 deprecates: MLflow's to change.
    warnings.filterwarnings("ignore", message=r"The ``noload`` loader strategy is deprecated")
    status = worker_main()
    sys.stderr.flush()
    # Everything is committed: skip the interpreter's slow shutdown (MLflow's exit handlers), which
    # the run would otherwise wait for.
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
