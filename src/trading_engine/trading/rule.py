"""The trading rule: from a forecast to a target position, decided at a bar's close.

This is the one rule of the project. Training's early stopping, the tuning objective, the
evaluation (model and baselines) and the live signals all call `target_positions`, so a model is
selected by the same trades it is judged and deployed by.

What the rule reads at each bar t (all known at t's close):
- `expected_return[t]`: the forecast log return over the model's horizon, in return units (the
  model's regression head, `pred_return`; a baseline's own forecast). NaN: no forecast.
- `confidence[t]`: the probability that the direction of that forecast is right (the model's
  confidence head; 1 for a forecast without one).
- `round_trip_cost[t]`: fees and slippage of opening and later closing a position, as a fraction
  of its notional (`CostModel.round_trip_cost`).
- `size[t]`: the size of a position opened at t (1, or the volatility target's leverage).

The rule, per block of contiguous bars (each block starts flat):
1. It decides only at decision bars: bars whose open time, counted in bars since the Unix epoch,
   is a multiple of `decide_every` (so a live run and the backtest agree on which bars decide).
2. Flat: it opens a position in the forecast's direction when |expected_return| >=
   `cost_multiple` x round_trip_cost and confidence >= `confidence_threshold` (a short only with
   `allow_short`). Not trading is the default: a forecast that does not beat its round trip
   never trades.
3. In a position: nothing changes for `min_holding_bars` bars after it was opened (default: the
   forecast's horizon, the time the forecast is about). After that, at a decision bar,
   - a forecast that passes the entry test in the same direction renews it (the holding clock
     restarts: a new forecast covers a new horizon);
   - a forecast that passes the entry test in the other direction flips it;
   - otherwise the position is kept while direction x expected_return >= `exit_cost_multiple` x
     round_trip_cost, and closed when it falls below. `exit_cost_multiple` defaults to
     `cost_multiple` (keep only what you would open); lower values give hysteresis (enter at
     k_in, leave at k_out), e.g. 0: keep while the forecast still expects a gain.
4. A position's size is set when it opens and kept until it closes: the rule never pays costs to
   resize a position it keeps.

The state (the position, its size, its age) depends on the path, so the loop over bars runs
compiled (numba): 2.6 M bars take milliseconds (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from scipy import signal

from trading_engine.params import known_params


@dataclass(frozen=True)
class TradingRule:
    trades: bool = True  # False: never trades (the "not trading" candidate every selection includes)
    cost_multiple: float = 1.0  # k_in: open when |E[r]| >= k_in x round trip cost
    exit_cost_multiple: float | None = None  # k_out: keep while E[r] in the held direction >= k_out x cost; None: k_in
    min_holding_bars: int | None = None  # bars a position is held at least; None: the forecast's horizon
    decide_every: int = 1  # bars between decisions (aligned to the epoch)
    confidence_threshold: float = 0.0  # open or renew only when the confidence is at least this
    allow_short: bool = True
    target_volatility: float | None = None  # annualised; None: every position has size 1
    volatility_halflife_bars: int = 288  # of the EWMA volatility that sizes positions (288 = a day of 5m bars)
    max_leverage: float = 1.0  # cap of the volatility-targeted size

    def __post_init__(self) -> None:
        if not (np.isfinite(self.cost_multiple) and self.cost_multiple >= 0):
            raise ValueError(f"cost_multiple must be >= 0, got {self.cost_multiple}")
        if self.exit_cost_multiple is not None and not self.exit_cost_multiple <= self.cost_multiple:
            raise ValueError(f"exit_cost_multiple ({self.exit_cost_multiple}) must not exceed cost_multiple "
                             f"({self.cost_multiple}): a position would close as soon as it opens")
        if self.min_holding_bars is not None and self.min_holding_bars < 1:
            raise ValueError(f"min_holding_bars must be >= 1 (or null: the horizon), got {self.min_holding_bars}")
        if self.decide_every < 1:
            raise ValueError(f"decide_every must be >= 1, got {self.decide_every}")
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must lie in [0, 1], got {self.confidence_threshold}")
        if self.target_volatility is not None and not self.target_volatility > 0:
            raise ValueError(f"target_volatility must be > 0 (or null: no sizing), got {self.target_volatility}")
        if self.volatility_halflife_bars < 1:
            raise ValueError(f"volatility_halflife_bars must be >= 1, got {self.volatility_halflife_bars}")
        if not self.max_leverage > 0:
            raise ValueError(f"max_leverage must be > 0, got {self.max_leverage}")

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> TradingRule:
        values = known_params(params, cls, "trading-rule parameters")
        for name in ("cost_multiple", "exit_cost_multiple", "confidence_threshold", "target_volatility",
                     "max_leverage"):
            if values.get(name) is not None:
                values[name] = float(values[name])
        return cls(**values)

    @property
    def flat(self) -> bool:
        """Never trades: the "not trading" candidate."""
        return not self.trades

    def holding_bars(self, horizon: int) -> int:
        """The minimum holding time in bars for a forecast of `horizon` bars."""
        return int(self.min_holding_bars) if self.min_holding_bars is not None else max(int(horizon), 1)

    def exit_multiple(self) -> float:
        return self.cost_multiple if self.exit_cost_multiple is None else float(self.exit_cost_multiple)

    def describe(self, horizon: int) -> str:
        """One line for people, e.g. "k 1.5 (exit 0), hold >= 60 bars, decide every 1 bar"."""
        if self.flat:
            return "not trading"
        parts = [f"open at {self.cost_multiple:g}x the round trip"]
        if self.exit_cost_multiple is not None and self.exit_cost_multiple != self.cost_multiple:
            parts.append(f"keep while >= {self.exit_cost_multiple:g}x")
        parts.append(f"hold >= {self.holding_bars(horizon)} bars")
        if self.decide_every > 1:
            parts.append(f"decide every {self.decide_every} bars")
        if self.confidence_threshold > 0:
            parts.append(f"confidence >= {self.confidence_threshold:.2f}")
        if not self.allow_short:
            parts.append("long only")
        if self.target_volatility is not None:
            parts.append(f"sized to {self.target_volatility:.0%} a year (leverage <= {self.max_leverage:g})")
        return ", ".join(parts)


NOT_TRADING = TradingRule(trades=False)
SIZE_DECIMALS = 6  # sizes are rounded to 1e-6 of equity, so a trailing window reproduces them exactly


def ewma_volatility(close: np.ndarray, halflife_bars: int) -> np.ndarray:
    """Per bar, the exponentially weighted standard deviation (half-life `halflife_bars`) of the
    one-bar log returns up to that bar, over its last 8 half-lives only (later weights are under
    1/256): the same value from the whole history or from any trailing window of that length.
    NaN before the second bar."""
    close = np.asarray(close, dtype=np.float64)
    returns = np.full(close.shape[0], np.nan)
    returns[1:] = np.diff(np.log(close))
    known = np.isfinite(returns)
    decay = 0.5 ** (1.0 / halflife_bars)
    window = 8 * halflife_bars

    def truncated_sum(values: np.ndarray) -> np.ndarray:
        running = signal.lfilter([1.0], [1.0, -decay], values)  # sum over all i >= 0 of decay^i x[t - i]
        dropped = np.zeros_like(running)
        dropped[window:] = running[:-window] * decay**window
        return running - dropped

    weight = truncated_sum(known.astype(np.float64))
    variance = truncated_sum(np.where(known, returns, 0.0) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, np.sqrt(np.maximum(variance, 0.0) / weight), np.nan)


def volatility_target_sizes(close: np.ndarray, rule: TradingRule, bars_per_year: float) -> np.ndarray:
    """The size of a position opened at each bar: target volatility / the EWMA volatility known
    at that bar (annualised), capped at `max_leverage`; 1 everywhere without a target."""
    close = np.asarray(close, dtype=np.float64)
    if rule.target_volatility is None:
        return np.ones(close.shape[0])
    annual = ewma_volatility(close, rule.volatility_halflife_bars) * np.sqrt(bars_per_year)
    with np.errstate(divide="ignore", invalid="ignore"):
        size = np.minimum(rule.target_volatility / annual, rule.max_leverage)
    return np.round(size, SIZE_DECIMALS)


def decision_bars(timestamps_ns: np.ndarray, bar_ns: np.ndarray | int, decide_every: int) -> np.ndarray:
    """True at the bars the rule may decide: open time / bar length is a multiple of decide_every."""
    timestamps_ns = np.asarray(timestamps_ns, dtype=np.int64)
    if decide_every == 1:
        return np.ones(timestamps_ns.shape[0], dtype=bool)
    return (timestamps_ns // np.asarray(bar_ns, dtype=np.int64)) % decide_every == 0


@dataclass(frozen=True)
class RuleState:
    """What the rule carries from one bar to the next: the direction held (-1, 0, +1), its size
    and its age (bars since it was opened or renewed). A live run stores it with each decision
    and starts the next bar from it, so that it decides exactly as the backtest does."""

    direction: float = 0.0
    size: float = 0.0
    age: int = 0


FLAT = RuleState()


@numba.njit(cache=True)
def _positions(expected_return, confidence, round_trip_cost, size, decision, segment_start,
               enter_multiple, exit_multiple, holding_bars, confidence_threshold, allow_short,
               direction, held_size, age):  # pragma: no cover
    n = expected_return.shape[0]
    positions = np.zeros(n)
    for t in range(n):
        if segment_start[t]:
            direction, held_size, age = 0.0, 0.0, 0
        elif direction != 0.0:
            age += 1
        forecast = expected_return[t]
        if decision[t] and (direction == 0.0 or age >= holding_bars):
            threshold = enter_multiple * round_trip_cost[t]
            wanted = 0.0
            if np.isfinite(forecast) and confidence[t] >= confidence_threshold:
                if forecast >= threshold and forecast > 0.0:
                    wanted = 1.0
                elif forecast <= -threshold and forecast < 0.0 and allow_short:
                    wanted = -1.0
            if wanted != 0.0 and np.isfinite(size[t]) and size[t] > 0.0:
                if wanted != direction:
                    held_size = size[t]
                direction, age = wanted, 0
            elif direction != 0.0 and not (np.isfinite(forecast)
                                           and direction * forecast >= exit_multiple * round_trip_cost[t]):
                direction, held_size, age = 0.0, 0.0, 0
        positions[t] = direction * held_size
    return positions, direction, held_size, age


def target_positions(
    expected_return: np.ndarray,
    rule: TradingRule,
    round_trip_cost: np.ndarray | float,
    horizon: int,
    confidence: np.ndarray | None = None,
    size: np.ndarray | float = 1.0,
    decision: np.ndarray | None = None,
    segment_starts: np.ndarray | None = None,
) -> np.ndarray:
    """The target position of each bar (a fraction of equity, signed), decided at its close.

    Arrays are per bar, in time order within each block; `segment_starts` marks the first bar of
    each block (default: one block). `decision` marks the bars that may decide (default: all;
    see `decision_bars`). `confidence` defaults to 1. See the module's docstring for the rule.
    """
    return continue_positions(expected_return, rule, round_trip_cost, horizon, FLAT, confidence, size, decision,
                              segment_starts)[0]


def continue_positions(
    expected_return: np.ndarray,
    rule: TradingRule,
    round_trip_cost: np.ndarray | float,
    horizon: int,
    state: RuleState,
    confidence: np.ndarray | None = None,
    size: np.ndarray | float = 1.0,
    decision: np.ndarray | None = None,
    segment_starts: np.ndarray | None = None,
) -> tuple[np.ndarray, RuleState]:
    """`target_positions` from a given state (the one left by the bar before the first), and the
    state after the last bar: a live run decides one bar at a time with it, exactly as the
    backtest decides a whole block."""
    expected_return = np.asarray(expected_return, dtype=np.float64)
    n = expected_return.shape[0]
    if rule.flat or n == 0:
        return np.zeros(n), FLAT if rule.flat else state

    def per_bar(values: np.ndarray | float | None, default: float) -> np.ndarray:
        array = np.full(n, default) if values is None else np.broadcast_to(np.asarray(values, dtype=np.float64), (n,))
        return np.ascontiguousarray(array, dtype=np.float64)

    starts = np.zeros(n, dtype=np.bool_) if segment_starts is None else np.asarray(segment_starts, dtype=np.bool_)
    decide = np.ones(n, dtype=np.bool_) if decision is None else np.asarray(decision, dtype=np.bool_)
    positions, direction, held_size, age = _positions(
        expected_return, per_bar(confidence, 1.0), per_bar(round_trip_cost, 0.0), per_bar(size, 1.0),
        np.ascontiguousarray(decide), np.ascontiguousarray(starts), float(rule.cost_multiple), rule.exit_multiple(),
        rule.holding_bars(horizon), float(rule.confidence_threshold), bool(rule.allow_short),
        float(state.direction), float(state.size), int(state.age))
    return positions, RuleState(float(direction), float(held_size), int(age))
