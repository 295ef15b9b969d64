"""The confidence threshold is chosen on validation rows only."""

from __future__ import annotations

import numpy as np

from tests.evaluation.builders import evaluation_inputs
from trading_engine.evaluation.selection import select_confidence_thresholds, thresholds_by_fold
from trading_engine.trading import CostModel, TradingRule

QUANTILES = [0.0, 0.25, 0.5, 0.75, 0.9]


def _select(predictions, market):
    return select_confidence_thresholds(predictions, market, TradingRule(), CostModel(), QUANTILES, "sharpe_per_bar")


def test_threshold_never_reads_test_or_holdout_rows() -> None:
    predictions, market, _ = evaluation_inputs()
    chosen = _select(predictions, market)
    later = predictions["segment"] != "validation"
    rng = np.random.default_rng(0)
    changed = predictions.copy()
    changed.loc[later, "confidence"] = rng.random(later.sum())
    changed.loc[later, ["prob_down", "prob_up"]] = changed.loc[later, ["prob_up", "prob_down"]].to_numpy()
    corrupted = {}
    for series, frame in market.items():
        frame = frame.copy()
        not_validation = ~frame.index.isin(predictions.loc[~later & (predictions["series"] == series), "timestamp"])
        frame.loc[not_validation, ["open", "close"]] *= rng.uniform(0.5, 2.0, (not_validation.sum(), 1))
        corrupted[series] = frame
    assert _select(changed, corrupted) == chosen
    assert _select(predictions.loc[~later], market) == chosen


def test_the_best_validation_candidate_is_kept_and_counted() -> None:
    predictions, market, _ = evaluation_inputs(quality=0.6)
    chosen = _select(predictions, market)
    assert chosen["n_configurations"] == len(QUANTILES)
    for fold in chosen["folds"]:
        scores = [c["validation_score"] for c in fold["candidates"]]
        assert fold["validation_score"] == max(scores)
        assert len(fold["candidates"]) == len(QUANTILES)
    # Calls are right more often when the confidence is high: a non-zero threshold wins.
    assert any(fold["confidence_threshold"] > min(c["confidence_threshold"] for c in fold["candidates"])
               for fold in chosen["folds"])


def test_a_fold_without_validation_takes_the_latest_earlier_threshold() -> None:
    selection = {"folds": [{"fold": 0, "confidence_threshold": 0.4}, {"fold": 2, "confidence_threshold": 0.6}]}
    assert thresholds_by_fold(selection, [0, 1, 2, 3], default=0.1) == {0: 0.4, 1: 0.4, 2: 0.6, 3: 0.6}
    assert thresholds_by_fold({"folds": []}, [0], default=0.1) == {0: 0.1}
