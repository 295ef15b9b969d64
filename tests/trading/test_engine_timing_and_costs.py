"""The engine's fill timing, costs and funding on constructed cases (exact numbers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trading_engine.trading import CostModel, TradingRule, simulate
from trading_engine.trading.engine import bar_returns
from trading_engine.trading.portfolio import (
    align_market,
    portfolio_returns,
    strategy_returns,
    trade_positions,
)


def test_a_signal_at_t_never_earns_bar_t_return() -> None:
    # Bar 1 doubles (open 100 -> next open 200). A long decided at bar 1's close is filled at
    # bar 2's open and must not see that jump; a long decided at bar 0's close does.
    open_ = np.array([100.0, 100.0, 200.0, 200.0, 200.0])
    close = open_.copy()
    late = simulate(np.array([0.0, 1.0, 0.0, 0.0, 0.0]), open_, close, CostModel.free())
    early = simulate(np.array([1.0, 0.0, 0.0, 0.0, 0.0]), open_, close, CostModel.free())
    assert late.gross_return.sum() == 0.0
    assert late.held_position.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert early.gross_return.tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]


def test_knowing_the_current_bar_is_worthless_but_knowing_the_next_is_not() -> None:
    rng = np.random.default_rng(0)
    open_ = 100 * np.exp(np.cumsum(0.01 * rng.standard_normal(5000)))
    returns = bar_returns(open_, open_)
    same_bar = simulate(np.sign(returns), open_, open_, CostModel.free())  # decided after the fact
    next_bar = np.zeros_like(returns)
    next_bar[:-1] = np.sign(returns[1:])  # perfect foresight of the bar the position is held in
    foresight = simulate(next_bar, open_, open_, CostModel.free())
    assert abs(same_bar.gross_return.mean()) < 3 * 0.01 / np.sqrt(5000)
    assert foresight.gross_return[1:].min() >= 0 and foresight.gross_return.mean() > 0.007


def test_fees_slippage_and_funding_exact_numbers() -> None:
    open_ = np.array([100.0, 110.0, 99.0, 99.0, 108.9])
    close = np.array([110.0, 99.0, 99.0, 108.9, 100.0])
    funding = np.array([0.0, 0.0, 0.001, 0.0, -0.002])
    costs = CostModel(taker_fee=0.0005, slippage_bps=2.0)
    result = simulate(np.array([1.0, 1.0, -1.0, 0.0, 0.0]), open_, close, costs, funding)
    # held: [0, 1, 1, -1, 0]; open-to-open returns: 0.1, -0.1, 0, 0.1, last bar close/open - 1
    np.testing.assert_allclose(result.held_position, [0, 1, 1, -1, 0])
    np.testing.assert_allclose(result.turnover, [0, 1, 0, 2, 1])
    np.testing.assert_allclose(result.gross_return, [0, -0.1, 0, -0.1, 0], atol=1e-15)
    np.testing.assert_allclose(result.fee_cost, [0, 0.0005, 0, 0.001, 0.0005])
    np.testing.assert_allclose(result.slippage_cost, [0, 0.0002, 0, 0.0004, 0.0002])
    # Funding at bar 2 is charged on the long held before it (pays 0.1%); at bar 4 on the short
    # held before it: a negative rate is paid by shorts (0.2%).
    np.testing.assert_allclose(result.funding_cost, [0, 0, 0.001, 0, 0.002])
    np.testing.assert_allclose(result.net_return, [0, -0.1007, -0.001, -0.1014, -0.0027], atol=1e-15)


def test_volatility_scaled_slippage_uses_the_previous_move_only() -> None:
    open_ = np.array([100.0, 110.0, 110.0])
    costs = CostModel(taker_fee=0.0, slippage_bps=1.0, slippage_volatility_multiple=0.5)
    result = simulate(np.array([1.0, 0.0, 0.0]), open_, open_, costs)
    # The entry at bar 1 knows the move 100 -> 110 (10%): 1 bp + 0.5 * 10%; the exit at bar 2
    # follows a bar without a move: 1 bp.
    np.testing.assert_allclose(result.slippage_cost, [0, 0.0001 + 0.05, 0.0001])


def test_segments_in_one_call_equal_separate_calls() -> None:
    rng = np.random.default_rng(1)
    open_ = 100 * np.exp(np.cumsum(0.01 * rng.standard_normal(30)))
    close = open_ * (1 + 0.001 * rng.standard_normal(30))
    positions = rng.choice([-1.0, 0.0, 1.0], 30)
    funding = np.where(np.arange(30) % 8 == 0, 1e-4, 0.0)
    starts = np.zeros(30, dtype=bool)
    starts[[0, 11, 20]] = True
    together = simulate(positions, open_, close, CostModel(), funding, segment_starts=starts)
    for a, b in ((0, 11), (11, 20), (20, 30)):
        alone = simulate(positions[a:b], open_[a:b], close[a:b], CostModel(), funding[a:b])
        np.testing.assert_allclose(together.net_return[a:b], alone.net_return, rtol=0, atol=1e-15)
        np.testing.assert_allclose(together.held_position[a:b], alone.held_position)


def test_strategy_returns_trades_each_block_alone_and_portfolio_is_equal_weight() -> None:
    index = pd.date_range("2024-01-01", periods=8, freq="1h", tz="UTC")
    prices = pd.DataFrame({"open": [100, 101, 102, 103, 104, 105, 106, 107.0],
                           "close": [101, 102, 103, 104, 105, 106, 107, 108.0]}, index=index)
    market = {"A_USDT_1h": prices, "B_USDT_1h": prices * 2}
    rows = []
    for series in market:
        for fold, segment, chunk in ((0, "test", index[:4]), (1, "test", index[4:])):
            rows.append(pd.DataFrame({"timestamp": chunk, "series": series, "fold": fold, "segment": segment,
                                      "pred_return": 0.01, "confidence": 0.9}))
    predictions = pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=0)
    trades = strategy_returns(predictions, market, TradingRule(), CostModel.free(), horizon=1)
    # Each block starts flat: the first bar of each block earns nothing.
    first_bars = trades.groupby(["series", "fold"])["held_position"].first()
    assert (first_bars == 0).all()
    expected_block = [0, 102 / 101 - 1, 103 / 102 - 1, 104 / 103 - 1]
    a = trades.loc[(trades["series"] == "A_USDT_1h") & (trades["fold"] == 0), "net_return"].to_numpy()
    np.testing.assert_allclose(a, expected_block)
    returns = portfolio_returns(trades)
    np.testing.assert_allclose(returns.iloc[:4].to_numpy(), expected_block)  # both series move alike


def test_missing_market_bars_are_an_error() -> None:
    index = pd.date_range("2024-01-01", periods=3, freq="1h", tz="UTC")
    market = {"A_USDT_1h": pd.DataFrame({"open": 1.0, "close": 1.0}, index=index[:2])}
    predictions = pd.DataFrame({"timestamp": index, "series": "A_USDT_1h", "fold": 0, "segment": "test"})
    with pytest.raises(ValueError, match="misses 1 bars"):
        align_market(predictions, market)


def test_trade_positions_matches_strategy_returns() -> None:
    index = pd.date_range("2024-01-01", periods=6, freq="5min", tz="UTC")
    market = {"A_USDT_5m": pd.DataFrame({"open": np.arange(1.0, 7.0), "close": np.arange(1.5, 7.5),
                                         "funding_rate": 0.0}, index=index)}
    predictions = pd.DataFrame({"timestamp": index, "series": "A_USDT_5m", "fold": 0, "segment": "test",
                                "pred_return": [-0.01, 0.01, 0.01, -0.01, 0.01, 0.0], "confidence": 1.0})
    aligned = align_market(predictions, market)
    by_rule = strategy_returns(predictions, market, TradingRule(min_holding_bars=1), CostModel(), horizon=60)
    by_positions = trade_positions(aligned, np.array([-1.0, 1, 1, -1, 1, 0]), CostModel())
    pd.testing.assert_frame_equal(by_rule, by_positions)
