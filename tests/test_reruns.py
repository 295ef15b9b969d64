"""Runs after runs: a run's partitioned outputs hold exactly that run's series, so changing the
universe (ingestion.symbols, .timeframes) never breaks a later run."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.conftest import make_test_project

# Small enough to run in seconds; the default run trains one short epoch per fold.
PARAMETERS = {
    "ingestion": {"timeframes": ["1h"], "start": "2025-01-01", "end": "2025-03-01", "download": {"progress": False}},
    "features": {"targets": {"horizons": [3]}},
    "training": {"timeframe": "1h", "horizon": 3, "seq_len": 8, "batch_size": 128, "max_epochs": 1, "patience": 1,
                 "max_samples_per_epoch": 512, "device": "cpu", "progress": False,
                 "transformer": {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "dropout": 0.0},
                 "folds": {"n_folds": 2}},
    "evaluation": {"settings": {"random_seeds": 5}},
}
PARTITIONED = {"raw/candles": "{}.parquet", "intermediate/candles": "{}.parquet", "intermediate/quarantine": "{}.parquet",
               "feature/feature_tables": "{}.parquet", "model_input/model_input": "{}.parquet"}


def _run(project: Path, pipelines: list[str] | None = None, runtime: dict | None = None) -> None:
    with KedroSession.create(project_path=project, env="test", runtime_params=runtime) as session:
        session.run(pipeline_names=pipelines)


def _partitions(data: Path) -> dict[str, set[str]]:
    return {folder: {path.name for path in (data / folder).iterdir()} for folder in PARTITIONED}


@pytest.mark.slow
def test_a_run_with_another_universe_leaves_nothing_stale_for_the_next_run(tmp_path: Path) -> None:
    parameters = {**PARAMETERS, "tuning": {"storage": f"sqlite:///{tmp_path / 'tuning.db'}", "study_name": "none"}}
    project = make_test_project(tmp_path, parameters)
    bootstrap_project(project)
    data = tmp_path / "data"

    _run(project, ["ingestion", "features"],
         {"ingestion": {"symbols": ["ETH/USDT:USDT"], "timeframes": ["15m"]}, "training": {"timeframe": "15m"}})
    assert all(found == {"ETH_USDT_15m.parquet"} for found in _partitions(data).values()), _partitions(data)

    _run(project)  # the default run, on the configured universe: failed with KeyError 'ETH_USDT_15m'

    expected = {f"{symbol}_USDT_1h.parquet" for symbol in ("BTC", "ETH", "SOL")}
    assert all(found == expected for found in _partitions(data).values()), _partitions(data)
    assert (data / "reporting" / "backtest_metrics.json").is_file()
