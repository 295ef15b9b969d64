"""The rule is chosen on validation rows only, among candidates that always include not trading;
a forecaster without an edge after costs ends up not trading."""

from __future__ import annotations

import numpy as np
import pytest

from tests.evaluation.builders import HORIZON, evaluation_inputs
from trading_engine.evaluation.selection import (
    RuleSelectionSettings,
    rule_candidates,
    rules_by_fold,
    select_rules,
)
from trading_engine.trading import NOT_TRADING, CostModel, TradingRule

SETTINGS = RuleSelectionSettings(grid={"cost_multiple": [0.5, 1.0, 2.0], "exit_cost_multiple": [None, 0.0]},
                                 metric="sharpe_per_bar")


def _select(predictions, market, settings=SETTINGS):
    return select_rules(predictions, market, TradingRule(), CostModel(), HORIZON, settings)


def test_rule_never_reads_test_or_holdout_rows() -> None:
    predictions, market, _ = evaluation_inputs()
    chosen = _select(predictions, market)
    later = predictions["segment"] != "validation"
    rng = np.random.default_rng(0)
    changed = predictions.copy()
    changed.loc[later, "confidence"] = rng.random(later.sum())
    changed.loc[later, "pred_return"] = -changed.loc[later, "pred_return"]
    corrupted = {}
    for series, frame in market.items():
        frame = frame.copy()
        not_validation = ~frame.index.isin(predictions.loc[~later & (predictions["series"] == series), "timestamp"])
        frame.loc[not_validation, ["open", "close"]] *= rng.uniform(0.5, 2.0, (not_validation.sum(), 1))
        corrupted[series] = frame
    assert _select(changed, corrupted) == chosen
    assert _select(predictions.loc[~later], market) == chosen


def test_not_trading_is_always_a_candidate_and_every_candidate_is_counted() -> None:
    predictions, market, _ = evaluation_inputs(quality=0.6)
    chosen = _select(predictions, market)
    assert chosen["n_configurations"] == 1 + 3 * 2
    assert rule_candidates(TradingRule(), SETTINGS.grid)[0] == NOT_TRADING
    for fold in chosen["folds"]:
        scores = [c["validation_score"] for c in fold["candidates"]]
        assert len(scores) == 7 and fold["candidates"][0]["changes"] == {"trades": False} and scores[0] == 0.0
        assert fold["validation_score"] == max(scores)
        # A forecaster with an edge trades.
        assert fold["rule"]["trades"] and fold["validation_score"] > 0


def test_a_forecaster_without_edge_selects_not_trading() -> None:
    predictions, market, _ = evaluation_inputs(quality=0.0)
    rng = np.random.default_rng(1)
    choices = []
    for _ in range(10):
        # Random directions, large enough to beat every cost threshold: only their results stop them.
        noisy = predictions.assign(pred_return=rng.choice([-0.01, 0.01], len(predictions)))
        choices += [fold["rule"]["trades"] for fold in _select(noisy, market)["folds"]]
    assert np.mean(choices) <= 0.1, f"a forecaster without edge traded in {np.mean(choices):.0%} of the folds"
    # With forecasts below every threshold no candidate trades, and not trading is kept.
    small = predictions.assign(pred_return=predictions["pred_return"] * 1e-3)
    assert all(not fold["rule"]["trades"] for fold in _select(small, market)["folds"])


def test_not_trading_wins_unless_a_candidate_beats_the_minimum_score() -> None:
    predictions, market, _ = evaluation_inputs(quality=0.6)
    strict = RuleSelectionSettings(grid=SETTINGS.grid, metric="sharpe_per_bar", min_score=1e9)
    assert all(not fold["rule"]["trades"] for fold in _select(predictions, market, strict)["folds"])


def test_a_fold_without_validation_takes_the_latest_earlier_rule() -> None:
    selection = {"folds": [{"fold": 0, "rule": {"cost_multiple": 2.0}}, {"fold": 2, "rule": {"trades": False}}]}
    rules = rules_by_fold(selection, [0, 1, 2, 3], default=TradingRule())
    assert rules[0] == rules[1] == TradingRule(cost_multiple=2.0)
    assert rules[2] == rules[3] == NOT_TRADING
    assert rules_by_fold({"folds": []}, [0], default=TradingRule()) == {0: TradingRule()}


def test_grid_names_must_be_rule_parameters_and_tuned_ones_leave_the_grid() -> None:
    with pytest.raises(ValueError, match="not trading-rule parameters"):
        RuleSelectionSettings.from_params({"grid": {"cost_multipel": [1.0]}})
    with pytest.raises(ValueError, match="not a valid rule"):
        rule_candidates(TradingRule(), {"cost_multiple": [1.0], "exit_cost_multiple": [2.0]})
    assert SETTINGS.without(["cost_multiple"]).grid == {"exit_cost_multiple": [None, 0.0]}


def test_a_lucky_candidate_must_beat_luck_among_the_candidates_to_trade() -> None:
    predictions, market, _ = evaluation_inputs(quality=0.0)
    rng = np.random.default_rng(5)
    lenient = RuleSelectionSettings(grid=SETTINGS.grid, metric="sharpe_per_bar", min_deflated_sharpe=0.0)
    lucky, guarded = [], []
    for _ in range(10):
        # Forecasts about the size of the round trip: few trades, so luck rather than costs decides.
        noisy = predictions.assign(pred_return=rng.standard_normal(len(predictions)) * 0.0012)
        for fold_lenient, fold_guarded in zip(_select(noisy, market, lenient)["folds"], _select(noisy, market)["folds"],
                                              strict=True):
            lucky.append(fold_lenient["rule"]["trades"])
            guarded.append(fold_guarded["rule"]["trades"])
            best = max(fold_guarded["candidates"][1:], key=lambda c: c["validation_score"])
            if fold_guarded["rule"]["trades"]:
                assert best["validation_deflated_sharpe"] >= 0.5
    # Without the hurdle a lucky candidate trades in several folds (6 of 20 here); with it, in none.
    assert sum(lucky) >= 3 and sum(guarded) == 0
