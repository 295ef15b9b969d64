"""Nodes of the evaluation pipeline: predictions, model input and the training summary in; the
baselines' forecasts, the chosen rules, the backtest metrics, plots and report out. The domain
lives in trading_engine.trading and trading_engine.evaluation."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from trading_engine.evaluation import plots
from trading_engine.evaluation.backtest import (
    EvaluationSettings,
    configurations_tried,
    evaluate_backtest,
    fit_baseline_forecasts,
    select_all_rules,
    training_horizon,
)
from trading_engine.evaluation.report import PLOT_FILES, backtest_report, console_summary
from trading_engine.evaluation.selection import RuleSelectionSettings
from trading_engine.trading import CostModel, TradingRule
from trading_engine.training.windows import FEATURE_PREFIX
from trading_engine.tuning.space import space_entries
from trading_engine.tuning.storage import study_record

logger = logging.getLogger(__name__)
RULE_PREFIX = "trading.rule."


def _market(model_input: Mapping[str, Callable[[], pd.DataFrame]], predictions: pd.DataFrame,
            with_features: bool = False) -> dict[str, pd.DataFrame]:
    """Load the model-input partitions of the series that have predictions: their market and
    target columns (a third of the table), or also the features `with_features` (the fitted
    baselines)."""
    wanted = sorted(predictions["series"].unique())
    missing = set(wanted) - set(model_input)
    if missing:
        raise KeyError(f"model_input has no partition for {sorted(missing)}")
    if with_features:
        return {series: model_input[series]() for series in wanted}
    return {series: _without_features(model_input[series]()) for series in wanted}


def _without_features(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[column for column in frame.columns if not str(column).startswith(FEATURE_PREFIX)]]


def forecast_baselines(predictions: pd.DataFrame, model_input: Mapping[str, Callable[[], pd.DataFrame]],
                       training_summary: dict[str, Any], settings: dict[str, Any]) -> pd.DataFrame:
    """The forecasting baselines (momentum, mean reversion, logistic, gradient boosting), fitted
    per fold on training rows, on the model's bars."""
    return fit_baseline_forecasts(predictions, _market(model_input, predictions, with_features=True), training_summary,
                                  EvaluationSettings.from_params(settings, training_horizon(training_summary)))


def tuned_rule_parameters(tuning: Mapping[str, Any]) -> list[str]:
    """The trading-rule parameters the tuning study searches: tuning owns them."""
    return [name.removeprefix(RULE_PREFIX) for name, _ in space_entries(tuning.get("search_space") or {})
            if name.startswith(RULE_PREFIX)]


def select_trading_rules(predictions: pd.DataFrame, baseline_forecasts: pd.DataFrame,
                         model_input: Mapping[str, Callable[[], pd.DataFrame]], training_summary: dict[str, Any],
                         trading: dict[str, Any], rule_selection: dict[str, Any],
                         tuning: dict[str, Any]) -> dict[str, Any]:
    """Per fold and forecaster, the rule with the best validation score (validation rows only).
    A rule parameter that tuning searches is not selected again: its value is `trading.rule`'s."""
    settings = RuleSelectionSettings.from_params(rule_selection)
    tuned = [name for name in tuned_rule_parameters(tuning) if name in settings.grid]
    if tuned:
        logger.info("trading.rule.%s searched by tuning: the evaluation keeps its value and does not select it "
                    "again", ", trading.rule.".join(tuned))
        settings = settings.without(tuned)
    validation = pd.concat([predictions.loc[predictions["segment"] == "validation"],
                            baseline_forecasts.loc[baseline_forecasts["segment"] == "validation"]])
    return select_all_rules(predictions, baseline_forecasts, _market(model_input, validation),
                            TradingRule.from_params(trading.get("rule")), CostModel.from_params(trading.get("costs")),
                            training_horizon(training_summary), settings)


def count_configurations_tried(tuning: dict[str, Any], rule_selection: dict[str, Any],
                               training_summary: dict[str, Any]) -> dict[str, Any]:
    """Every configuration tried, for the deflated Sharpe ratio: the tuning study's trials, the
    rule candidates of every fold that chose one, and the model variants early stopping chose
    among (every epoch evaluated on validation); the variance of the trials' Sharpe ratios (per
    day) when the study has at least MIN_TRIALS_FOR_VARIANCE complete trials; and which bars
    the study's trials read."""
    return configurations_tried(study_record(tuning.get("storage"), tuning.get("study_name")), rule_selection,
                                training_summary)


def evaluate_strategies(predictions: pd.DataFrame, baseline_forecasts: pd.DataFrame,
                        model_input: Mapping[str, Callable[[], pd.DataFrame]], training_summary: dict[str, Any],
                        rule_selection: dict[str, Any], configurations_tried: dict[str, int],
                        trading: dict[str, Any], settings: dict[str, Any]) -> tuple[dict[str, Any], pd.DataFrame]:
    """The backtest metrics (model, baselines, significance, prediction quality) and the
    portfolio daily returns of every strategy."""
    return evaluate_backtest(predictions, baseline_forecasts, _market(model_input, predictions), rule_selection,
                             CostModel.from_params(trading.get("costs")), configurations_tried,
                             EvaluationSettings.from_params(settings, training_horizon(training_summary)))


def plot_timeline(training_summary: dict[str, Any], configurations_tried: dict[str, Any]) -> Figure:
    return plots.timeline_figure(training_summary.get("fold_layout", {}), configurations_tried.get("tuning", {}))


def plot_equity_curves(backtest_daily_returns: pd.DataFrame) -> Figure:
    return plots.equity_curves_figure(backtest_daily_returns)


def plot_drawdown(backtest_daily_returns: pd.DataFrame) -> Figure:
    return plots.drawdown_figure(backtest_daily_returns)


def plot_rolling_sharpe(backtest_daily_returns: pd.DataFrame, report: dict[str, Any]) -> Figure:
    return plots.rolling_sharpe_figure(backtest_daily_returns, int(report["rolling_sharpe_days"]))


def plot_calibration(backtest_metrics: dict[str, Any]) -> Figure:
    return plots.calibration_figure(backtest_metrics.get("model", {}))


def plot_coverage_precision(backtest_metrics: dict[str, Any]) -> Figure:
    return plots.coverage_precision_figure(backtest_metrics.get("model", {}))


def write_backtest_report(backtest_metrics: dict[str, Any]) -> str:
    return backtest_report(backtest_metrics)


def log_backtest_summary(backtest_metrics: dict[str, Any], backtest_report: str, report: dict[str, Any]) -> None:
    """The last words of `kedro run`: the summary table, the significance, the verdicts and where
    the outputs are."""
    folder = report["outputs_folder"]
    logger.info("%s\nOutputs in %s/: backtest_metrics.json, backtest_report.md (%d characters), %s",
                console_summary(backtest_metrics), folder, len(backtest_report), ", ".join(PLOT_FILES.values()))
