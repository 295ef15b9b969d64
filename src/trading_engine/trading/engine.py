"""The backtest of perpetual-futures positions with next-bar execution, booked as an exchange books
it: positions are held in contracts, and every fill, settlement and exit is paid.

Timing (the whole point of this module):
- `positions[t]` is the target decided with the bar that closes at t, as a signed fraction of the
  equity. It is filled at the open of bar t+1, so the position held during bar k is the target of
  bar k-1 (every block starts flat).
- Held in contracts. A fill happens only when the target changes: the position is then resized to
  target x equity (marked at the fill's open) and the traded notional pays the taker fee and the
  slippage. Between fills the number of contracts stays: a short of -1 that the price halves is
  worth -0.5 of the (grown) equity, and its P&L is -(P_end / P_start - 1) of the equity at entry,
  as on an exchange, not the compounded product of per-bar returns of a rebalanced fraction.
- Bar k's P&L is contracts x (end price - open_k): the end price is the next bar's open within a
  block, and the bar's close at the end of a block.
- Funding: `funding_rate[k]` is what settled after the previous bar's open up to and including
  bar k's open (every 8 h on Binance: the rate at the settlement); it is charged on the contracts
  held before that instant, at the price of that instant (open_k): a long pays a positive rate, a
  short receives it.
- Liquidation: a bar whose loss takes all the equity ends the position there, with a net return
  of -100 % (the exchange's insurance fund, not the account, bears a loss beyond it), and the
  block stays flat after it. A position held in contracts can lose more than its entry equity
  (a short through a doubling price): compounding such a bar would otherwise flip the sign of
  every later return.
- A block ends at a gap. A position still open at the end of a block is closed and pays its exit
  (fee and slippage on its notional). At the end of a segment it is closed at the last bar's
  close. Before a gap (`gap_before` on the next bar) it cannot trade while the market is missing:
  it is held through the gap, marked to the first open after it, charged the funding settled
  during the gap (including bars the model input dropped), and closed there. The bar after a gap
  starts a new, flat block and earns only its own return.

Several blocks (e.g. the test blocks of several series and folds) are simulated in one call:
`segment_starts[k]` is True where a new block begins. The state (contracts, equity) depends on
the path, so the loop over bars runs compiled (numba): 2.6 M bars take milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from trading_engine.trading.costs import CostModel


@dataclass(frozen=True)
class BacktestResult:
    """Per-bar arrays, all of the same length as the input, in fractions of the equity at the
    bar's open: `held_position` is the position's value over that equity after the bar's fill."""

    held_position: np.ndarray
    gross_return: np.ndarray
    fee_cost: np.ndarray
    slippage_cost: np.ndarray
    funding_cost: np.ndarray
    net_return: np.ndarray
    turnover: np.ndarray


def _as_segment_starts(segment_starts: np.ndarray | None, n: int) -> np.ndarray:
    if segment_starts is None:
        starts = np.zeros(n, dtype=bool)
    else:
        starts = np.asarray(segment_starts, dtype=bool).copy()
        if starts.shape != (n,):
            raise ValueError(f"segment_starts has shape {starts.shape}, expected ({n},)")
    starts[:1] = True
    return starts


def bar_end_prices(open_: np.ndarray, close: np.ndarray, segment_starts: np.ndarray | None = None,
                   gap_before: np.ndarray | None = None) -> np.ndarray:
    """The price each bar's position is marked to at the bar's end: the next bar's open within a
    block; before a gap, the first open after it; at the end of a segment, the bar's close."""
    open_ = np.asarray(open_, dtype=np.float64)
    end = np.asarray(close, dtype=np.float64).copy()
    starts = _as_segment_starts(segment_starts, open_.shape[0])
    continues = np.zeros(open_.shape[0], dtype=bool)
    continues[:-1] = ~starts[1:]
    if gap_before is not None:
        continues[:-1] |= np.asarray(gap_before, dtype=bool)[1:]
    end[continues] = open_[1:][continues[:-1]]
    return end


def bar_returns(open_: np.ndarray, close: np.ndarray, segment_starts: np.ndarray | None = None) -> np.ndarray:
    """The price return of each bar: end price / open - 1 (open-to-open within a block, open-to-
    close on its last bar)."""
    return bar_end_prices(open_, close, segment_starts) / np.asarray(open_, dtype=np.float64) - 1.0


@numba.njit(cache=True)
def _book(targets, open_, end_price, funding_next, slippage_rate, fee_rate, block_start, block_end):  # pragma: no cover
    n = targets.shape[0]
    held = np.zeros(n)
    gross = np.zeros(n)
    fee = np.zeros(n)
    slippage = np.zeros(n)
    funding = np.zeros(n)
    net = np.zeros(n)
    turnover = np.zeros(n)
    contracts = 0.0  # per unit of the block's starting equity
    equity = 1.0
    held_target = 0.0
    for k in range(n):
        if block_start[k]:
            contracts, equity, held_target = 0.0, 1.0, 0.0
        if equity <= 0.0:  # liquidated earlier in this block: nothing left to trade with
            continue
        target = 0.0 if block_start[k] else targets[k - 1]
        traded = 0.0
        if target != held_target:  # a fill at this bar's open: resize to target x equity
            new_contracts = target * equity / open_[k]
            traded = abs(new_contracts - contracts) * open_[k]
            contracts, held_target = new_contracts, target
        cost_fee = traded * fee_rate
        cost_slippage = traded * slippage_rate[k]
        pnl = contracts * (end_price[k] - open_[k])
        paid_funding = contracts * end_price[k] * funding_next[k]
        held[k] = contracts * open_[k] / equity
        if block_end[k] and contracts != 0.0:  # the exit of a position still open at the block's end
            exit_notional = abs(contracts) * end_price[k]
            traded += exit_notional
            cost_fee += exit_notional * fee_rate
            cost_slippage += exit_notional * slippage_rate[k]
            contracts, held_target = 0.0, 0.0
        gross[k] = pnl / equity
        fee[k] = cost_fee / equity
        slippage[k] = cost_slippage / equity
        funding[k] = paid_funding / equity
        turnover[k] = traded / equity
        next_equity = equity + pnl - cost_fee - cost_slippage - paid_funding
        if next_equity <= 0.0:  # the loss takes all the equity: liquidated, flat for the rest of the block
            next_equity, contracts, held_target = 0.0, 0.0, 0.0
        net[k] = next_equity / equity - 1.0
        equity = next_equity
    return held, gross, fee, slippage, funding, net, turnover


def simulate(
    positions: np.ndarray,
    open_: np.ndarray,
    close: np.ndarray,
    costs: CostModel,
    funding_rate: np.ndarray | None = None,
    segment_starts: np.ndarray | None = None,
    gap_before: np.ndarray | None = None,
) -> BacktestResult:
    """Trade `positions` (targets decided at each bar's close) with next-bar fills, positions held
    in contracts, and the given costs.

    `segment_starts` (optional, boolean) marks the first bar of each independent block; by
    default the whole input is one block. `gap_before` (optional, boolean) marks block starts
    that follow a gap in the same market: the previous block's position is held through the gap
    to this bar's open, charged this bar's `funding_rate` (what settled during the gap), and
    closed there.
    """
    positions = np.nan_to_num(np.asarray(positions, dtype=np.float64), nan=0.0)
    n = positions.shape[0]
    if not (len(open_) == len(close) == n):
        raise ValueError(f"positions, open and close differ in length: {n}, {len(open_)}, {len(close)}")
    if n == 0:
        empty = np.zeros(0)
        return BacktestResult(empty, empty, empty, empty, empty, empty, empty)
    open_ = np.ascontiguousarray(open_, dtype=np.float64)
    starts = _as_segment_starts(segment_starts, n)
    gaps = np.zeros(n, dtype=bool) if gap_before is None else np.asarray(gap_before, dtype=bool) & starts
    end_price = bar_end_prices(open_, close, starts, gaps)
    ends = np.zeros(n, dtype=bool)
    ends[:-1] = starts[1:]
    ends[-1] = True

    # What settles during bar k (after its open, up to its end) is the next bar's rate, while the
    # position carries into the next bar or through a gap; nothing after a segment's last close.
    rates = np.zeros(n) if funding_rate is None or not costs.charge_funding else np.nan_to_num(
        np.asarray(funding_rate, dtype=np.float64))
    funding_next = np.zeros(n)
    carries = ~ends.copy()
    carries[:-1] |= gaps[1:]
    funding_next[:-1] = np.where(carries[:-1], rates[1:], 0.0)

    slippage_rate = np.full(n, costs.slippage_bps * 1e-4)
    if costs.slippage_volatility_multiple > 0:
        # Volatility known at the fill (open of bar k): the previous bar's |open-to-open| move.
        previous_move = np.zeros(n)
        previous_move[1:] = np.abs(open_[1:] / open_[:-1] - 1.0)
        previous_move[starts] = 0.0
        slippage_rate = slippage_rate + costs.slippage_volatility_multiple * previous_move
    return BacktestResult(*_book(positions, open_, end_price, funding_next, slippage_rate, float(costs.taker_fee),
                                 starts, ends))
