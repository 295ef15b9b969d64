"""The report and the console summary show what a quant can trust: significance next to every
verdict, no annualised growth from a few weeks, no rolling Sharpe of a few days, no raw Python
values, chance lines and reliable calibration bins apart."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.evaluation.builders import evaluation_inputs
from tests.evaluation.test_pipeline import SETTINGS
from trading_engine.evaluation import plots
from trading_engine.evaluation.backtest import (
    EvaluationSettings,
    configurations_tried,
    evaluate_backtest,
    fit_baseline_forecasts,
    select_all_rules,
)
from trading_engine.evaluation.report import backtest_report, console_summary
from trading_engine.evaluation.selection import RuleSelectionSettings
from trading_engine.trading import CostModel, TradingRule
from trading_engine.trading.metrics import performance_metrics


@pytest.fixture(scope="module")
def metrics() -> dict:
    predictions, market, summary = evaluation_inputs()
    settings = EvaluationSettings.from_params(SETTINGS, 3)
    forecasts = fit_baseline_forecasts(predictions, market, summary, settings)
    selection = select_all_rules(predictions, forecasts, market, TradingRule(), CostModel(), 3,
                                 RuleSelectionSettings(grid={"cost_multiple": [1.0, 2.0]}, metric="sharpe_per_bar"))
    trials = configurations_tried({"n_trials": 0, "values": [], "attributes": {}}, selection, summary)
    result, _ = evaluate_backtest(predictions, forecasts, market, selection, CostModel(), trials, settings)
    return json.loads(json.dumps(result))


def test_the_console_summary_states_the_significance_of_each_period(metrics) -> None:
    summary = console_summary(metrics)
    assert "Significance:" in summary and "DSR" in summary and "bootstrap interval" in summary
    for period in ("out-of-sample", "holdout"):
        assert f"- {period}: Sharpe after costs" in summary
    # Every verdict says whether the difference is significant.
    verdicts = [line for line in summary.splitlines() if "beat" in line and "Sharpe after costs" in line]
    assert verdicts and all("significant" in line or "significance unknown" in line for line in verdicts)


def test_cagr_is_shown_only_for_a_year_or_more() -> None:
    index = pd.date_range("2024-01-01", periods=24 * 400, freq="1h", tz="UTC")
    bars = pd.DataFrame({"timestamp": index, "series": "A_USDT_1h", "held_position": 1.0,
                         "gross_return": 1e-4, "fee_cost": 0.0, "slippage_cost": 0.0, "funding_cost": 0.0,
                         "net_return": 1e-4, "turnover": 0.0})
    assert performance_metrics(bars.iloc[: 24 * 9])["cagr"] is None  # 9 days: no 14,000 % CAGR
    assert performance_metrics(bars)["cagr"] == pytest.approx(1.0001 ** (24 * 365) - 1, rel=1e-9)


def test_the_report_has_no_raw_python_values_and_says_where_the_money_went(metrics) -> None:
    report = backtest_report(metrics)
    rule_section = report.split("## Trading rule")[1].split("## Prediction quality")[0]
    assert "{'" not in rule_section and "': " not in rule_section and "None" not in rule_section
    assert "| **model** | 0 | " in rule_section  # the rule of each fold, in words
    assert "## Where the money went" in report and "| fees |" in report
    assert "n/a (< 1 year)" in report  # the constructed periods are days long


def test_a_short_period_gets_no_rolling_sharpe_and_the_drawdown_plot_says_why_it_differs() -> None:
    days = pd.date_range("2024-01-01", periods=9, freq="D")
    daily = pd.DataFrame({"period": "out_of_sample", "strategy": np.repeat(["model", "buy_and_hold"], 9),
                          "costs": "after_costs", "date": np.tile(days, 2), "daily_return": 0.01})
    figure = plots.rolling_sharpe_figure(daily, window_days=30)
    axis = figure.axes[0]
    assert not axis.lines and "too short" in axis.texts[0].get_text()
    assert "bar by bar" in plots.drawdown_figure(daily)._suptitle.get_text()


def test_calibration_marks_thin_bins_and_coverage_draws_chance(metrics) -> None:
    model = metrics["model"]
    bins = pd.DataFrame(model["out_of_sample"]["calibration"])
    assert (bins["reliable"] == (bins["count"] >= 30)).all()
    figure = plots.coverage_precision_figure(model)
    labels = [line.get_label() for line in figure.axes[0].lines]
    assert any(label.endswith("chance") for label in labels)
