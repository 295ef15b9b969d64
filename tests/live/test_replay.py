"""The proof: a stretch of history replayed one bar at a time through the signals run (the real
REST path against the loopback Binance server, its clock moved bar by bar, a fresh trailing
window every bar, the rule's state carried in the ledger) gives, bar for bar and exactly, the
positions the backtest computes from the whole history with the same deployed model; and a
one-bar look-ahead planted in a copy of a feature is caught."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from tests.live.conftest import (
    REPLAYED_BARS,
    SYMBOLS,
    deploy,
    replay_stretch,
    replay_through_rest,
)
from trading_engine.live.replay import (
    ReplayParityError,
    backtest_decisions,
    compare_decisions,
    parity_verdict,
)
from trading_engine.trading.portfolio import continue_rule_positions
from trading_engine.trading.rule import FLAT


def test_replayed_ledger_positions_equal_the_backtest_bar_for_bar_exactly(replayed, model_input):
    deployed, ledger, _, bars = replayed
    live = ledger.read()
    backtest = backtest_decisions(deployed, model_input, bars[0], bars[-1])

    table, report = compare_decisions(live, backtest)

    assert len(live) == len(backtest) == REPLAYED_BARS * len(SYMBOLS)
    np.testing.assert_array_equal(table["live_position"].to_numpy(), table["backtest_position"].to_numpy())
    assert report["parity"] and report["positions_equal"] and report["bars_differing"] == 0
    assert report["max_expected_return_difference"] < 1e-8  # float32 rounding of another batch size
    # The stretch trades: longs, shorts and flat bars, volatility-targeted sizes (not just +-1).
    positions = table["live_position"].to_numpy()
    assert (positions > 0).any() and (positions < 0).any() and (positions == 0).any()
    assert len(np.unique(np.abs(positions[positions != 0]))) > 3
    assert "parity holds" in parity_verdict(report)


def test_the_ledger_keeps_the_holding_state_across_runs(replayed):
    deployed, ledger, _, _ = replayed
    rows = ledger.read()
    # Each run continued from the previous run's row: the age counts the bars a position is held.
    held = rows.loc[rows["rule_direction"] != 0]
    assert (held["rule_age"] >= 1).any()
    # ... and that state decided bars: deciding them from flat (a run that forgot the state)
    # gives other positions on some bars.
    forgetful, unsized = [], dataclasses.replace(deployed.rule, target_volatility=None)
    for row in rows.itertuples():
        frame = pd.DataFrame({"timestamp": [row.bar_time], "series": [row.series], "open": [1.0], "close": [1.0],
                              "segment_start": [False]})
        sizes = {row.series: pd.DataFrame({"close": np.ones(1)}, index=[row.bar_time])}
        position, _ = continue_rule_positions(frame, np.array([row.expected_return]), unsized, deployed.costs,
                                              deployed.horizon, FLAT, np.array([row.confidence]), sizes)
        forgetful.append(np.sign(position[0]))
    assert (np.array(forgetful) != np.sign(rows["target_position"].to_numpy())).any()


def test_replay_catches_a_planted_one_bar_look_ahead(tmp_path, leaky, candles, funding):
    recipe, leaky_model_input, model = leaky
    deployed = deploy(tmp_path / "models", model, recipe=recipe)
    bars = replay_stretch(n_bars=10)

    ledger = replay_through_rest(tmp_path, deployed, candles, funding, bars)
    _, report = compare_decisions(ledger.read(), backtest_decisions(deployed, leaky_model_input, bars[0], bars[-1]))

    assert not report["parity"]
    assert report["bars_differing"] > 0  # the positions themselves differ
    assert report["max_expected_return_difference"] > 1000 * report["forecast_tolerance"]
    with pytest.raises(ReplayParityError, match="replay parity does not hold"):
        parity_verdict(report)
