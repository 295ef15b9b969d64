"""The evaluation of a predictions table: the model, traded with the confidence threshold chosen
on validation, beside the baselines, on the walk-forward out-of-sample period (every `test`
segment) and on the final holdout, before and after costs, per series and for the equal-weight
portfolio; with the significance of its Sharpe ratio and the quality of its predictions.

The layout of the result (`backtest_metrics.json`) is described in docs/metrics.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from trading_engine.backtest.baselines import (
    LogisticBaseline,
    TurnoverProfile,
    mean_reversion_positions,
    momentum_positions,
    random_positions,
)
from trading_engine.backtest.costs import CostModel
from trading_engine.backtest.engine import simulate
from trading_engine.backtest.metrics import (
    DAYS_PER_YEAR,
    daily_returns,
    performance_metrics,
    sharpe_ratio,
)
from trading_engine.backtest.portfolio import (
    align_market,
    bar_values,
    portfolio_returns,
    trade_positions,
)
from trading_engine.backtest.prediction_metrics import prediction_metrics
from trading_engine.backtest.rules import TradingRule, target_positions
from trading_engine.backtest.selection import thresholds_by_fold
from trading_engine.data.schema import parse_series_key, timeframe_to_milliseconds
from trading_engine.params import known_params
from trading_engine.progress import tqdm
from trading_engine.training.splits import Segment

logger = logging.getLogger(__name__)

PERIODS = {"out_of_sample": "test", "holdout": "holdout"}  # period name -> predictions segment
DETERMINISTIC_BASELINES = ("buy_and_hold", "always_short", "momentum", "mean_reversion", "logistic")
HEADLINE_METRICS = ("sharpe", "sortino", "max_drawdown", "win_rate", "profit_factor",
                    "probabilistic_sharpe", "deflated_sharpe", "n_trials")


@dataclass(frozen=True)
class EvaluationSettings:
    horizon: int  # bars; the momentum look-back and the targets the model metrics read
    random_seeds: int = 200  # random-signal baselines drawn per period
    seed: int = 0
    logistic_max_train_rows: int = 200_000  # evenly spaced training rows per fold and timeframe
    logistic_regularisation: float = 1.0  # scikit-learn's C
    calibration_bins: int = 10
    significance_confidence: float = 0.95  # of the minimum track record length

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, horizon: int) -> EvaluationSettings:
        return cls(horizon=int(horizon), **known_params(params, cls, "evaluation settings"))


def period_rows(predictions: pd.DataFrame, segment: str) -> pd.DataFrame:
    """The predictions of one segment. When several folds predict the holdout of a series, the
    latest fold's predictions are the ones traded."""
    rows = predictions.loc[predictions["segment"] == segment]
    if segment == "holdout" and not rows.empty:
        latest = rows.groupby("series", observed=True)["fold"].transform("max")
        rows = rows.loc[rows["fold"] == latest]
    return rows


def _is_timeframe(key: Any) -> bool:
    try:
        timeframe_to_milliseconds(str(key))
    except ValueError:
        return False
    return True


def fold_layouts(training_summary: Mapping[str, Any] | None) -> dict[str | None, dict[str, Any]]:
    """The fold layouts (`FoldLayout.to_dict()`: purge_bars, folds with train / validation /
    test start and end, holdout) found anywhere in the training summary, keyed by the timeframe
    under which they sit (None when not under a timeframe key: it then applies to every series)."""
    found: dict[str | None, dict[str, Any]] = {}

    def visit(node: Any, key: Any) -> None:
        if isinstance(node, Mapping):
            folds = node.get("folds")
            if isinstance(folds, list) and folds and isinstance(folds[0], Mapping) and "train" in folds[0]:
                found[str(key) if _is_timeframe(key) else None] = dict(node)
                return
            for child_key, child in node.items():
                visit(child, child_key)
        elif isinstance(node, list):
            for child in node:
                visit(child, key)

    visit(training_summary or {}, None)
    return found


def _training_mask(index: pd.DatetimeIndex, layout: Mapping[str, Any] | None, fold: int,
                   validation_start: pd.Timestamp | None, purge_bars: int) -> np.ndarray | None:
    """Rows of a series that fold `fold` trained on: the layout's train segment when known, else
    every row more than `purge_bars` bars before the fold's first validation bar; None if neither."""
    if layout is not None:
        for entry in layout.get("folds", []):
            if int(entry.get("fold", -1)) == int(fold):
                train = entry["train"]
                return Segment(pd.Timestamp(train["start"]), pd.Timestamp(train["end"]), 0).contains(index)
    if validation_start is None:
        return None
    stop = int(index.searchsorted(validation_start)) - purge_bars
    return np.arange(len(index)) < stop


def fit_logistic_baselines(predictions: pd.DataFrame, market: Mapping[str, pd.DataFrame],
                           layouts: Mapping[str | None, Mapping[str, Any]], settings: EvaluationSettings,
                           folds: set[int], feature_names: Sequence[str] | None = None,
                           ) -> dict[tuple[str, int], LogisticBaseline]:
    """One logistic baseline per (timeframe, fold), fitted on the fold's training rows of every
    series of that timeframe (evenly thinned to at most `logistic_max_train_rows`), on the model's
    features (`feature_names`, default: every `feat_*` column the series share)."""
    target = f"target_binary_{settings.horizon}"
    validation = predictions.loc[predictions["segment"] == "validation"]
    validation_starts = validation.groupby(["series", "fold"], observed=True)["timestamp"].min()
    series_by_timeframe: dict[str, list[str]] = {}
    for series in sorted(predictions["series"].unique()):
        series_by_timeframe.setdefault(parse_series_key(series)[1], []).append(series)
    models = {}
    for timeframe, members in series_by_timeframe.items():
        layout = layouts.get(timeframe, layouts.get(None))
        purge_bars = int((layout or {}).get("purge_bars", settings.horizon))
        shared = set.intersection(*({str(c) for c in market[s].columns if str(c).startswith("feat_")}
                                    for s in members))
        features = [f for f in feature_names if f in shared] if feature_names else sorted(shared)
        for fold in sorted(folds):
            blocks = []
            for series in members:
                frame = market[series]
                start = validation_starts.get((series, fold))
                mask = _training_mask(pd.DatetimeIndex(frame.index), layout, fold,
                                      None if start is None else pd.Timestamp(start), purge_bars)
                if mask is None:
                    continue
                rows = frame.loc[mask & frame[target].notna().to_numpy(), [*features, target]]
                blocks.append(rows)
            train = pd.concat(blocks) if blocks else pd.DataFrame()
            if train.empty or not features:
                logger.warning("no training rows for the logistic baseline of %s fold %s: it stays flat", timeframe, fold)
                continue
            step = max(1, int(np.ceil(len(train) / settings.logistic_max_train_rows)))
            train = train.iloc[::step]
            models[(timeframe, fold)] = LogisticBaseline.fit(train[features], train[target].to_numpy(),
                                                             settings.logistic_regularisation)
    return models


def logistic_positions(aligned: pd.DataFrame, market: Mapping[str, pd.DataFrame],
                       models: Mapping[tuple[str, int], LogisticBaseline], rule: TradingRule) -> np.ndarray:
    """Positions of the logistic baseline: the shared rule on (1 - P(up), P(up)) without the
    confidence gate (the regression has no confidence head)."""
    positions = np.zeros(len(aligned))
    ungated = replace(rule, confidence_threshold=0.0, size_by_confidence=False)
    for (series, fold), rows in aligned.groupby(["series", "fold"], observed=True).indices.items():
        model = models.get((parse_series_key(series)[1], int(fold)))
        if model is None:
            continue
        values = bar_values(aligned.iloc[rows], market, model.feature_names)
        probability_up = model.probability_up(np.column_stack([values[f] for f in model.feature_names]))
        positions[rows] = target_positions(1.0 - probability_up, probability_up, np.ones(len(rows)), ungated)
    return positions


def model_positions(aligned: pd.DataFrame, thresholds: Mapping[int, float], rule: TradingRule) -> np.ndarray:
    """The model's positions: the shared rule with each fold's selected confidence threshold."""
    positions = np.zeros(len(aligned))
    for fold, rows in aligned.groupby("fold", observed=True).indices.items():
        fold_rule = replace(rule, confidence_threshold=thresholds[int(fold)])
        positions[rows] = target_positions(aligned["prob_down"].to_numpy()[rows], aligned["prob_up"].to_numpy()[rows],
                                           aligned["confidence"].to_numpy()[rows], fold_rule)
    return positions


def baseline_positions(aligned: pd.DataFrame, market: Mapping[str, pd.DataFrame], horizon: int,
                       logistic: Mapping[tuple[str, int], LogisticBaseline], rule: TradingRule) -> dict[str, np.ndarray]:
    """Positions of every deterministic baseline on the rows of `aligned`."""
    signals = {series: pd.DataFrame({"momentum": momentum_positions(market[series]["close"], horizon),
                                     "mean_reversion": mean_reversion_positions(market[series]["close"])})
               for series in aligned["series"].unique()}
    values = bar_values(aligned, signals, ["momentum", "mean_reversion"])
    ones = np.ones(len(aligned))
    return {"buy_and_hold": ones, "always_short": -ones, "momentum": values["momentum"],
            "mean_reversion": values["mean_reversion"],
            "logistic": logistic_positions(aligned, market, logistic, rule)}


class DailyPortfolio:
    """Fast equal-weight portfolio daily returns for many position sets on the same rows (the
    random baselines): the same numbers as `daily_returns(portfolio_returns(...))`."""

    def __init__(self, aligned: pd.DataFrame) -> None:
        stamps, self.timestamps = pd.factorize(pd.DatetimeIndex(aligned["timestamp"]), sort=True)
        self.stamp_codes = stamps
        day_codes, self.days = pd.factorize(pd.DatetimeIndex(self.timestamps).floor("D"), sort=True)
        self.day_codes = day_codes
        self.n_series = aligned["series"].nunique()

    def daily(self, net_return: np.ndarray) -> np.ndarray:
        per_bar = np.bincount(self.stamp_codes, net_return, minlength=len(self.timestamps)) / self.n_series
        return np.expm1(np.bincount(self.day_codes, np.log1p(per_bar), minlength=len(self.days)))


def random_baseline(aligned: pd.DataFrame, model: np.ndarray, costs: CostModel, model_sharpe: float,
                    settings: EvaluationSettings, rng: np.random.Generator) -> dict[str, Any]:
    """The daily Sharpe distribution (after costs) of random signals with the model's turnover."""
    if settings.random_seeds <= 0 or aligned.empty:
        return {"n_seeds": 0}
    starts = aligned["segment_start"].to_numpy()
    profile = TurnoverProfile.of(model, starts)
    portfolio = DailyPortfolio(aligned)
    sharpes, turnovers = np.empty(settings.random_seeds), np.empty(settings.random_seeds)
    bars = (aligned["open"].to_numpy(), aligned["close"].to_numpy(), costs, aligned["funding_rate"].to_numpy())
    for draw in tqdm(range(settings.random_seeds), desc="random baselines", leave=False):
        result = simulate(random_positions(profile, starts, rng), *bars, segment_starts=starts)
        sharpes[draw] = sharpe_ratio(portfolio.daily(result.net_return), DAYS_PER_YEAR)
        turnovers[draw] = result.turnover.sum()
    model_turnover = simulate(model, *bars, segment_starts=starts).turnover.sum()
    p05, p50, p95 = np.percentile(sharpes, [5, 50, 95])
    return {
        "n_seeds": settings.random_seeds,
        "sharpe_mean": float(sharpes.mean()), "sharpe_std": float(sharpes.std(ddof=1)) if sharpes.size > 1 else 0.0,
        "sharpe_p05": float(p05), "sharpe_p50": float(p50), "sharpe_p95": float(p95),
        "model_sharpe": model_sharpe,
        "model_percentile": float(100.0 * np.mean(sharpes < model_sharpe)),
        "turnover_ratio_to_model": float(turnovers.mean() / model_turnover) if model_turnover > 0 else None,
        "profile": {"change_probability": profile.change_probability,
                    "state_shares": dict(zip(("short", "flat", "long"), map(float, profile.state_shares), strict=True)),
                    "size": profile.size},
    }


def _strategy_entry(bars: pd.DataFrame, n_trials: int, confidence: float) -> dict[str, Any]:
    """Performance metrics and significance of the portfolio and of each series."""

    per_series = {str(series): performance_metrics(rows, n_trials, confidence)
                  for series, rows in bars.groupby("series", sort=True, observed=True)}
    return {"portfolio": performance_metrics(bars, n_trials, confidence), "per_series": per_series}


def _with_before_costs(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    return {**after, "before_costs": before}


def evaluate_period(rows: pd.DataFrame, market: Mapping[str, pd.DataFrame], thresholds: Mapping[int, float],
                    rule: TradingRule, costs: CostModel, logistic: Mapping[tuple[str, int], LogisticBaseline],
                    n_trials: int, settings: EvaluationSettings,
                    rng: np.random.Generator) -> tuple[dict[str, Any], pd.DataFrame]:
    """Every strategy on one period: {strategy: {"portfolio": {...}, "per_series": {...}}} with
    before-cost results nested under "before_costs", the random baseline, the model's prediction
    metrics; and the portfolio's daily returns of every strategy (for the plots)."""
    aligned = align_market(rows, market)
    positions = {"model": model_positions(aligned, thresholds, rule),
                 **baseline_positions(aligned, market, settings.horizon, logistic, rule)}
    strategies: dict[str, Any] = {}
    daily_frames = []
    for name, strategy_positions in positions.items():
        entries = {}
        for case, case_costs in (("after_costs", costs), ("before_costs", CostModel.free())):
            bars = trade_positions(aligned, strategy_positions, case_costs)
            entries[case] = _strategy_entry(bars, n_trials if name == "model" else 1, settings.significance_confidence)
            daily = daily_returns(portfolio_returns(bars))
            daily_frames.append(pd.DataFrame({"strategy": name, "costs": case, "date": daily.index,
                                              "daily_return": daily.to_numpy()}))
        after, before = entries["after_costs"], entries["before_costs"]
        strategies[name] = {
            "portfolio": _with_before_costs(after["portfolio"], before["portfolio"]),
            "per_series": {s: _with_before_costs(after["per_series"][s], before["per_series"][s])
                           for s in after["per_series"]},
        }
    random = random_baseline(aligned, positions["model"], costs, strategies["model"]["portfolio"]["sharpe"],
                             settings, rng)
    targets = bar_values(aligned, market, [f"target_dir_{settings.horizon}", f"target_ret_{settings.horizon}"])
    quality = prediction_metrics(aligned.assign(**targets), settings.horizon, settings.calibration_bins)
    return {"strategies": strategies, "random": random, "model": quality}, pd.concat(daily_frames, ignore_index=True)


def _comparison(strategies: Mapping[str, Any], random: Mapping[str, Any]) -> dict[str, Any]:
    """Does the model beat each baseline (after costs, portfolio daily Sharpe)?"""
    model_sharpe = strategies["model"]["portfolio"]["sharpe"]
    result = {name: {"model_sharpe": model_sharpe, "baseline_sharpe": strategies[name]["portfolio"]["sharpe"],
                     "model_beats": bool(model_sharpe > strategies[name]["portfolio"]["sharpe"])}
              for name in DETERMINISTIC_BASELINES}
    if random.get("n_seeds", 0) > 0:
        result["random"] = {"model_sharpe": model_sharpe, "baseline_sharpe": random["sharpe_mean"],
                            "baseline_sharpe_p95": random["sharpe_p95"], "model_percentile": random["model_percentile"],
                            "model_beats": bool(model_sharpe > random["sharpe_p95"])}
    return result


def evaluate_backtest(
    predictions: pd.DataFrame,
    market: Mapping[str, pd.DataFrame],
    selection: Mapping[str, Any],
    rule: TradingRule,
    costs: CostModel,
    training_summary: Mapping[str, Any] | None,
    trials: Mapping[str, int],
    settings: EvaluationSettings,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The whole evaluation: (the backtest_metrics mapping, the portfolio daily returns of every
    strategy, period and cost case as a long table)."""
    n_trials = int(trials["total"])
    rng = np.random.default_rng(settings.seed)
    layouts = fold_layouts(training_summary)
    evaluated_rows = {period: period_rows(predictions, segment) for period, segment in PERIODS.items()}
    folds = {int(f) for rows in evaluated_rows.values() for f in rows["fold"].unique()}
    thresholds = thresholds_by_fold(selection, folds, rule.confidence_threshold)
    logistic = fit_logistic_baselines(predictions, market, layouts, settings, folds,
                                      (training_summary or {}).get("feature_names"))

    periods, daily_frames = {}, []
    for period, rows in evaluated_rows.items():
        if rows.empty:
            logger.warning("no %s predictions: the %s period is not evaluated", PERIODS[period], period)
            continue
        periods[period], daily = evaluate_period(rows, market, thresholds, rule, costs, logistic, n_trials,
                                                 settings, rng)
        daily_frames.append(daily.assign(period=period))

    model = {period: result["strategies"]["model"] for period, result in periods.items()}
    portfolio: dict[str, Any] = {}
    if "out_of_sample" in model:
        portfolio.update({key: model["out_of_sample"]["portfolio"].get(key) for key in HEADLINE_METRICS})
    portfolio.update({period: entry["portfolio"] for period, entry in model.items()})
    series_names = sorted({s for entry in model.values() for s in entry["per_series"]})
    metrics = {
        "portfolio": portfolio,
        "per_series": {s: {period: entry["per_series"][s] for period, entry in model.items() if s in entry["per_series"]}
                       for s in series_names},
        "baselines": {
            **{name: {"portfolio": {p: r["strategies"][name]["portfolio"] for p, r in periods.items()},
                      "per_series": {s: {p: r["strategies"][name]["per_series"][s] for p, r in periods.items()
                                         if s in r["strategies"][name]["per_series"]} for s in series_names}}
               for name in DETERMINISTIC_BASELINES},
            "random": {p: r["random"] for p, r in periods.items()},
        },
        "comparison": {p: _comparison(r["strategies"], r["random"]) for p, r in periods.items()},
        "model": {p: r["model"] for p, r in periods.items()},
        "trading_rule": {
            "rule": asdict(rule), "costs": asdict(costs), "selection_metric": selection.get("metric"),
            "confidence_thresholds": [{"fold": fold, "confidence_threshold": threshold}
                                      for fold, threshold in sorted(thresholds.items())],
        },
        "trials": dict(trials),
        "settings": asdict(settings),
    }
    daily = pd.concat(daily_frames, ignore_index=True) if daily_frames else pd.DataFrame(
        columns=["strategy", "costs", "date", "daily_return", "period"])
    return json_safe(metrics), daily[["period", "strategy", "costs", "date", "daily_return"]]


def json_safe(value: Any) -> Any:
    """Plain JSON: numpy scalars to Python, non-finite floats (an undefined ratio) to None."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
