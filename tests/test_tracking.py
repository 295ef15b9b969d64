"""Runs you can compare (trading_engine/tracking.py): every `kedro run` is an MLflow run in the
project's local store, with its parameters, headline metrics and artifacts; tuning logs one nested
run per trial; tracking never fails a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.conftest import make_test_project
from tests.tuning.conftest import TINY_SPACE, TINY_TRAINING
from trading_engine.tracking import (
    BACKTEST_METRICS,
    STUDY_TRIALS,
    TrackingSettings,
    headline_metrics,
)


def client_of(project: Path):
    from mlflow.tracking import MlflowClient

    store = project / TrackingSettings().store
    assert store.is_file(), f"no tracking store at {store}"
    return MlflowClient(tracking_uri=f"sqlite:///{store}")


def artifact_paths(client, run_id: str, folder: str | None = None) -> set[str]:
    paths = set()
    for entry in client.list_artifacts(run_id, folder):
        paths |= artifact_paths(client, run_id, entry.path) if entry.is_dir else {entry.path}
    return paths


def test_the_demo_run_is_an_mlflow_run_with_its_parameters_metrics_and_artifacts(demo_project: Path) -> None:
    client = client_of(demo_project)
    experiment = client.get_experiment_by_name("trading_engine")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "default"
    assert run.data.tags["kedro.pipelines"] == "__default__"
    params = run.data.params
    assert params["training.model"] == "transformer" and params["training.max_epochs"] == "1"  # --params wins
    assert params["trading.costs.taker_fee"] == "0.0005" and params["ingestion.symbols"].startswith("['BTC/USDT:USDT'")

    portfolio = json.loads((demo_project / "data/08_reporting/backtest_metrics.json").read_text())["portfolio"]
    metrics = run.data.metrics
    for period in ("out_of_sample", "holdout"):
        for name in ("sharpe", "deflated_sharpe", "probabilistic_sharpe", "sortino", "max_drawdown", "turnover_per_day"):
            assert metrics[f"{period}.{name}"] == pytest.approx(portfolio[period][name]), (period, name)
        assert metrics[f"{period}.before_costs.sharpe"] == pytest.approx(portfolio[period]["before_costs"]["sharpe"])

    artifacts = artifact_paths(client, run.info.run_id)
    assert {"reporting/backtest_report.md", "reporting/backtest_metrics.json", "reporting/backtest_equity_curves.png",
            "models/fold_models/fold_0.pt", "models/fold_models/fold_1.pt"} <= artifacts
    log = (demo_project / "demo_run.log").read_text()
    assert f"Tracked as MLflow run {run.info.run_id}" in log.replace("\n", " ").replace("  ", " ") or \
        run.info.run_id[:8] in log


def test_the_headline_metrics_are_read_where_the_evaluation_writes_them() -> None:
    metrics = {"portfolio": {"out_of_sample": {"sharpe": 1.5, "deflated_sharpe": 0.4, "turnover_per_day": 3.0,
                                               "cagr": 9.9, "before_costs": {"sharpe": 2.5, "deflated_sharpe": 0.7}},
                             "holdout": {"sharpe": float("nan"), "max_drawdown": -0.1}}}
    assert headline_metrics(metrics) == {
        "out_of_sample.sharpe": 1.5, "out_of_sample.deflated_sharpe": 0.4, "out_of_sample.turnover_per_day": 3.0,
        "out_of_sample.before_costs.sharpe": 2.5, "out_of_sample.before_costs.deflated_sharpe": 0.7,
        "holdout.max_drawdown": -0.1}


def test_the_datasets_tracking_reads_are_outputs_of_the_pipelines() -> None:
    from tests.conftest import PROJECT_ROOT

    bootstrap_project(PROJECT_ROOT)
    from kedro.framework.project import pipelines

    assert BACKTEST_METRICS in pipelines["evaluation"].all_outputs()
    assert STUDY_TRIALS in pipelines["tuning"].all_outputs()


@pytest.mark.slow
def test_tuning_logs_one_nested_run_per_trial(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TRADING_ENGINE_TRACKING", "1")
    parameters = {
        "ingestion": {"symbols": ["BTC/USDT:USDT", "ETH/USDT:USDT"], "timeframes": ["1h"], "start": "2025-01-01",
                      "end": "2025-04-11", "download": {"progress": False}},
        "features": {"targets": {"horizons": [5]}},
        "training": TINY_TRAINING,
        "tuning": {"storage": f"sqlite:///{tmp_path / 'study.db'}", "study_name": "tiny", "n_trials": 2,
                   "n_startup_trials": 2, "trial_training": {}, "search_space": TINY_SPACE},
    }
    project = make_test_project(tmp_path, parameters)
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="test") as session:
        session.run(pipeline_names=["ingestion", "features", "tuning"])

    client = client_of(project)
    experiment = client.get_experiment_by_name("trading_engine")
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    trials = sorted((run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
                    key=lambda run: int(run.data.tags["trial.number"]))
    assert parent.info.status == "FINISHED" and len(trials) == 2 and len(runs) == 3
    import optuna

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'study.db'}")
    for run, trial in zip(trials, study.trials, strict=True):
        assert run.info.run_name == f"trial {trial.number}" and run.data.tags["trial.state"] == trial.state.name
        assert run.data.params == {name: str(value) for name, value in trial.params.items()}
        if trial.value is not None:
            assert run.data.metrics["validation_sharpe"] == pytest.approx(trial.value)
        history = client.get_metric_history(run.info.run_id, "fold_validation_sharpe")
        assert [m.step for m in history] == sorted(trial.intermediate_values)
        assert [m.value for m in history] == pytest.approx([trial.intermediate_values[k] for k in sorted(trial.intermediate_values)])
    assert "reporting/tuning_summary.json" in artifact_paths(client, parent.info.run_id)


def test_a_tracking_failure_is_a_warning_and_the_run_goes_on(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("TRADING_ENGINE_TRACKING", "1")
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the store's folder should be")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker / 'mlflow.db'}")
    project = make_test_project(tmp_path, {"ingestion": {"start": "2025-01-01", "end": "2025-01-03",
                                                         "download": {"progress": False}}})
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="test") as session:
        session.run(pipeline_names=["ingestion"])
    assert (tmp_path / "data/raw/candles/BTC_USDT_5m.parquet").is_file()
    assert any("MLflow tracking failed" in record.getMessage() for record in caplog.records)


def test_live_signals_runs_are_not_tracked_and_everything_else_is(monkeypatch) -> None:
    monkeypatch.delenv("TRADING_ENGINE_TRACKING", raising=False)  # the suite switches tracking off
    settings = TrackingSettings.from_config({"untracked_pipelines": ["signals"]})
    assert not settings.tracks(["signals"])  # one run every bar is not an experiment
    assert settings.tracks(["__default__"]) and settings.tracks(["signals", "paper"])
    assert not TrackingSettings.from_config({"enabled": False}).tracks(["__default__"])
