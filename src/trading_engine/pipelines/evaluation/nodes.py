"""Nodes of the evaluation pipeline: predictions and model input in; the backtest metrics, plots
and report out. The domain lives in trading_engine.trading and trading_engine.evaluation."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from trading_engine.evaluation import plots
from trading_engine.evaluation.backtest import EvaluationSettings, evaluate_backtest
from trading_engine.evaluation.report import PLOT_FILES, backtest_report, summary_table, verdicts
from trading_engine.evaluation.selection import select_confidence_thresholds
from trading_engine.trading import CostModel, TradingRule
from trading_engine.tuning.storage import count_trials

logger = logging.getLogger(__name__)


def _market(model_input: Mapping[str, Callable[[], pd.DataFrame]], predictions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Load the model-input partitions of the series that have predictions."""
    wanted = sorted(predictions["series"].unique())
    missing = set(wanted) - set(model_input)
    if missing:
        raise KeyError(f"model_input has no partition for {sorted(missing)}")
    return {series: model_input[series]() for series in wanted}


def select_confidence_threshold(predictions: pd.DataFrame, model_input: Mapping[str, Callable[[], pd.DataFrame]],
                                trading: dict[str, Any], threshold_selection: dict[str, Any]) -> dict[str, Any]:
    """Per fold, the confidence threshold with the best validation score (validation rows only)."""
    validation = predictions.loc[predictions["segment"] == "validation"]
    return select_confidence_thresholds(validation, _market(model_input, validation),
                                        TradingRule.from_params(trading.get("rule")),
                                        CostModel.from_params(trading.get("costs")),
                                        threshold_selection["quantiles"], threshold_selection["metric"])


def count_configurations_tried(tuning: dict[str, Any], confidence_threshold_selection: dict[str, Any]) -> dict[str, int]:
    """Every configuration tried: the tuning study's trials plus the threshold candidates."""
    optuna_trials = count_trials(tuning.get("storage"), tuning.get("study_name"))
    candidates = int(confidence_threshold_selection["n_configurations"])
    return {"optuna": optuna_trials, "confidence_threshold_candidates": candidates,
            "total": optuna_trials + candidates}


def evaluate_strategies(predictions: pd.DataFrame, model_input: Mapping[str, Callable[[], pd.DataFrame]],
                        training_summary: dict[str, Any], confidence_threshold_selection: dict[str, Any],
                        configurations_tried: dict[str, int], trading: dict[str, Any], horizon: int,
                        settings: dict[str, Any]) -> tuple[dict[str, Any], pd.DataFrame]:
    """The backtest metrics (model, baselines, significance, prediction quality) and the
    portfolio daily returns of every strategy."""
    return evaluate_backtest(predictions, _market(model_input, predictions), confidence_threshold_selection,
                             TradingRule.from_params(trading.get("rule")), CostModel.from_params(trading.get("costs")),
                             training_summary, configurations_tried, EvaluationSettings.from_params(settings, horizon))


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
    """The last words of `kedro run`: the summary table, the verdicts and where the outputs are."""
    folder = report["outputs_folder"]
    logger.info("Backtest summary (after costs; equal-weight portfolio)\n%s\n%s\nOutputs in %s/: "
                "backtest_metrics.json, backtest_report.md (%d characters), %s",
                summary_table(backtest_metrics), "\n".join(verdicts(backtest_metrics)), folder,
                len(backtest_report), ", ".join(PLOT_FILES.values()))
