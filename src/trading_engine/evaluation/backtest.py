"""The evaluation of a predictions table: the model, traded with the rule chosen on validation,
beside the baselines, on the walk-forward out-of-sample period (every `test` segment) and on the
final holdout, before and after costs, per series and for the equal-weight portfolio; with the
significance of its Sharpe ratio, of its differences with each baseline, and the quality of its
predictions.

The layout of the result (`backtest_metrics.json`) is described in docs/metrics.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from trading_engine.data.schema import parse_series_key, timeframe_to_milliseconds
from trading_engine.data.segments import Segment
from trading_engine.evaluation.baselines import (
    GradientBoostingForecast,
    ProbabilityForecast,
    SlopeForecast,
    TurnoverProfile,
    last_return,
    random_positions,
    trend_following_positions,
)
from trading_engine.evaluation.prediction_metrics import prediction_metrics
from trading_engine.evaluation.selection import RuleSelectionSettings, rules_by_fold, select_rules
from trading_engine.params import known_params
from trading_engine.progress import tqdm
from trading_engine.trading.calendar import DAYS_PER_YEAR, series_bar_length
from trading_engine.trading.costs import CostModel
from trading_engine.trading.engine import simulate
from trading_engine.trading.metrics import daily_returns, performance_metrics, sharpe_ratio
from trading_engine.trading.portfolio import (
    align_market,
    bar_values,
    portfolio_returns,
    rule_positions,
    trade_positions,
)
from trading_engine.trading.rule import TradingRule
from trading_engine.trading.significance import sharpe_difference_test

logger = logging.getLogger(__name__)

PERIODS = {"out_of_sample": "test", "holdout": "holdout"}  # period name -> predictions segment
# Baselines that forecast the horizon's return and trade it through the model's rule family.
FORECASTING_BASELINES = ("momentum", "mean_reversion", "logistic", "gradient_boosting")
# Baselines that give positions directly.
POSITION_BASELINES = ("flat", "buy_and_hold", "always_short", "trend_following")
DETERMINISTIC_BASELINES = (*POSITION_BASELINES, *FORECASTING_BASELINES)
STRONGEST_BASELINE = "gradient_boosting"  # the model must beat it before the report says "beats the baselines"
HEADLINE_METRICS = ("sharpe", "sortino", "max_drawdown", "win_rate", "profit_factor",
                    "probabilistic_sharpe", "deflated_sharpe", "n_trials")
FORECAST_COLUMNS = ("strategy", "timestamp", "series", "symbol", "timeframe", "fold", "segment", "pred_return",
                    "confidence")


@dataclass(frozen=True)
class EvaluationSettings:
    horizon: int  # bars: the forecasts' horizon (from the training summary), the targets the metrics read
    random_seeds: int = 200  # random-signal baselines drawn per period
    seed: int = 0
    baseline_max_train_rows: int = 200_000  # evenly spaced training rows per fold and timeframe
    logistic_regularisation: float = 1.0  # scikit-learn's C
    calibration_bins: int = 10
    significance_confidence: float = 0.95  # of the minimum track record length and the Sharpe interval
    bootstrap_resamples: int = 2000  # stationary block bootstrap: Sharpe intervals and difference tests
    significance_level: float = 0.05  # a Sharpe difference is significant when its p-value is below this
    trend_target_volatility: float = 0.2  # the trend-following baseline's annual volatility target
    trend_max_leverage: float = 2.0

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, horizon: int) -> EvaluationSettings:
        return cls(horizon=int(horizon), **known_params(params, cls, "evaluation settings"))


def training_horizon(training_summary: Mapping[str, Any]) -> int:
    """The horizon (bars) the model was trained on: what training wrote, not the parameters."""
    horizon = (training_summary.get("config") or {}).get("horizon", training_summary.get("horizon"))
    if horizon is None:
        raise ValueError("the training summary names no horizon: run the training pipeline first")
    return int(horizon)


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


def training_mask(index: pd.DatetimeIndex, layout: Mapping[str, Any] | None, fold: int) -> np.ndarray:
    """Rows of a series that fold `fold` (or the holdout's refit) trained on, from the layout."""
    refit = (layout or {}).get("holdout_refit")
    for entry in [*(layout or {}).get("folds", []), *([refit] if refit else [])]:
        if int(entry.get("fold", -1)) == int(fold):
            train = entry["train"]
            return Segment(pd.Timestamp(train["start"]), pd.Timestamp(train["end"]), 0).contains(index)
    raise ValueError(f"the training summary has no layout for fold {fold}: cannot find its training rows")


def _thinned(frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    step = max(1, int(np.ceil(len(frame) / max_rows)))
    return frame.iloc[::step]


def fit_baseline_forecasts(predictions: pd.DataFrame, market: Mapping[str, pd.DataFrame],
                           training_summary: Mapping[str, Any], settings: EvaluationSettings) -> pd.DataFrame:
    """The forecasts of every forecasting baseline on every row of `predictions` (the same
    series, folds, segments and bars as the model): FORECAST_COLUMNS, with `pred_return` the
    baseline's expected log return over the horizon and `confidence` 1.

    Per (timeframe, fold), each baseline is fitted on the fold's training rows of every series of
    that timeframe (from the fold layout in the training summary; evenly thinned to at most
    `baseline_max_train_rows`), on the model's features; gradient boosting is early-stopped on
    the fold's validation rows, and the holdout's refit keeps the last fold's number of trees.
    Later rows are never read by a fit (tested)."""
    horizon = settings.horizon
    target = f"target_ret_{horizon}"
    layouts = fold_layouts(training_summary)
    feature_names = training_summary.get("feature_names")
    series_by_timeframe: dict[str, list[str]] = {}
    for series in sorted(predictions["series"].unique()):
        series_by_timeframe.setdefault(parse_series_key(series)[1], []).append(series)
    blocks = []
    for timeframe, members in series_by_timeframe.items():
        layout = layouts.get(timeframe, layouts.get(None))
        shared = set.intersection(*({str(c) for c in market[s].columns if str(c).startswith("feat_")}
                                    for s in members))
        features = [f for f in feature_names if f in shared] if feature_names else sorted(shared)
        momentum = {s: last_return(market[s]["close"], horizon) for s in members}
        reversal = {s: last_return(market[s]["close"], 1) for s in members}
        rows_of = predictions.loc[predictions["series"].isin(members)]
        trees: list[int] = []
        for fold, fold_rows in rows_of.groupby("fold", sort=True):
            train_parts, validation_parts = [], []
            for series in members:
                frame = market[series]
                known = frame[target].notna().to_numpy()
                mask = training_mask(pd.DatetimeIndex(frame.index), layout, int(fold)) & known
                train_parts.append(frame.loc[mask, [*features, target]].assign(
                    momentum=momentum[series][mask].to_numpy(), reversal=reversal[series][mask].to_numpy()))
                validation_stamps = fold_rows.loc[(fold_rows["series"] == series)
                                                  & (fold_rows["segment"] == "validation"), "timestamp"]
                validation = frame.loc[frame.index.isin(validation_stamps) & known, [*features, target]]
                validation_parts.append(validation)
            train = _thinned(pd.concat(train_parts), settings.baseline_max_train_rows)
            validation = pd.concat(validation_parts)
            if train.empty or not features or (validation.empty and not trees):
                raise ValueError(f"the baselines of {timeframe} fold {fold} have {len(train)} training and "
                                 f"{len(validation)} validation rows")
            returns = train[target].to_numpy()
            momentum_fit = SlopeForecast.fit(train["momentum"].to_numpy(), returns, horizon, +1.0)
            reversal_fit = SlopeForecast.fit(train["reversal"].to_numpy(), returns, 1, -1.0)
            logistic_fit = ProbabilityForecast.fit(train[features], returns, settings.logistic_regularisation)
            if validation.empty:  # the holdout's refit: as many trees as the last fold's early stopping kept
                boosting_fit = GradientBoostingForecast.fit(train[features], returns, None, None, seed=settings.seed,
                                                            max_iterations=trees[-1])
            else:
                boosting_fit = GradientBoostingForecast.fit(train[features], returns, validation[features],
                                                            validation[target].to_numpy(), seed=settings.seed)
            trees.append(int(boosting_fit.model.n_iter_))
            logger.info("baselines of %s fold %d fitted on %d training rows: momentum slope %.3f, mean-reversion "
                        "slope %.3f, gradient boosting %d trees", timeframe, fold, len(train), momentum_fit.slope,
                        reversal_fit.slope, boosting_fit.model.n_iter_)
            for series, rows in fold_rows.groupby("series", sort=False, observed=True):
                stamps = pd.DatetimeIndex(rows["timestamp"])
                frame = market[series]
                values = frame.loc[stamps, features].to_numpy(dtype=np.float32)
                forecasts = {
                    "momentum": momentum_fit.slope * momentum[series].reindex(stamps).to_numpy(),
                    "mean_reversion": reversal_fit.slope * reversal[series].reindex(stamps).to_numpy(),
                    "logistic": logistic_fit.expected_return(values),
                    "gradient_boosting": boosting_fit.expected_return(values),
                }
                for name, forecast in forecasts.items():
                    blocks.append(rows[["timestamp", "series", "symbol", "timeframe", "fold", "segment"]].assign(
                        strategy=name, pred_return=np.asarray(forecast, dtype=np.float64), confidence=1.0))
    if not blocks:
        return pd.DataFrame(columns=list(FORECAST_COLUMNS))
    return pd.concat(blocks, ignore_index=True)[list(FORECAST_COLUMNS)]


MIN_TRIALS_FOR_VARIANCE = 10  # complete trials needed to use their measured Sharpe variance in the DSR


def configurations_tried(study: Mapping[str, Any], rule_selection: Mapping[str, Any],
                         training_summary: Mapping[str, Any]) -> dict[str, Any]:
    """N for the deflated Sharpe ratio and the variance of the trials' Sharpe ratios.

    N = the study's trials (complete or pruned) + the rule candidates x the folds that chose
    among them + the model variants (every epoch early stopping evaluated on validation). The
    variance is that of the complete trials' objective values (mean validation Sharpe, annualised
    from days) converted to per-day units, when there are at least MIN_TRIALS_FOR_VARIANCE of
    them; else None (the significance then assumes luck-only trials)."""
    candidates = int(rule_selection["n_configurations"])
    choosing_folds = max(len(rule_selection.get("strategies", {}).get("model", {}).get("folds", [])), 1)
    variants = int(sum(int(fold.get("epochs_run", 1)) for fold in training_summary.get("folds", [])))
    values = np.asarray(study.get("values", []), dtype=np.float64) / np.sqrt(DAYS_PER_YEAR)
    variance = float(np.var(values, ddof=1)) if values.size >= MIN_TRIALS_FOR_VARIANCE else None
    optuna_trials = int(study.get("n_trials", 0))
    return {"optuna": optuna_trials, "rule_candidates": candidates, "rule_choices": candidates * choosing_folds,
            "model_variants": variants, "total": optuna_trials + candidates * choosing_folds + variants,
            "trial_sharpe_variance": variance, "n_trial_sharpes": int(values.size),
            "tuning": dict(study.get("attributes", {}))}


def select_all_rules(predictions: pd.DataFrame, baseline_forecasts: pd.DataFrame, market: Mapping[str, pd.DataFrame],
                     base: TradingRule, costs: CostModel, horizon: int,
                     settings: RuleSelectionSettings) -> dict[str, Any]:
    """The rule of each fold, chosen on validation rows, for the model and for every forecasting
    baseline (each from its own forecasts, with the same candidates)."""
    strategies = {"model": select_rules(predictions, market, base, costs, horizon, settings)}
    for name, rows in baseline_forecasts.groupby("strategy", sort=False):
        strategies[str(name)] = select_rules(rows, market, base, costs, horizon, settings)
    n_configurations = strategies["model"]["n_configurations"]
    return {"metric": settings.metric, "grid": settings.grid, "min_score": settings.min_score,
            "min_deflated_sharpe": settings.min_deflated_sharpe, "n_configurations": n_configurations,
            "base_rule": asdict(base), "strategies": strategies}


def fold_rule_positions(aligned: pd.DataFrame, expected_return: np.ndarray, confidence: np.ndarray | None,
                        rules: Mapping[int, TradingRule], costs: CostModel, horizon: int,
                        market: Mapping[str, pd.DataFrame]) -> np.ndarray:
    """Positions of a forecaster on the rows of `aligned`, each fold with its own rule."""
    positions = np.zeros(len(aligned))
    for fold, rows in aligned.groupby("fold", observed=True).indices.items():
        positions[rows] = rule_positions(aligned.iloc[rows], expected_return[rows], rules[int(fold)], costs, horizon,
                                         None if confidence is None else confidence[rows], market)
    return positions


def position_baselines(aligned: pd.DataFrame, market: Mapping[str, pd.DataFrame],
                       settings: EvaluationSettings) -> dict[str, np.ndarray]:
    """Positions of the baselines that do not forecast, on the rows of `aligned`."""
    trend = {series: pd.DataFrame({"trend_following": trend_following_positions(
                 market[series]["close"], target_volatility=settings.trend_target_volatility,
                 max_leverage=settings.trend_max_leverage, bar=series_bar_length(series))})
             for series in aligned["series"].unique()}
    ones = np.ones(len(aligned))
    return {"flat": 0.0 * ones, "buy_and_hold": ones, "always_short": -ones,
            "trend_following": bar_values(aligned, trend, ["trend_following"])["trend_following"]}


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
        with np.errstate(divide="ignore"):  # a liquidated bar: log growth -inf, the day -100 %
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
    bars = (aligned["open"].to_numpy(), aligned["close"].to_numpy(), costs, aligned["funding_rate"].to_numpy(),
            starts, aligned["gap_before"].to_numpy())
    for draw in tqdm(range(settings.random_seeds), desc="random baselines", leave=False):
        result = simulate(random_positions(profile, starts, rng), *bars)
        sharpes[draw] = sharpe_ratio(portfolio.daily(result.net_return), DAYS_PER_YEAR)
        turnovers[draw] = result.turnover.sum()
    model_turnover = simulate(model, *bars).turnover.sum()
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


def _strategy_entry(bars: pd.DataFrame, n_trials: int, trials_variance: float | None, settings: EvaluationSettings,
                    interval: bool) -> dict[str, Any]:
    """Performance metrics and significance of the portfolio and of each series."""
    per_series = {str(series): performance_metrics(rows, n_trials, settings.significance_confidence,
                                                   trials_sharpe_variance=trials_variance)
                  for series, rows in bars.groupby("series", sort=True, observed=True)}
    portfolio = performance_metrics(bars, n_trials, settings.significance_confidence,
                                    settings.bootstrap_resamples if interval else 0, settings.seed, trials_variance)
    return {"portfolio": portfolio, "per_series": per_series}


def _with_before_costs(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    return {**after, "before_costs": before}


def _merge_forecasts(aligned: pd.DataFrame, forecasts: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """`aligned` with one column per forecasting baseline: its forecast of each row's bar."""
    keys = ["series", "fold", "segment", "timestamp"]
    wide = forecasts.pivot_table(index=keys, columns="strategy", values="pred_return", observed=True, aggfunc="first")
    merged = aligned.merge(wide.reset_index(), on=keys, how="left", validate="one_to_one")
    for name in names:
        if name not in merged.columns:
            merged[name] = np.nan
    return merged


def evaluate_period(rows: pd.DataFrame, baseline_forecasts: pd.DataFrame, market: Mapping[str, pd.DataFrame],
                    rules: Mapping[str, Mapping[int, TradingRule]], costs: CostModel, trials: Mapping[str, Any],
                    settings: EvaluationSettings, rng: np.random.Generator) -> tuple[dict[str, Any], pd.DataFrame]:
    """Every strategy on one period: {strategy: {"portfolio": {...}, "per_series": {...}}} with
    before-cost results nested under "before_costs", the random baseline, the model's prediction
    metrics; and the portfolio's daily returns of every strategy (for the plots)."""
    aligned = _merge_forecasts(align_market(rows, market), baseline_forecasts, FORECASTING_BASELINES)
    horizon = settings.horizon
    positions = {"model": fold_rule_positions(aligned, aligned["pred_return"].to_numpy(dtype=np.float64),
                                              aligned["confidence"].to_numpy(dtype=np.float64), rules["model"],
                                              costs, horizon, market)}
    positions.update(position_baselines(aligned, market, settings))
    for name in FORECASTING_BASELINES:
        positions[name] = fold_rule_positions(aligned, aligned[name].to_numpy(dtype=np.float64), None, rules[name],
                                              costs, horizon, market)
    strategies: dict[str, Any] = {}
    daily_frames = []
    for name, strategy_positions in positions.items():
        entries = {}
        n_trials = (trials["total"] if name == "model" else trials["rule_choices"] if name in FORECASTING_BASELINES
                    else 1)
        variance = trials.get("trial_sharpe_variance") if name == "model" else None
        for case, case_costs in (("after_costs", costs), ("before_costs", CostModel.free())):
            bars = trade_positions(aligned, strategy_positions, case_costs)
            entries[case] = _strategy_entry(bars, n_trials, variance, settings, interval=case == "after_costs")
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
    targets = bar_values(aligned, market, [f"target_dir_{horizon}", f"target_ret_{horizon}"])
    quality = prediction_metrics(aligned.assign(**targets), horizon, settings.calibration_bins)
    daily = pd.concat(daily_frames, ignore_index=True)
    return {"strategies": strategies, "random": random, "model": quality}, daily


def compare_with_baselines(strategies: Mapping[str, Any], random: Mapping[str, Any], daily: pd.DataFrame,
                           settings: EvaluationSettings) -> dict[str, Any]:
    """Does the model beat each baseline (after costs, portfolio daily Sharpe), and is the
    difference significant (stationary block bootstrap of the paired daily returns)?"""
    after = daily.loc[daily["costs"] == "after_costs"].pivot_table(index="date", columns="strategy",
                                                                    values="daily_return", aggfunc="first")
    model_sharpe = strategies["model"]["portfolio"]["sharpe"]
    result: dict[str, Any] = {}
    for name in DETERMINISTIC_BASELINES:
        baseline_sharpe = strategies[name]["portfolio"]["sharpe"]
        paired = after[["model", name]].dropna()
        test = sharpe_difference_test(paired["model"].to_numpy(), paired[name].to_numpy(),
                                      settings.bootstrap_resamples, settings.seed)
        p_value = test["p_value"]
        beats = bool(model_sharpe > baseline_sharpe)
        result[name] = {"model_sharpe": model_sharpe, "baseline_sharpe": baseline_sharpe, "model_beats": beats,
                        "p_value": p_value,
                        "significant": bool(beats and p_value is not None and p_value < settings.significance_level)}
    if random.get("n_seeds", 0) > 0:
        result["random"] = {"model_sharpe": model_sharpe, "baseline_sharpe": random["sharpe_mean"],
                            "baseline_sharpe_p95": random["sharpe_p95"], "model_percentile": random["model_percentile"],
                            "model_beats": bool(model_sharpe > random["sharpe_p95"]),
                            "p_value": 1.0 - random["model_percentile"] / 100.0,
                            "significant": bool(model_sharpe > random["sharpe_p95"])}
    compared = list(result.values())
    result["all_baselines"] = {"model_beats": all(entry["model_beats"] for entry in compared),
                               "significant": all(entry["significant"] for entry in compared),
                               "strongest": STRONGEST_BASELINE}
    return result


def evaluate_backtest(
    predictions: pd.DataFrame,
    baseline_forecasts: pd.DataFrame,
    market: Mapping[str, pd.DataFrame],
    rule_selection: Mapping[str, Any],
    costs: CostModel,
    trials: Mapping[str, Any],
    settings: EvaluationSettings,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The whole evaluation: (the backtest_metrics mapping, the portfolio daily returns of every
    strategy, period and cost case as a long table)."""
    rng = np.random.default_rng(settings.seed)
    base = TradingRule.from_params(rule_selection["base_rule"])
    evaluated_rows = {period: period_rows(predictions, segment) for period, segment in PERIODS.items()}
    folds = {int(f) for rows in evaluated_rows.values() for f in rows["fold"].unique()}
    rules = {name: rules_by_fold(selection, folds, base)
             for name, selection in rule_selection["strategies"].items()}
    for name in FORECASTING_BASELINES:
        rules.setdefault(name, rules_by_fold({}, folds, base))

    periods, daily_frames = {}, []
    for period, rows in evaluated_rows.items():
        if rows.empty:
            logger.warning("no %s predictions: the %s period is not evaluated", PERIODS[period], period)
            continue
        periods[period], daily = evaluate_period(rows, baseline_forecasts, market, rules, costs, trials, settings, rng)
        periods[period]["comparison"] = compare_with_baselines(periods[period]["strategies"], periods[period]["random"],
                                                               daily, settings)
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
        "comparison": {p: r["comparison"] for p, r in periods.items()},
        "model": {p: r["model"] for p, r in periods.items()},
        "trading_rule": {
            "base_rule": asdict(base), "costs": asdict(costs), "horizon": settings.horizon,
            "selection_metric": rule_selection.get("metric"), "grid": rule_selection.get("grid"),
            "n_candidates": rule_selection.get("n_configurations"),
            "chosen": {name: [{"fold": fold, "rule": asdict(rule), "description": rule.describe(settings.horizon)}
                              for fold, rule in sorted(by_fold.items())]
                       for name, by_fold in rules.items()},
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

