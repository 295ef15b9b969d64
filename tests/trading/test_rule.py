"""The cost-aware trading rule: each property of its docstring, on random forecasts."""

from __future__ import annotations

import numpy as np
import pytest

from trading_engine.trading.costs import CostModel
from trading_engine.trading.rule import (
    NOT_TRADING,
    RuleState,
    TradingRule,
    continue_positions,
    decision_bars,
    ewma_volatility,
    target_positions,
    volatility_target_sizes,
)

N = 20_000
COST = 2 * (0.0005 + 1e-4)  # the default cost model's round trip


def _forecasts(seed: int = 0, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Forecasts straddle the cost: about a third of the bars beat 1x the round trip.
    expected = rng.standard_normal(n) * COST
    return expected, rng.random(n)


def _opened(positions: np.ndarray) -> np.ndarray:
    """Bars at which a position is opened or flipped (its sign changes to a non-zero one)."""
    previous = np.concatenate([[0.0], positions[:-1]])
    return (np.sign(positions) != 0) & (np.sign(positions) != np.sign(previous))


@pytest.mark.parametrize("k", [0.5, 1.0, 2.0])
def test_rule_never_opens_a_position_whose_expected_return_is_below_the_threshold(k: float) -> None:
    expected, confidence = _forecasts()
    rule = TradingRule(cost_multiple=k, confidence_threshold=0.3, min_holding_bars=5)
    positions = target_positions(expected, rule, COST, horizon=5, confidence=confidence)
    opened = _opened(positions)
    assert opened.sum() > 50
    direction = np.sign(positions[opened])
    assert np.all(direction * expected[opened] >= k * COST)
    assert np.all(confidence[opened] >= 0.3)
    # And with forecasts that never beat the round trip, it never trades at all.
    assert not target_positions(np.clip(expected, -0.99 * COST, 0.99 * COST), TradingRule(), COST, 5).any()


def test_rule_never_trades_when_costs_exceed_every_forecast() -> None:
    expected, _ = _forecasts()
    costs = np.abs(expected) * 1.01
    assert not target_positions(expected, TradingRule(cost_multiple=1.0), costs, horizon=3).any()


@pytest.mark.parametrize("holding", [1, 7, 60])
def test_a_position_is_held_for_its_minimum_time(holding: int) -> None:
    expected, _ = _forecasts(1)
    positions = target_positions(expected, TradingRule(min_holding_bars=holding), COST, horizon=99)
    opened = np.flatnonzero(_opened(positions))
    assert opened.size > 20
    for start in opened[:-1]:
        held = positions[start: start + holding]
        assert np.all(held == positions[start]), f"position opened at {start} changed before {holding} bars"


def test_the_default_minimum_holding_time_is_the_horizon() -> None:
    expected, _ = _forecasts(2)
    by_default = target_positions(expected, TradingRule(), COST, horizon=12)
    explicit = target_positions(expected, TradingRule(min_holding_bars=12), COST, horizon=12)
    np.testing.assert_array_equal(by_default, explicit)


def test_hysteresis_keeps_a_position_until_the_forecast_falls_below_the_exit_multiple() -> None:
    expected, _ = _forecasts(3)
    rule = TradingRule(cost_multiple=1.5, exit_cost_multiple=0.0, min_holding_bars=1)
    positions = target_positions(expected, rule, COST, horizon=1)
    previous = np.concatenate([[0.0], positions[:-1]])
    kept = (previous != 0) & (positions == previous)
    closed = (previous != 0) & (positions == 0)
    # Kept only while the forecast in the held direction stays >= 0; closed only below it.
    assert np.all(np.sign(previous[kept]) * expected[kept] >= 0)
    assert np.all(np.sign(previous[closed]) * expected[closed] < 0)
    # Hysteresis holds longer than re-deciding at the entry threshold every bar.
    plain = target_positions(expected, TradingRule(cost_multiple=1.5, min_holding_bars=1), COST, horizon=1)
    assert np.count_nonzero(positions) > np.count_nonzero(plain)


def test_positions_change_only_at_decision_bars() -> None:
    expected, _ = _forecasts(4)
    timestamps = (np.arange(N, dtype=np.int64) + 3) * 300_000_000_000  # 5m bars, not starting on a multiple
    decide = decision_bars(timestamps, 300_000_000_000, 12)
    assert decide.sum() == pytest.approx(N / 12, abs=1)
    positions = target_positions(expected, TradingRule(decide_every=12, min_holding_bars=1), COST, horizon=1,
                                 decision=decide)
    changed = np.concatenate([[positions[0] != 0], positions[1:] != positions[:-1]])
    assert changed.sum() > 20
    assert np.all(decide[changed])


def test_a_short_needs_allow_short_and_not_trading_never_trades() -> None:
    expected, _ = _forecasts(5)
    assert (target_positions(expected, TradingRule(allow_short=False), COST, horizon=3) >= 0).all()
    assert not target_positions(expected * 100, NOT_TRADING, COST, horizon=3).any()


def test_every_block_starts_flat_and_a_nan_forecast_never_opens() -> None:
    expected, _ = _forecasts(6)
    expected[::7] = np.nan
    starts = np.zeros(N, dtype=bool)
    starts[::500] = True
    positions = target_positions(expected, TradingRule(min_holding_bars=50), COST, horizon=50,
                                 segment_starts=starts)
    opened = _opened(positions)
    assert np.isfinite(expected[opened]).all()
    # A position opened before a block start never carries into the block: at its first bar the
    # block is flat or opens afresh, on a forecast that beats the round trip.
    first = np.flatnonzero(starts)
    held = positions[first] != 0
    assert held.any() and (~held).any()
    assert np.all(np.sign(positions[first][held]) * expected[first][held] >= COST)


def test_a_position_keeps_its_opening_size() -> None:
    expected, _ = _forecasts(7)
    size = np.random.default_rng(7).uniform(0.2, 2.0, N)
    positions = target_positions(expected, TradingRule(min_holding_bars=3), COST, horizon=3, size=size)
    opened = _opened(positions)
    np.testing.assert_array_equal(np.abs(positions[opened]), size[opened])
    previous = np.concatenate([[0.0], positions[:-1]])
    same_trade = (positions != 0) & (np.sign(positions) == np.sign(previous))
    np.testing.assert_array_equal(positions[same_trade], previous[same_trade])


def test_round_trip_cost_is_fees_and_slippage_on_both_sides() -> None:
    costs = CostModel(taker_fee=0.0004, slippage_bps=2.0, slippage_volatility_multiple=0.5)
    open_, close = np.array([100.0, 100.0]), np.array([100.0, 102.0])
    np.testing.assert_allclose(costs.round_trip_cost(open_, close), [2 * 0.0006, 2 * (0.0006 + 0.5 * 0.02)])
    assert CostModel.free().round_trip_cost(open_, close).tolist() == [0.0, 0.0]


def test_ewma_volatility_is_the_same_from_a_trailing_window() -> None:
    rng = np.random.default_rng(8)
    close = 100 * np.exp(np.cumsum(rng.standard_normal(30_000) * 0.002))
    halflife = 50
    full = ewma_volatility(close, halflife)
    window = 8 * halflife + 1
    for end in (window, 12_345, 30_000):
        trailing = ewma_volatility(close[end - window:end], halflife)
        assert trailing[-1] == pytest.approx(full[end - 1], rel=1e-12)
    rule = TradingRule(target_volatility=0.5, volatility_halflife_bars=halflife, max_leverage=3.0)
    sizes = volatility_target_sizes(close, rule, bars_per_year=105_120)
    trailing_sizes = volatility_target_sizes(close[-window:], rule, bars_per_year=105_120)
    assert trailing_sizes[-1] == sizes[-1]
    assert np.nanmax(sizes) <= 3.0
    # 0.2 % a bar at 5m is about 65 % a year: the size to reach 50 % is about 0.77.
    assert np.nanmedian(sizes) == pytest.approx(0.5 / (0.002 * np.sqrt(105_120)), rel=0.05)


def test_rule_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="exit_cost_multiple"):
        TradingRule(cost_multiple=1.0, exit_cost_multiple=2.0)
    with pytest.raises(ValueError, match="unknown trading-rule parameters"):
        TradingRule.from_params({"cost_multipel": 2})
    with pytest.raises(ValueError, match="min_holding_bars"):
        TradingRule(min_holding_bars=0)


def test_deciding_one_bar_at_a_time_from_the_carried_state_equals_the_whole_block() -> None:
    """What a live run does (one bar per run, the state stored between runs) gives the backtest's
    positions exactly."""
    expected, confidence = _forecasts(9, n=3000)
    rule = TradingRule(cost_multiple=1.0, exit_cost_multiple=0.0, min_holding_bars=7, decide_every=3,
                       confidence_threshold=0.2)
    timestamps = (np.arange(3000, dtype=np.int64) + 5) * 300_000_000_000
    decide = decision_bars(timestamps, 300_000_000_000, 3)
    whole = target_positions(expected, rule, COST, 7, confidence, decision=decide)
    state, one_by_one = RuleState(), []
    for t in range(3000):
        position, state = continue_positions(expected[t:t + 1], rule, COST, 7, state, confidence[t:t + 1],
                                             decision=decide[t:t + 1])
        one_by_one.append(position[0])
    np.testing.assert_array_equal(np.array(one_by_one), whole)
    assert np.count_nonzero(np.diff(whole)) > 50
