"""Performance metrics against hand-computed cases and against empyrical."""

from __future__ import annotations

import empyrical
import numpy as np
import pandas as pd
import pytest

from trading_engine.trading import CostModel
from trading_engine.trading.engine import simulate
from trading_engine.trading.metrics import (
    DAYS_PER_YEAR,
    cagr,
    daily_returns,
    max_drawdown,
    max_drawdown_duration,
    performance_metrics,
    sharpe_daily_annualised,
    sharpe_ratio,
    sortino_ratio,
    trade_table,
)

HAND = np.array([0.1, -0.05, 0.02, -0.1, 0.2])


def test_hand_computed_sharpe_sortino_and_drawdown() -> None:
    # mean 0.034; sample std sqrt(sum((r - 0.034)^2) / 4); downside sqrt((0.05^2 + 0.1^2) / 5) = 0.05
    std = np.sqrt((0.066**2 + 0.084**2 + 0.014**2 + 0.134**2 + 0.166**2) / 4)
    assert sharpe_ratio(HAND) == pytest.approx(0.034 / std)
    assert sortino_ratio(HAND) == pytest.approx(0.034 / 0.05)
    assert sortino_ratio(HAND, 365) == pytest.approx(0.68 * np.sqrt(365))
    # equity 1.1, 1.045, 1.0659, 0.95931, 1.151172: trough 0.95931 under the peak 1.1
    assert max_drawdown(HAND) == pytest.approx(0.95931 / 1.1 - 1)
    assert max_drawdown(np.array([-0.1, 0.05])) == pytest.approx(-0.1)  # the start counts as a peak
    assert max_drawdown(np.array([0.01, 0.02])) == 0.0


def test_drawdown_duration_runs_from_peak_to_recovery() -> None:
    index = pd.date_range("2024-01-01", periods=5, freq="1h", tz="UTC")
    # Peak at the end of bar 0; regained at the end of bar 4: 4 hours.
    assert max_drawdown_duration(pd.Series(HAND, index=index)) == pd.Timedelta(hours=4)
    # Never recovered: from the end of bar 0 to the end of the last bar.
    falling = pd.Series([0.1, -0.05, -0.01], index=index[:3])
    assert max_drawdown_duration(falling) == pd.Timedelta(hours=2)


def test_cagr_of_a_doubling_year_is_one() -> None:
    index = pd.date_range("2024-01-01", periods=DAYS_PER_YEAR, freq="1D", tz="UTC")
    daily = pd.Series(2 ** (1 / DAYS_PER_YEAR) - 1, index=index)
    assert cagr(daily) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_sharpe_sortino_max_drawdown_match_empyrical(seed: int) -> None:
    rng = np.random.default_rng(seed)
    returns = 0.0005 + 0.01 * rng.standard_t(4, 750)
    assert sharpe_ratio(returns, 365) == pytest.approx(empyrical.sharpe_ratio(returns, annualization=365))
    assert sortino_ratio(returns, 365) == pytest.approx(empyrical.sortino_ratio(returns, annualization=365))
    assert max_drawdown(returns) == pytest.approx(empyrical.max_drawdown(returns))


def test_daily_sharpe_compounds_bars_into_days() -> None:
    index = pd.date_range("2024-01-01", periods=48 * 3, freq="30min", tz="UTC")
    bars = pd.Series(np.tile([0.01, -0.005], 72), index=index)
    days = daily_returns(bars)
    assert len(days) == 3
    assert days.iloc[0] == pytest.approx((1.01 * 0.995) ** 24 - 1)
    rng = np.random.default_rng(3)
    noisy = pd.Series(0.001 * rng.standard_normal(len(index)), index=index)
    assert sharpe_daily_annualised(noisy) == pytest.approx(
        empyrical.sharpe_ratio(daily_returns(noisy).to_numpy(), annualization=365))


def _bars(positions: np.ndarray, open_: np.ndarray, costs: CostModel, funding: np.ndarray | None = None) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=len(open_), freq="1h", tz="UTC")
    result = simulate(positions, open_, open_, costs, funding)
    frame = pd.DataFrame({name: getattr(result, name) for name in
                          ("held_position", "gross_return", "fee_cost", "slippage_cost", "funding_cost",
                           "net_return", "turnover")})
    frame.insert(0, "timestamp", index)
    frame.insert(1, "series", "A_USDT_1h")
    return frame


def test_trades_split_at_flips_and_carry_their_own_costs() -> None:
    open_ = np.array([100.0, 110.0, 121.0, 133.1, 119.79, 107.811, 107.811])
    # targets: long, long, short, short, flat...  -> held: 0, 1, 1, -1, -1, 0, 0
    positions = np.array([1.0, 1.0, -1.0, -1.0, 0.0, 0.0, 0.0])
    funding = np.array([0.0, 0.0, 0.001, 0.0, 0.0, 0.0, 0.0])
    bars = _bars(positions, open_, CostModel(taker_fee=0.001, slippage_bps=0.0), funding)
    trades = trade_table(bars)
    assert trades["direction"].tolist() == [1.0, -1.0]
    assert trades["bars"].tolist() == [2, 2]
    # Bars 1..4 move +10%, +10%, -10%, -10%. The long pays its entry fee, the funding settled at
    # bar 2's open (booked on bar 1, the bar it is held through) and its share of the flip's fee
    # (its own size at the flip); the short the rest of the flip's fee and its exit at bar 5.
    net, held, fee, turnover = (bars[c].to_numpy() for c in ("net_return", "held_position", "fee_cost", "turnover"))
    long_exit = (turnover[3] - abs(held[3])) * 0.001  # the long's drifted size at the flip
    np.testing.assert_allclose(trades["return"], [net[1] + net[2] - long_exit, net[3] + net[4] + net[5] + long_exit])
    assert bars["funding_cost"].iloc[1] == pytest.approx(121 / 110 * 0.001)  # the long's notional at the settlement
    assert trades["return"].sum() == pytest.approx(bars["net_return"].sum())
    assert fee[1] == pytest.approx(0.001) and fee[3] > 0.002  # the flip trades more than twice the entry


def test_win_rate_profit_factor_holding_time_and_turnover() -> None:
    open_ = np.array([100.0, 101.0, 100.0, 100.0, 102.0, 102.0, 102.0])
    positions = np.array([1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0])  # held 0,1,0,-1,0,0,0
    metrics = performance_metrics(_bars(positions, open_, CostModel.free()))
    # Trades: long earns 101/100... bar 1 return (100/101 - 1); short earns -(102/100 - 1).
    assert metrics["n_trades"] == 2
    assert metrics["win_rate"] == 0.0
    assert metrics["profit_factor"] == 0.0
    assert metrics["average_holding_hours"] == pytest.approx(1.0)
    assert metrics["time_in_market"] == pytest.approx(2 / 7)
    assert metrics["exposure"] == pytest.approx(2 / 7)
    # Traded over 7 hours, in units of the equity at each fill: the long's entry and exit (1, 1),
    # the short's entry (1) and its exit after the price rose 2 %, when the short is worth
    # 1.02 of an equity that fell to 0.98 of its entry value (positions are held in contracts).
    assert metrics["turnover_per_day"] == pytest.approx((3 + 1.02 / 0.98) / (7 / 24))
    winning = performance_metrics(_bars(-positions, open_, CostModel.free()))
    assert winning["win_rate"] == 1.0 and winning["profit_factor"] is None  # no losing trade
