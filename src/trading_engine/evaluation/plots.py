"""Figures of the backtest, built with matplotlib's object API (no pyplot state, headless).

Every function takes the evaluation's outputs (the long table of portfolio daily returns, or the
model's prediction metrics) and returns a `matplotlib.figure.Figure` for a MatplotlibDataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from trading_engine.trading.calendar import DAYS_PER_YEAR

PERIOD_TITLES = {"out_of_sample": "Walk-forward out-of-sample (test folds)", "holdout": "Holdout"}
MODEL = "model"


def _period_axes(periods: list[str], title: str) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(6.5 * max(len(periods), 1), 4.5), layout="constrained")
    axes = figure.subplots(1, max(len(periods), 1), squeeze=False)[0]
    figure.suptitle(title)
    return figure, list(axes)


def _empty(axis: Axes, message: str = "no data") -> None:
    axis.text(0.5, 0.5, message, ha="center", va="center", transform=axis.transAxes)


def _periods(daily: pd.DataFrame) -> list[str]:
    present = list(pd.unique(daily["period"])) if not daily.empty else []
    return [p for p in PERIOD_TITLES if p in present] or ["out_of_sample"]


def _series(daily: pd.DataFrame, period: str, strategy: str, costs: str) -> pd.Series:
    rows = daily.loc[(daily["period"] == period) & (daily["strategy"] == strategy) & (daily["costs"] == costs)]
    return pd.Series(rows["daily_return"].to_numpy(dtype=np.float64), index=pd.DatetimeIndex(rows["date"]))


def _equity_at_day_ends(returns: pd.Series) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Equity at the start of the first day (1) and at the end of each day of `returns`."""
    times = pd.DatetimeIndex(returns.index)
    ends = times + pd.Timedelta(days=1)
    return times[:1].append(ends), np.concatenate([[1.0], np.cumprod(1.0 + returns.to_numpy())])


def equity_curves_figure(daily: pd.DataFrame, costs: str = "after_costs") -> Figure:
    """Equity (start 1) of the model and of every deterministic baseline, per period."""
    periods = _periods(daily)
    figure, axes = _period_axes(periods, f"Equity curves, equal-weight portfolio, {costs.replace('_', ' ')}")
    for axis, period in zip(axes, periods, strict=True):
        axis.set_title(PERIOD_TITLES.get(period, period))
        strategies = list(pd.unique(daily.loc[daily["period"] == period, "strategy"])) if not daily.empty else []
        if not strategies:
            _empty(axis)
            continue
        for strategy in strategies:
            times, equity = _equity_at_day_ends(_series(daily, period, strategy, costs))
            is_model = strategy == MODEL
            axis.plot(times, equity, label=strategy.replace("_", " "),
                      linewidth=2.2 if is_model else 1.0, color="black" if is_model else None,
                      zorder=3 if is_model else 2)
        axis.axhline(1.0, color="grey", linewidth=0.6)
        axis.set_ylabel("equity")
        axis.legend(fontsize=8)
        axis.tick_params(axis="x", labelrotation=30)
    return figure


def drawdown_figure(daily: pd.DataFrame) -> Figure:
    """The model's drawdown at day ends (equity / running peak - 1), before and after costs, per
    period. The table's max_drawdown is marked bar by bar, so it can be deeper than this curve:
    an intraday trough that recovers by the day's end does not show here."""
    periods = _periods(daily)
    figure, axes = _period_axes(periods, "Model drawdown at day ends, equal-weight portfolio "
                                         "(the report's max drawdown is bar by bar, so it can be deeper)")
    for axis, period in zip(axes, periods, strict=True):
        axis.set_title(PERIOD_TITLES.get(period, period))
        drawn = False
        for costs, color in (("before_costs", "tab:blue"), ("after_costs", "tab:red")):
            returns = _series(daily, period, MODEL, costs)
            if returns.empty:
                continue
            times, equity = _equity_at_day_ends(returns)
            drawdown = equity / np.maximum.accumulate(equity) - 1.0
            axis.fill_between(times, drawdown, 0.0, alpha=0.3, color=color)
            axis.plot(times, drawdown, color=color, label=costs.replace("_", " "))
            drawn = True
        if not drawn:
            _empty(axis)
            continue
        axis.set_ylabel("drawdown")
        axis.legend(fontsize=8)
        axis.tick_params(axis="x", labelrotation=30)
    return figure


MIN_ROLLING_WINDOWS = 3  # a rolling Sharpe is drawn only when the period holds this many windows


def rolling_sharpe_figure(daily: pd.DataFrame, window_days: int = 30) -> Figure:
    """Rolling Sharpe ratio (daily returns, x sqrt(365)) of the model and buy and hold, after
    costs, per period, over `window_days`. A period shorter than three windows gets no curve (a
    Sharpe ratio of a few days is noise), only a note saying so."""
    periods = _periods(daily)
    figure, axes = _period_axes(periods, f"Rolling {window_days}-day Sharpe ratio of daily returns (annualised), "
                                         "after costs")
    for axis, period in zip(axes, periods, strict=True):
        model = _series(daily, period, MODEL, "after_costs")
        axis.set_title(PERIOD_TITLES.get(period, period))
        if len(model) < MIN_ROLLING_WINDOWS * window_days:
            _empty(axis, f"{len(model)} days: too short for a {window_days}-day rolling Sharpe\n"
                         f"(needs {MIN_ROLLING_WINDOWS * window_days} days)")
            continue
        for strategy, color in ((MODEL, "black"), ("buy_and_hold", "tab:orange")):
            returns = _series(daily, period, strategy, "after_costs")
            rolling = returns.rolling(window_days, min_periods=window_days)
            sharpe = rolling.mean() / rolling.std(ddof=1) * np.sqrt(DAYS_PER_YEAR)
            axis.plot(sharpe.index + pd.Timedelta(days=1), sharpe.to_numpy(), color=color,
                      label=strategy.replace("_", " "))
        axis.axhline(0.0, color="grey", linewidth=0.6)
        axis.legend(fontsize=8)
        axis.tick_params(axis="x", labelrotation=30)
    return figure


def calibration_figure(model_metrics: Mapping[str, Any]) -> Figure:
    """Reliability diagram of the confidence head: mean confidence vs the share of right traded
    directions per confidence bin (marker area ~ rows in the bin), per period. Bins with fewer
    than 30 predictions are drawn hollow and left off the line: their share is noise."""
    figure = Figure(figsize=(6, 5), layout="constrained")
    axis = figure.subplots()
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="perfect calibration")
    axis.axhline(0.5, color="grey", linestyle=":", linewidth=0.8, label="coin flip")
    for period, metrics in model_metrics.items():
        table = pd.DataFrame(metrics.get("calibration", []))
        if table.empty:
            continue
        reliable = table["reliable"].to_numpy(dtype=bool) if "reliable" in table else np.ones(len(table), bool)
        sizes = 20 + 300 * table["count"] / table["count"].max()
        ece = metrics.get("expected_calibration_error")
        label = f"{PERIOD_TITLES.get(period, period)} (ECE {ece:.3f})" if ece is not None else period
        line = axis.plot(table["mean_confidence"][reliable], table["accuracy"][reliable], label=label)[0]
        axis.scatter(table["mean_confidence"][reliable], table["accuracy"][reliable], s=sizes[reliable], alpha=0.6,
                     color=line.get_color())
        axis.scatter(table["mean_confidence"][~reliable], table["accuracy"][~reliable], s=sizes[~reliable],
                     facecolors="none", edgecolors=line.get_color())
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("confidence (mean in bin)")
    axis.set_ylabel("share of right traded directions")
    axis.set_title("Calibration of the confidence head (hollow: bins under 30 predictions)")
    axis.legend(fontsize=8)
    return figure


def coverage_precision_figure(model_metrics: Mapping[str, Any]) -> Figure:
    """Precision of the traded directions kept by a confidence threshold against the share of
    bars kept, with the chance precision of the same bars (a direction drawn blind, long as
    often as the model's) as a dashed line."""
    figure = Figure(figsize=(6, 5), layout="constrained")
    axis = figure.subplots()
    for period, metrics in model_metrics.items():
        table = pd.DataFrame(metrics.get("coverage_precision", []))
        if table.empty:
            continue
        name = PERIOD_TITLES.get(period, period)
        line = axis.plot(table["coverage"], table["precision"], marker="o", markersize=3, label=f"{name}: model")[0]
        if "chance_precision" in table:
            axis.plot(table["coverage"], table["chance_precision"], linestyle="--", color=line.get_color(),
                      label=f"{name}: chance")
    axis.set_xlim(0, 1.02)
    axis.set_xlabel("coverage (share of bars with confidence >= threshold)")
    axis.set_ylabel("share of right traded directions")
    axis.set_title("Coverage vs precision of the confidence head")
    axis.legend(fontsize=8)
    return figure


SEGMENT_COLOURS = {"train": "tab:gray", "validation": "tab:blue", "test": "tab:green", "holdout": "tab:red"}


def timeline_figure(fold_layout: Mapping[str, Any], tuning: Mapping[str, Any]) -> Figure:
    """Per fold, the bars used for training, validation and test; the holdout and its refitted
    model; the tuning window and the last bar any tuning trial read."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    axis = figure.subplots()
    rows: list[tuple[str, dict[str, Any]]] = [(f"fold {fold['fold']}", fold) for fold in fold_layout.get("folds", [])]
    refit = fold_layout.get("holdout_refit")
    if refit:
        rows.append(("holdout model", {"train": refit["train"], "holdout": refit.get("test")}))
    drawn_labels: set[str] = set()

    def bar(y: float, segment: Mapping[str, Any] | None, name: str, colour: str, height: float = 0.6) -> None:
        if not segment:
            return
        start, end = pd.Timestamp(segment["start"]), pd.Timestamp(segment["end"])
        label = name if name not in drawn_labels else None
        drawn_labels.add(name)
        axis.barh(y, end - start, left=start, height=height, color=colour, label=label, alpha=0.85)

    for position, (_, segments) in enumerate(rows):
        for segment_name, colour in SEGMENT_COLOURS.items():
            bar(position, segments.get(segment_name), segment_name, colour)
    tuning_row = len(rows)
    window = fold_layout.get("tuning_window")
    seen = tuning.get("tuning_window_start") and {"start": tuning["tuning_window_start"],
                                                  "end": tuning["tuning_window_end"]}
    bar(tuning_row, seen or window, "tuning window" + ("" if seen else " (allowed; no study counted)"),
        "tab:orange")
    if tuning.get("last_bar_seen"):
        axis.axvline(pd.Timestamp(tuning["last_bar_seen"]), color="tab:orange", linestyle="--", linewidth=1,
                     label="last bar a tuning trial read")
    axis.set_yticks(range(tuning_row + 1), [name for name, _ in rows] + ["tuning"])
    axis.invert_yaxis()
    axis.set_title("Which bars each model and the tuning read")
    axis.legend(fontsize=8, loc="lower left", ncols=3)
    axis.tick_params(axis="x", labelrotation=30)
    return figure
