"""The whole default pipeline (ingestion -> features -> training -> evaluation) on small synthetic
markets, in a temporary copy of the project's configuration: a random walk must not look
significant, a planted signal must be found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.conftest import make_test_project


def _run(tmp_path: Path, signal_strength: float, end: str = "2025-04-01") -> dict:
    parameters = {
        "ingestion": {"timeframes": ["1h"], "start": "2025-01-01", "end": end,
                      "download": {"progress": False}, "synthetic": {"seed": 3, "signal_strength": signal_strength}},
        "features": {"targets": {"horizons": [3]}},
        "training": {"timeframe": "1h", "horizon": 3, "seq_len": 8, "batch_size": 128, "learning_rate": 3e-3,
                     "weight_decay": 0.0, "max_epochs": 3, "patience": 1, "max_samples_per_epoch": 2048,
                     "device": "cpu", "progress": False,
                     "transformer": {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "dropout": 0.0},
                     "folds": {"n_folds": 2, "validation_fraction": 0.1, "test_fraction": 0.15,
                               "holdout_fraction": 0.15}},
        "evaluation": {"settings": {"random_seeds": 50}},
        "tuning": {"storage": f"sqlite:///{tmp_path / 'tuning.db'}", "study_name": "no_study"},
    }
    project = make_test_project(tmp_path, parameters)
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="test") as session:
        session.run()
    reporting = tmp_path / "data" / "reporting"
    assert (reporting / "backtest_report.md").is_file() and (reporting / "backtest_equity_curves.png").is_file()
    return json.loads((reporting / "backtest_metrics.json").read_text())


@pytest.mark.slow
def test_a_random_walk_is_not_significant_and_loses_little_to_costs(tmp_path) -> None:
    # Nine months: on three, the out-of-sample period is 24 days and a Sharpe ratio's standard
    # error about 4, so a null test would mostly measure luck.
    metrics = _run(tmp_path, signal_strength=0.0, end="2025-10-01")
    for period in ("out_of_sample", "holdout"):
        after_costs = metrics["portfolio"][period]
        assert after_costs["deflated_sharpe"] < 0.95
        assert after_costs["before_costs"]["deflated_sharpe"] < 0.95
        # The cost-aware rule mostly stays out: costs take little (the old rule lost 20+ Sharpe to them).
        assert after_costs["before_costs"]["sharpe"] - after_costs["sharpe"] < 1.5
        assert not metrics["comparison"][period]["all_baselines"]["significant"]
    # No Optuna study: (not trading + 3 x 2 rule candidates) x 2 folds + the epochs early stopping compared.
    trials = metrics["trials"]
    assert trials["rule_choices"] == 14 and metrics["portfolio"]["n_trials"] == 14 + trials["model_variants"]


@pytest.mark.slow
def test_a_planted_signal_is_found(tmp_path) -> None:
    metrics = _run(tmp_path, signal_strength=1.0)
    for period in ("out_of_sample", "holdout"):
        assert metrics["portfolio"][period]["deflated_sharpe"] > 0.95  # after costs
        assert metrics["comparison"][period]["random"]["model_beats"]
        assert metrics["model"][period]["information_coefficient"] > 0.2
