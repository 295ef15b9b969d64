"""Choose the trading rule's parameters on validation rows only, with "not trading" always among
the candidates.

The candidates are "not trading" followed by every combination of the grid's values applied to
the base rule (e.g. cost_multiple [1, 2, 4] x exit_cost_multiple [null, 0]: 6 + 1 candidates).
For each fold, each candidate trades that fold's validation rows with the shared rule, engine and
costs, and is scored by the after-cost Sharpe ratio of the equal-weight portfolio (`metric`). The
best candidate is kept for the fold's test rows and for the holdout rows the fold predicts. Not
trading scores 0 and comes first, so it wins ties, and a trading candidate can only win when it
scores more than `min_score` AND its validation Sharpe ratio is more than luck among the
candidates tried: its deflated Sharpe ratio over the number of candidates (the probability that
its Sharpe ratio beats the best that as many luck-only candidates would reach) is at least
`min_deflated_sharpe`. A forecaster without an edge after costs ends up not trading, even when
one of its candidates is lucky on validation. Test and holdout rows are never read here (tested).

The same selection runs for the model and for every forecasting baseline (each with its own
forecasts), so they are compared on equal terms. Every candidate is a configuration tried: the
deflated Sharpe ratio counts them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from trading_engine.params import known_params
from trading_engine.trading.calendar import DAYS_PER_YEAR, bar_length, periods_per_year
from trading_engine.trading.costs import CostModel
from trading_engine.trading.metrics import daily_returns, sharpe_ratio
from trading_engine.trading.portfolio import (
    align_market,
    portfolio_returns,
    rule_positions,
    trade_positions,
)
from trading_engine.trading.rule import NOT_TRADING, TradingRule
from trading_engine.trading.significance import sharpe_significance

SELECTION_METRICS = ("sharpe_daily", "sharpe_per_bar")
RULE_FIELDS = tuple(f.name for f in fields(TradingRule))


@dataclass(frozen=True)
class RuleSelectionSettings:
    """`evaluation.rule_selection`: the grid of rule parameters (TradingRule field -> values) and
    how candidates are scored."""

    grid: dict[str, list[Any]] = field(default_factory=lambda: {"cost_multiple": [1.0]})
    metric: str = "sharpe_daily"
    min_score: float = 0.0  # a trading candidate must score more than this to beat not trading
    min_deflated_sharpe: float = 0.5  # ... and its validation Sharpe must beat luck among the candidates this surely

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_deflated_sharpe < 1.0:
            raise ValueError(f"min_deflated_sharpe must lie in [0, 1), got {self.min_deflated_sharpe}")
        if self.metric not in SELECTION_METRICS:
            raise ValueError(f"unknown selection metric {self.metric!r}; one of {SELECTION_METRICS}")
        unknown = set(self.grid) - set(RULE_FIELDS)
        if unknown:
            raise ValueError(f"evaluation.rule_selection.grid names {sorted(unknown)}, which are not trading-rule "
                             f"parameters; known: {sorted(RULE_FIELDS)}")
        for name, values in self.grid.items():
            if not isinstance(values, list | tuple) or not values:
                raise ValueError(f"evaluation.rule_selection.grid.{name} must be a non-empty list, got {values!r}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> RuleSelectionSettings:
        values = known_params(params, cls, "rule-selection settings")
        if "grid" in values:
            values["grid"] = {str(k): list(v) if isinstance(v, list | tuple) else v
                              for k, v in dict(values["grid"] or {}).items()}
        for name in ("min_score", "min_deflated_sharpe"):
            if name in values:
                values[name] = float(values[name])
        return cls(**values)

    def without(self, owned_elsewhere: Sequence[str]) -> RuleSelectionSettings:
        """The same settings without the grid entries named in `owned_elsewhere` (rule parameters
        that tuning searches: they are chosen once, by the study)."""
        return replace(self, grid={k: v for k, v in self.grid.items() if k not in set(owned_elsewhere)})


def rule_candidates(base: TradingRule, grid: Mapping[str, Sequence[Any]]) -> list[TradingRule]:
    """Not trading, then the base rule with every combination of the grid's values."""
    names = list(grid)
    candidates = [NOT_TRADING]
    for values in itertools.product(*(grid[name] for name in names)):
        changes = dict(zip(names, values, strict=True))
        try:
            candidates.append(TradingRule.from_params({**asdict(base), **changes}))
        except ValueError as error:
            raise ValueError(f"the rule-selection grid combination {changes} is not a valid rule: {error}") from None
    return candidates


def rule_changes(rule: TradingRule, base: TradingRule) -> dict[str, Any]:
    """The fields where `rule` differs from `base` (for people: what a candidate changed)."""
    if rule.flat:
        return {"trades": False}
    return {name: value for name, value in asdict(rule).items() if value != getattr(base, name)}


def selection_score(returns: pd.Series, metric: str, n_candidates: int) -> tuple[float, float]:
    """The validation score of a candidate (the annualised Sharpe ratio of its daily or per-bar
    returns) and its deflated Sharpe ratio over `n_candidates` luck-only trials, on the same
    observations (NaN with fewer than two)."""
    if metric == "sharpe_daily":
        observations = daily_returns(returns).to_numpy()
        per_year = DAYS_PER_YEAR
    elif metric == "sharpe_per_bar":
        observations = returns.to_numpy()
        per_year = periods_per_year(bar_length(returns.index)) if len(returns) > 1 else 1.0
    else:
        raise ValueError(f"unknown selection metric {metric!r}; one of {SELECTION_METRICS}")
    if len(observations) < 2:
        return 0.0, float("nan")
    deflated = sharpe_significance(observations, n_candidates)["deflated_sharpe"]
    return sharpe_ratio(observations, per_year), deflated


def select_rules(
    forecasts: pd.DataFrame,
    market: Mapping[str, pd.DataFrame],
    base: TradingRule,
    costs: CostModel,
    horizon: int,
    settings: RuleSelectionSettings,
) -> dict[str, Any]:
    """Per fold, the candidate rule with the best validation score.

    `forecasts` follows the predictions contract (timestamp, series, fold, segment, pred_return,
    confidence); only its `validation` rows are read. Returns {"metric", "n_configurations",
    "folds": [{"fold", "rule" (every field), "changes" (vs the base), "validation_score",
    "candidates": [{"changes", "validation_score", "turnover"}]}]}.
    """
    candidates = rule_candidates(base, settings.grid)
    validation = forecasts.loc[forecasts["segment"] == "validation"]
    folds = []
    for fold, rows in validation.groupby("fold", sort=True):
        aligned = align_market(rows, market)
        expected_return = aligned["pred_return"].to_numpy(dtype=np.float64)
        confidence = aligned["confidence"].to_numpy(dtype=np.float64)
        scored = []
        for candidate in candidates:
            positions = rule_positions(aligned, expected_return, candidate, costs, horizon, confidence, market)
            bars = trade_positions(aligned, positions, costs)
            score, deflated = ((0.0, float("nan")) if candidate.flat else
                               selection_score(portfolio_returns(bars), settings.metric, len(candidates)))
            scored.append((candidate, score, deflated, float(bars["turnover"].sum())))
        best, best_score = scored[0][0], scored[0][1]
        for candidate, score, deflated, _ in scored[1:]:
            if score > best_score and score > settings.min_score and deflated >= settings.min_deflated_sharpe:
                best, best_score = candidate, score
        folds.append({"fold": int(fold), "rule": asdict(best), "changes": rule_changes(best, base),
                      "validation_score": best_score,
                      "candidates": [{"changes": rule_changes(c, base), "validation_score": s,
                                      "validation_deflated_sharpe": d if np.isfinite(d) else None, "turnover": t}
                                     for c, s, d, t in scored]})
    return {"metric": settings.metric, "min_score": settings.min_score,
            "min_deflated_sharpe": settings.min_deflated_sharpe, "n_configurations": len(candidates), "folds": folds}


def rules_by_fold(selection: Mapping[str, Any], folds: Sequence[int], default: TradingRule) -> dict[int, TradingRule]:
    """The selected rule of each fold in `folds`. A fold without validation rows (e.g. a model
    refitted for the holdout) takes the rule of the latest earlier fold that has one, else
    `default`."""
    chosen = {int(entry["fold"]): TradingRule.from_params(entry["rule"]) for entry in selection.get("folds", [])}
    result = {}
    for fold in sorted(int(f) for f in folds):
        earlier = [f for f in chosen if f <= fold]
        result[fold] = chosen[max(earlier)] if earlier else default
    return result
