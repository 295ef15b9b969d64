"""The engine's fill timing, costs and funding on constructed cases (exact numbers)."""

from __future__ import annotations

import datetime
import zoneinfo

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


def exchange_ledger(targets, open_, close, fee, slippage, funding, starts, gaps):
    """An exchange's book, bar by bar in plain Python: the reference the engine must match. The
    target decided at bar k's close is filled at bar k+1's open when it differs from the last
    one, resizing the contracts to target x equity; funding settled at an open is paid on the
    contracts held before it at that open's price; a block's last position is closed at its
    close (or, before a gap, at the next open after the gap's funding)."""
    n = len(targets)
    rows = []
    for k in range(n):
        if starts[k]:
            contracts, equity, last_target = 0.0, 1.0, 0.0
        target = 0.0 if starts[k] else targets[k - 1]
        traded = 0.0
        if target != last_target:
            new = target * equity / open_[k]
            traded = abs(new - contracts) * open_[k]
            contracts, last_target = new, target
        held = contracts * open_[k] / equity
        last = k == n - 1 or starts[k + 1]
        through_gap = not last or (k < n - 1 and gaps[k + 1])
        end = open_[k + 1] if through_gap else close[k]
        settled = funding[k + 1] if through_gap else 0.0
        pnl, paid = contracts * (end - open_[k]), contracts * end * settled
        if last and contracts:
            traded += abs(contracts) * end
            contracts, last_target = 0.0, 0.0
        costs = traded * (fee + slippage)
        rows.append((held, pnl / equity, traded * fee / equity, traded * slippage / equity, paid / equity,
                     (pnl - costs - paid) / equity, traded / equity))
        equity += pnl - costs - paid
    return np.array(rows).T


def test_engine_books_exactly_what_an_exchange_books() -> None:
    rng = np.random.default_rng(11)
    n = 3000
    open_ = 100 * np.exp(np.cumsum(0.01 * rng.standard_normal(n)))
    close = open_ * np.exp(0.005 * rng.standard_normal(n))
    targets = np.repeat(rng.choice([-1.5, -1.0, 0.0, 0.5, 1.0], n // 10), 10)
    funding = np.where(rng.random(n) < 0.05, rng.normal(1e-4, 3e-4, n), 0.0)
    starts = rng.random(n) < 0.01
    starts[0] = True
    gaps = starts & (rng.random(n) < 0.5)
    gaps[0] = False
    costs = CostModel(taker_fee=0.0005, slippage_bps=2.0)
    result = simulate(targets, open_, close, costs, funding, starts, gaps)
    expected = exchange_ledger(targets, open_, close, 0.0005, 2e-4, funding, starts, gaps)
    names = ("held_position", "gross_return", "fee_cost", "slippage_cost", "funding_cost", "net_return", "turnover")
    for name, values in zip(names, expected, strict=True):
        np.testing.assert_allclose(getattr(result, name), values, rtol=1e-12, atol=1e-15, err_msg=name)


def test_a_short_held_in_contracts_earns_minus_the_price_change() -> None:
    open_ = np.array([100.0, 100.0, 120.0, 90.0, 150.0, 150.0])
    result = simulate(np.array([-1.0, -1.0, -1.0, -1.0, 0.0, 0.0]), open_, open_, CostModel.free())
    equity = np.prod(1 + result.net_return)
    # Entered at 100 and left at 150: the exchange books -(150 / 100 - 1) of the entry equity,
    # not the product of (1 - r) of a short rebalanced every bar.
    assert equity == pytest.approx(1 - (150 / 100 - 1))
    rebalanced = np.prod(1 - np.array([120 / 100, 90 / 120, 150 / 90]) + 1)
    assert abs(equity - rebalanced) > 0.1
    assert result.turnover.tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, pytest.approx(1.5 / 0.5)]  # one entry, one exit


def test_a_short_through_a_price_that_more_than_doubles_is_liquidated_and_stays_flat() -> None:
    # Short from 100; the price reaches 250: the contracts lose 1.5 of the entry equity. The
    # account loses all of it at that bar (-100 %), never more, and the block is flat after it,
    # whatever the targets say, so the equity curve cannot turn negative and flip later returns.
    open_ = np.array([100.0, 100.0, 150.0, 250.0, 200.0, 100.0, 50.0])
    result = simulate(np.full(7, -1.0), open_, open_, CostModel.free())
    assert result.net_return[:2].tolist() == [0.0, pytest.approx(-0.5)]
    assert result.net_return[2] == -1.0
    assert np.all(result.net_return[3:] == 0.0) and np.all(result.held_position[3:] == 0.0)
    assert np.prod(1 + result.net_return) == 0.0
    # a new block starts with its own equity again
    restarted = simulate(np.full(7, -1.0), open_, open_, CostModel.free(),
                         segment_starts=np.array([1, 0, 0, 0, 1, 0, 0], dtype=bool))
    assert restarted.net_return[5] == pytest.approx(-(50 / 100 - 1))  # short from 100 to 50


def test_resizing_happens_at_decisions_only_and_pays_its_cost() -> None:
    open_ = np.array([100.0, 100.0, 110.0, 121.0, 121.0, 121.0])
    costs = CostModel(taker_fee=0.001, slippage_bps=0.0)
    result = simulate(np.array([0.5, 0.5, 0.5, 1.0, 1.0, 0.0]), open_, open_, costs)
    # Held 0.5 at 100; it drifts with the price, no fill while the target stays.
    assert result.turnover[2] == 0.0 and result.fee_cost[2] == 0.0
    assert result.held_position[3] == pytest.approx(0.5 * 1.21 / (1 + 0.5 * 0.21 - 0.0005))
    # The resize to 1.0 at bar 4 trades the difference from the drifted size, and pays for it.
    assert result.turnover[4] == pytest.approx(1.0 - result.held_position[3] * 1.0)
    assert result.fee_cost[4] == pytest.approx(0.001 * result.turnover[4])


def test_an_open_position_pays_its_exit_at_a_blocks_end() -> None:
    open_ = np.array([100.0, 100.0, 100.0, 100.0])
    costs = CostModel(taker_fee=0.0005, slippage_bps=1.0)
    result = simulate(np.array([1.0, 1.0, 1.0, 1.0]), open_, open_, costs, segment_starts=np.array([1, 0, 0, 1], bool))
    # Block 0: entry at bar 1's open, exit at bar 2's close (its end): two fills of one notional.
    assert result.turnover[:3].tolist() == [0.0, 1.0, pytest.approx(1.0 / (1 - 0.0006))]
    assert result.fee_cost[2] > 0 and result.held_position[3] == 0.0


def test_funding_across_a_gap_is_charged_and_the_bar_after_earns_only_its_own_return() -> None:
    # Bars 0-2, then a gap (the bars the model input dropped), then bars 3-5. Funding of 0.1 %
    # settled during the gap is owed by the long held through it.
    open_ = np.array([100.0, 100.0, 100.0, 130.0, 131.3, 131.3])
    close = np.array([100.0, 100.0, 101.0, 131.3, 131.3, 131.3])
    funding = np.array([0.0, 0.0, 0.0, 0.001, 0.0, 0.0])  # what settled since the previous row's open
    starts = np.array([1, 0, 0, 1, 0, 0], bool)
    gaps = np.array([0, 0, 0, 1, 0, 0], bool)
    result = simulate(np.ones(6), open_, close, CostModel(taker_fee=0.0, slippage_bps=0.0), funding, starts, gaps)
    # The long held in bar 2 is marked through the gap to the first open after it (+30 %), pays
    # the gap's funding at that price, and is closed there.
    assert result.gross_return[2] == pytest.approx(0.30)
    assert result.funding_cost[2] == pytest.approx(1.30 * 0.001)
    assert result.turnover[2] == pytest.approx(1.30)  # the exit's notional over the equity at bar 2's open
    # The bar after the gap starts a new block, flat: it earns nothing of the gap's move; the next
    # bar earns its own 1 %.
    assert result.held_position[3] == 0.0 and result.gross_return[3] == 0.0
    assert result.gross_return[4] == pytest.approx(0.0)
    without_gap = simulate(np.ones(6), open_, close, CostModel.free(), funding, starts)
    assert without_gap.gross_return[2] == pytest.approx(0.01)  # at a plain segment end: marked at its close


def test_align_market_ends_a_block_at_a_gap_and_sums_the_funding_in_it() -> None:
    index = pd.date_range("2024-01-01", periods=12, freq="1h", tz="UTC")
    kept = index.delete([5, 6, 7])  # dropped rows (a warm-up after a candle gap)
    funding = pd.Series(0.0, index=index)
    funding.iloc[[2, 6, 8]] = [1e-4, 2e-4, 3e-4]
    market = {"A_USDT_1h": pd.DataFrame({"open": 100.0, "close": 100.0, "funding_rate": funding[kept],
                                         "funding_cumulative": funding.cumsum()[kept]}, index=kept)}
    predictions = pd.DataFrame({"timestamp": kept, "series": "A_USDT_1h", "fold": 0, "segment": "test"})
    aligned = align_market(predictions, market)
    assert aligned["segment_start"].tolist() == [True] + [False] * 4 + [True] + [False] * 3
    assert aligned["gap_before"].tolist() == [False] * 5 + [True] + [False] * 3
    # The first row after the gap carries every settlement since the last row before it.
    assert aligned["funding_rate"].iloc[5] == pytest.approx(2e-4 + 3e-4)
    assert aligned["funding_rate"].iloc[2] == pytest.approx(1e-4)


def test_volatility_scaled_slippage_uses_the_previous_move_only() -> None:
    open_ = np.array([100.0, 110.0, 110.0])
    costs = CostModel(taker_fee=0.0, slippage_bps=1.0, slippage_volatility_multiple=0.5)
    result = simulate(np.array([1.0, 0.0, 0.0]), open_, open_, costs)
    # The entry at bar 1 knows the move 100 -> 110 (10%): 1 bp + 0.5 * 10%; the exit at bar 2
    # follows a bar without a move: 1 bp, on the position's notional over an equity the entry's
    # costs lowered.
    np.testing.assert_allclose(result.slippage_cost, [0, 0.0001 + 0.05, 0.0001 / (1 - 0.0501)])


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


@pytest.mark.parametrize("market_utc", [zoneinfo.ZoneInfo("UTC"), datetime.UTC, None])
def test_bars_match_by_instant_whatever_kind_of_utc_or_unit_each_side_has(market_utc) -> None:
    # Parquet gives ZoneInfo("UTC") in microseconds, pd.to_datetime(utc=True) timezone.utc in ns.
    stamps = pd.date_range("2024-01-01", periods=6, freq="5min", tz="UTC")
    index = pd.DatetimeIndex(stamps.tz_convert(market_utc) if market_utc else stamps.tz_localize(None)).as_unit("us")
    market = {"A_USDT_5m": pd.DataFrame({"open": np.arange(6.0) + 1, "close": np.arange(6.0) + 1.5}, index=index)}
    wanted = pd.to_datetime(stamps[[1, 3, 4]].as_unit("ns").asi8, unit="ns", utc=True)
    predictions = pd.DataFrame({"timestamp": wanted, "series": "A_USDT_5m", "fold": 0, "segment": "test"})
    aligned = align_market(predictions, market)
    assert aligned["open"].tolist() == [2.0, 4.0, 5.0] and aligned["close"].tolist() == [2.5, 4.5, 5.5]
    later = predictions.assign(timestamp=wanted + pd.Timedelta(minutes=1))  # between bars: not there
    with pytest.raises(ValueError, match="misses 3 bars"):
        align_market(later, market)


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
