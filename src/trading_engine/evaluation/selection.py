"""Choose the confidence threshold of the trading rule on validation predictions only.

For each fold, the candidates are quantiles of that fold's validation confidences (so that every
candidate trades: the q-quantile keeps about the top 1 - q of the calls). Each candidate rule is
traded on the fold's validation rows with the shared engine and costs, and the one with the best
validation Sharpe (ties: the lower threshold) is kept for that fold's test rows and for the
holdout rows that fold predicts. Test and holdout rows are never read here.

Every candidate is a configuration tried: the deflated Sharpe ratio counts them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from trading_engine.trading.costs import CostModel
from trading_engine.trading.metrics import (
    bar_length,
    periods_per_year,
    sharpe_daily_annualised,
    sharpe_ratio,
)
from trading_engine.trading.portfolio import align_market, portfolio_returns, trade_positions
from trading_engine.trading.rule import TradingRule, target_positions

SELECTION_METRICS = ("sharpe_daily", "sharpe_per_bar")


def selection_score(returns: pd.Series, metric: str) -> float:
    """The validation score of a candidate: annualised Sharpe of daily or of per-bar returns."""
    if metric == "sharpe_daily":
        return sharpe_daily_annualised(returns)
    if metric == "sharpe_per_bar":
        if len(returns) < 2:
            return 0.0
        return sharpe_ratio(returns.to_numpy(), periods_per_year(bar_length(returns.index)))
    raise ValueError(f"unknown selection metric {metric!r}; one of {SELECTION_METRICS}")


def select_confidence_thresholds(
    predictions: pd.DataFrame,
    market: Mapping[str, pd.DataFrame],
    rule: TradingRule,
    costs: CostModel,
    quantiles: Sequence[float],
    metric: str = "sharpe_daily",
) -> dict[str, Any]:
    """Per fold, the confidence threshold with the best validation score.

    Returns {"folds": [{"fold", "confidence_threshold", "validation_score", "candidates": [...]}],
    "n_configurations": len(quantiles), "metric": metric}. Only rows with segment "validation"
    are read.
    """
    quantiles = [float(q) for q in quantiles]
    if not quantiles or any(not 0.0 <= q <= 1.0 for q in quantiles):
        raise ValueError(f"threshold quantiles must be a non-empty list in [0, 1], got {quantiles}")
    validation = predictions.loc[predictions["segment"] == "validation"]
    folds = []
    for fold, rows in validation.groupby("fold", sort=True):
        aligned = align_market(rows, market)
        confidence = aligned["confidence"].to_numpy(dtype=np.float64)
        finite = confidence[np.isfinite(confidence)]
        candidates = []
        for quantile in quantiles:
            threshold = float(np.clip(np.quantile(finite, quantile), 0.0, 1.0)) if finite.size else 0.0
            candidate = replace(rule, confidence_threshold=threshold)
            positions = target_positions(aligned["prob_down"].to_numpy(), aligned["prob_up"].to_numpy(),
                                         confidence, candidate)
            returns = portfolio_returns(trade_positions(aligned, positions, costs))
            candidates.append({"quantile": quantile, "confidence_threshold": threshold,
                               "validation_score": selection_score(returns, metric)})
        best = max(candidates, key=lambda c: (c["validation_score"], -c["confidence_threshold"]))
        folds.append({"fold": int(fold), "confidence_threshold": best["confidence_threshold"],
                      "validation_score": best["validation_score"], "candidates": candidates})
    return {"metric": metric, "n_configurations": len(quantiles), "folds": folds}


def thresholds_by_fold(selection: Mapping[str, Any], folds: Sequence[int], default: float) -> dict[int, float]:
    """The selected threshold of each fold in `folds`. A fold without validation rows (e.g. a
    model refitted for the holdout) takes the threshold of the latest earlier fold that has one,
    else `default` (the rule's own threshold)."""
    chosen = {int(entry["fold"]): float(entry["confidence_threshold"]) for entry in selection.get("folds", [])}
    result = {}
    for fold in sorted(int(f) for f in folds):
        earlier = [f for f in chosen if f <= fold]
        result[fold] = chosen[max(earlier)] if earlier else default
    return result
