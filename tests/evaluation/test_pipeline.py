"""The evaluation pipeline runs on constructed inputs and writes the promised outputs."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.text import TextDataset

from tests.evaluation.builders import HORIZON, evaluation_inputs
from trading_engine.evaluation.report import PLOT_FILES
from trading_engine.pipelines.evaluation import create_pipeline

REQUIRED = {"sharpe", "sortino", "max_drawdown", "win_rate", "profit_factor", "probabilistic_sharpe",
            "deflated_sharpe", "n_trials"}
SETTINGS = {"random_seeds": 20, "seed": 0, "baseline_max_train_rows": 5000, "logistic_regularisation": 1.0,
            "calibration_bins": 10, "significance_confidence": 0.95, "bootstrap_resamples": 200}
BASELINES = {"flat", "buy_and_hold", "always_short", "trend_following", "momentum", "mean_reversion", "logistic",
             "gradient_boosting", "random"}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reporting")
    predictions, market, summary = evaluation_inputs()
    catalog = DataCatalog(datasets={
        "backtest_metrics": JSONDataset(filepath=str(folder / "backtest_metrics.json")),
        "backtest_report": TextDataset(filepath=str(folder / "backtest_report.md")),
        **{name: MatplotlibDataset(filepath=str(folder / PLOT_FILES[title])) for name, title in (
            ("backtest_equity_curves_plot", "Equity curves"), ("backtest_drawdown_plot", "Drawdown"),
            ("backtest_rolling_sharpe_plot", "Rolling Sharpe"), ("backtest_calibration_plot", "Calibration"),
            ("backtest_coverage_precision_plot", "Coverage vs precision"), ("backtest_timeline_plot", "Timeline"))},
    })
    inputs = {
        "predictions": predictions,
        "model_input": {key: (lambda frame=frame: frame) for key, frame in market.items()},
        "training_summary": summary,
        "params:trading": {"costs": {"taker_fee": 0.0005, "slippage_bps": 1.0}, "rule": {}},
        "params:tuning": {"storage": f"sqlite:///{folder / 'no_study.db'}", "study_name": "none"},
        "params:evaluation.rule_selection": {"grid": {"cost_multiple": [1.0, 2.0]}, "metric": "sharpe_per_bar"},
        "params:evaluation.settings": SETTINGS,
        "params:evaluation.report": {"rolling_sharpe_days": 2, "outputs_folder": str(folder)},
    }
    for name, value in inputs.items():
        catalog[name] = value
    SequentialRunner().run(create_pipeline(), catalog)
    return folder


def test_metrics_json_has_the_promised_layout(outputs) -> None:
    metrics = json.loads((outputs / "backtest_metrics.json").read_text())
    portfolio = metrics["portfolio"]
    assert REQUIRED <= set(portfolio)
    for period in ("out_of_sample", "holdout"):
        assert REQUIRED <= set(portfolio[period])
        assert REQUIRED - {"deflated_sharpe", "n_trials"} <= set(portfolio[period]["before_costs"])
        assert portfolio[period]["n_trials"] == metrics["trials"]["total"]
    assert portfolio["sharpe"] == portfolio["out_of_sample"]["sharpe"]
    assert set(metrics["per_series"]) == {"BTC_USDT_5m", "ETH_USDT_5m"}
    assert "before_costs" in metrics["per_series"]["BTC_USDT_5m"]["holdout"]
    assert set(metrics["baselines"]) == BASELINES
    assert REQUIRED - {"deflated_sharpe"} <= set(metrics["baselines"]["momentum"]["portfolio"]["holdout"])
    assert metrics["baselines"]["random"]["out_of_sample"]["n_seeds"] == 20
    assert set(metrics["comparison"]["out_of_sample"]) == BASELINES | {"all_baselines"}
    assert metrics["trading_rule"]["horizon"] == HORIZON  # from the training summary
    assert {"accuracy", "log_loss", "information_coefficient", "expected_calibration_error"} <= set(
        metrics["model"]["holdout"])
    # No study: the rule candidates of each of the 2 folds + the model variants (epochs) of the summary.
    trials = metrics["trials"]
    assert (trials["optuna"], trials["rule_candidates"], trials["rule_choices"]) == (0, 3, 6)
    assert trials["total"] == 6 + trials["model_variants"] and trials["trial_sharpe_variance"] is None
    assert not (outputs / "no_study.db").exists()


def test_costs_lower_the_model_and_buy_and_hold_pays_the_funding(outputs) -> None:
    metrics = json.loads((outputs / "backtest_metrics.json").read_text())
    oos = metrics["portfolio"]["out_of_sample"]
    assert oos["total_return"] < oos["before_costs"]["total_return"]
    hold = metrics["baselines"]["buy_and_hold"]["portfolio"]["out_of_sample"]
    assert hold["funding"] > 0 and hold["before_costs"]["funding"] == 0
    assert metrics["baselines"]["always_short"]["portfolio"]["out_of_sample"]["funding"] < 0


def test_plots_and_report_are_written_and_linked(outputs) -> None:
    for file in PLOT_FILES.values():
        assert (outputs / file).read_bytes()[:4] == b"\x89PNG"
    report = (outputs / "backtest_report.md").read_text()
    assert all(f"]({file})" in report for file in PLOT_FILES.values())
    assert "beat buy and hold" in report or "beats buy and hold" in report
    assert "| **model** | out-of-sample |" in report


def test_summary_is_logged_last(tmp_path, caplog) -> None:
    from trading_engine.pipelines.evaluation.nodes import log_backtest_summary

    metrics = json.loads(json.dumps({"portfolio": {"out_of_sample": {"sharpe": 1.0, "n_trades": 3}},
                                     "comparison": {"out_of_sample": {"momentum": {
                                         "model_sharpe": 1.0, "baseline_sharpe": np.float64(2.0).item(),
                                         "model_beats": False, "p_value": 0.8, "significant": False}}}}))
    with caplog.at_level(logging.INFO, logger="trading_engine"):
        log_backtest_summary(metrics, "# report", {"outputs_folder": str(tmp_path)})
    assert "the model does NOT beat momentum" in caplog.text and str(tmp_path) in caplog.text
    names = [node.name for node in create_pipeline().nodes]
    assert names[-1] == "log_backtest_summary"
