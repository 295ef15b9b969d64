"""A vectorised backtest of perpetual-futures positions with next-bar execution.

Timing (the whole point of this module):
- `positions[t]` is the target decided with the bar that closes at t.
- It is filled at the open of bar t+1, so the position held during bar k is
  held[k] = positions[k-1] (held[0] = 0: every segment starts flat).
- Bar k's return is open-to-open: r[k] = open[k+1] / open[k] - 1 (the last bar of a segment,
  which has no next open, is marked at its close: close[k] / open[k] - 1). The position is
  therefore marked to market at every bar.
- Trading costs are paid at the fill, bar k: |held[k] - held[k-1]| * (fee + slippage).
- Funding is exchanged at funding times (every 8 h on Binance). `funding_rate[k]` is the rate
  settled at the open of bar k (0 where there is none); it is charged on the position held
  just before that instant, held[k-1]: a long pays a positive rate, a short receives it.

Several independent segments (e.g. the test blocks of several series and folds) can be simulated
in one call: `segment_starts[k]` is True where a new segment begins. Nothing crosses a segment
boundary: the position, the open-to-open return and the funding all restart there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trading_engine.trading.costs import CostModel


@dataclass(frozen=True)
class BacktestResult:
    """Per-bar arrays, all of the same length as the input, in fractions of equity."""

    held_position: np.ndarray
    gross_return: np.ndarray
    fee_cost: np.ndarray
    slippage_cost: np.ndarray
    funding_cost: np.ndarray
    net_return: np.ndarray
    turnover: np.ndarray


def _segment_ends(segment_starts: np.ndarray) -> np.ndarray:
    """True on the last bar of each segment."""
    ends = np.zeros_like(segment_starts)
    ends[:-1] = segment_starts[1:]
    ends[-1:] = True
    return ends


def _as_segment_starts(segment_starts: np.ndarray | None, n: int) -> np.ndarray:
    if segment_starts is None:
        starts = np.zeros(n, dtype=bool)
    else:
        starts = np.asarray(segment_starts, dtype=bool).copy()
        if starts.shape != (n,):
            raise ValueError(f"segment_starts has shape {starts.shape}, expected ({n},)")
    starts[:1] = True
    return starts


def bar_returns(open_: np.ndarray, close: np.ndarray, segment_starts: np.ndarray | None = None) -> np.ndarray:
    """Open-to-open return of each bar; the last bar of each segment is marked at its close."""
    open_ = np.asarray(open_, dtype=np.float64)
    close = np.asarray(close, dtype=np.float64)
    returns = np.empty_like(open_)
    returns[:-1] = open_[1:] / open_[:-1] - 1.0
    ends = _segment_ends(_as_segment_starts(segment_starts, open_.shape[0]))
    returns[ends] = close[ends] / open_[ends] - 1.0
    return returns


def simulate(
    positions: np.ndarray,
    open_: np.ndarray,
    close: np.ndarray,
    costs: CostModel,
    funding_rate: np.ndarray | None = None,
    segment_starts: np.ndarray | None = None,
) -> BacktestResult:
    """Trade `positions` (decided at each bar's close) with next-bar fills and the given costs.

    `segment_starts` (optional, boolean) marks the first bar of each independent segment; by
    default the whole input is one segment.
    """
    positions = np.nan_to_num(np.asarray(positions, dtype=np.float64), nan=0.0)
    n = positions.shape[0]
    if not (len(open_) == len(close) == n):
        raise ValueError(f"positions, open and close differ in length: {n}, {len(open_)}, {len(close)}")
    if n == 0:
        empty = np.zeros(0)
        return BacktestResult(empty, empty, empty, empty, empty, empty, empty)
    open_ = np.asarray(open_, dtype=np.float64)
    starts = _as_segment_starts(segment_starts, n)

    held = np.zeros(n)
    held[1:] = positions[:-1]
    held[starts] = 0.0
    previous_held = np.zeros(n)
    previous_held[1:] = held[:-1]
    previous_held[starts] = 0.0
    turnover = np.abs(held - previous_held)

    returns = bar_returns(open_, close, starts)
    gross = held * returns

    fee = turnover * costs.taker_fee
    slippage_rate = np.full(n, costs.slippage_bps * 1e-4)
    if costs.slippage_volatility_multiple > 0:
        # Volatility known at the fill (open of bar k): the previous bar's |open-to-open| move.
        previous_move = np.zeros(n)
        previous_move[1:] = np.abs(open_[1:] / open_[:-1] - 1.0)
        previous_move[starts] = 0.0
        slippage_rate = slippage_rate + costs.slippage_volatility_multiple * previous_move
    slippage = turnover * slippage_rate

    if funding_rate is not None and costs.charge_funding:
        funding = previous_held * np.nan_to_num(np.asarray(funding_rate, dtype=np.float64))
    else:
        funding = np.zeros(n)

    net = gross - fee - slippage - funding
    return BacktestResult(held, gross, fee, slippage, funding, net, turnover)
