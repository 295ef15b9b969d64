"""Performance metrics of a strategy's per-bar results (fractions of equity).

Formulas and conventions are written out in docs/metrics.md. In short: Sharpe and Sortino are
computed on calendar-day returns (compounded from the bars) and annualised with sqrt(365); the
drawdown is marked to market at every bar; a trade is a run of bars holding a position of one
sign. Everything is vectorised: no Python loop over bars or trades.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from trading_engine.trading.calendar import (
    DAY,
    DAYS_PER_YEAR,
    bar_length,
    periods_per_year,
    series_bar_length,
)
from trading_engine.trading.portfolio import portfolio_returns
from trading_engine.trading.significance import bootstrap_sharpe_interval, sharpe_significance


def daily_returns(returns: pd.Series) -> pd.Series:
    """Compound per-bar returns (DatetimeIndex) into calendar-day returns (UTC days); days
    without bars are left out."""
    if returns.empty:
        return returns.astype(np.float64)
    with np.errstate(divide="ignore"):  # a liquidated bar (-100 %): log growth -inf, the day -100 %
        growth = np.log1p(returns.astype(np.float64))
    days = growth.groupby(returns.index.floor("D")).sum()
    return np.expm1(days)


def sharpe_ratio(returns: np.ndarray | pd.Series, periods_per_year: float = 1.0) -> float:
    """mean / standard deviation (ddof 1) * sqrt(periods_per_year), risk-free rate 0.

    0.0 when there are fewer than two returns or no variation (a flat strategy has no edge).
    """
    values = np.asarray(returns, dtype=np.float64)
    if values.shape[0] < 2:
        return 0.0
    deviation = values.std(ddof=1)
    if not np.isfinite(deviation) or deviation == 0:
        return 0.0
    return float(values.mean() / deviation * np.sqrt(periods_per_year))


def sharpe_daily_annualised(returns: pd.Series) -> float:
    """Sharpe ratio of daily-compounded returns times sqrt(365), risk-free rate 0.

    0.0 when there are fewer than two days or no variation (a flat strategy has no edge).
    """
    return sharpe_ratio(daily_returns(returns).to_numpy(), DAYS_PER_YEAR)


def sortino_ratio(returns: np.ndarray | pd.Series, periods_per_year: float = 1.0) -> float:
    """mean / downside deviation * sqrt(periods_per_year), with the downside deviation
    sqrt(mean(min(r, 0)^2)) over all returns (target 0). 0.0 with fewer than two returns or a
    zero mean; +inf when the mean is positive and no return is negative."""
    values = np.asarray(returns, dtype=np.float64)
    if values.shape[0] < 2 or values.mean() == 0:
        return 0.0
    downside = np.sqrt(np.mean(np.minimum(values, 0.0) ** 2))
    if downside == 0:
        return float("inf") if values.mean() > 0 else 0.0
    return float(values.mean() / downside * np.sqrt(periods_per_year))


def sortino_daily_annualised(returns: pd.Series) -> float:
    """Sortino ratio of daily-compounded returns times sqrt(365)."""
    return sortino_ratio(daily_returns(returns).to_numpy(), DAYS_PER_YEAR)


def equity_curve(returns: np.ndarray | pd.Series) -> np.ndarray:
    """Equity after each bar, starting from 1."""
    return np.cumprod(1.0 + np.asarray(returns, dtype=np.float64))


def drawdowns(returns: np.ndarray | pd.Series) -> np.ndarray:
    """Equity / running peak - 1 after each bar (<= 0); the initial equity 1 counts as a peak."""
    equity = equity_curve(returns)
    peak = np.maximum.accumulate(np.maximum(equity, 1.0))
    return equity / peak - 1.0


def max_drawdown(returns: np.ndarray | pd.Series) -> float:
    """The deepest drawdown of the bar-by-bar (marked-to-market) equity, e.g. -0.25; 0 if none."""
    values = np.asarray(returns, dtype=np.float64)
    if values.shape[0] == 0:
        return 0.0
    return float(min(drawdowns(values).min(), 0.0))


def max_drawdown_duration(returns: pd.Series, bar: pd.Timedelta | None = None) -> pd.Timedelta:
    """The longest time from an equity peak to the bar that first regains it (or to the last
    bar, for a drawdown not yet recovered). Peaks are measured at bar ends; `bar` is the bar
    length (default: the median spacing of the index)."""
    if returns.empty:
        return pd.Timedelta(0)
    length = bar if bar is not None else bar_length(returns.index)
    # Time at the end of each bar; position 0 is the start (equity 1, a peak).
    ends = np.concatenate([[pd.DatetimeIndex(returns.index[:1]).as_unit("ns").asi8[0]],
                           pd.DatetimeIndex(returns.index).as_unit("ns").asi8 + length.value])
    equity = np.concatenate([[1.0], equity_curve(returns)])
    at_peak = equity >= np.maximum.accumulate(equity)
    last_peak = np.maximum.accumulate(np.where(at_peak, np.arange(equity.shape[0]), 0))
    # Bar i (i >= 1) ends a spell that began at the last peak before it.
    spell = ends[1:] - ends[last_peak[:-1]]
    return pd.Timedelta(int(spell.max()), unit="ns")


def elapsed_time(index: pd.DatetimeIndex, bar: pd.Timedelta | None = None) -> pd.Timedelta:
    """From the first bar's open to the last bar's end."""
    if len(index) == 0:
        return pd.Timedelta(0)
    return index.max() - index.min() + (bar if bar is not None else bar_length(index))


def cagr(returns: pd.Series, bar: pd.Timedelta | None = None) -> float:
    """Compound annual growth rate: final equity ** (365 days / elapsed time) - 1."""
    if returns.empty:
        return 0.0
    final = float(equity_curve(returns)[-1])
    years = elapsed_time(pd.DatetimeIndex(returns.index), bar) / (DAYS_PER_YEAR * DAY)
    if final <= 0:
        return -1.0
    return float(final ** (1.0 / years) - 1.0)


def trade_table(bars: pd.DataFrame) -> pd.DataFrame:
    """One row per trade of the per-bar results `bars` (the output of `trade_positions` /
    `strategy_returns`, blocks contiguous and sorted by time).

    A trade is a run of bars holding a position of one sign; a flip ends one trade and starts
    another. Its return is the sum of its bars' contributions: the gross return of the bars it is
    held, its entry fee and slippage, its exit fee and slippage (paid at the bar that closes it) and
    the funding settled while it is held. Columns: series, entry (first bar held), bars, direction,
    return.
    """
    held = bars["held_position"].to_numpy(dtype=np.float64)
    n = held.shape[0]
    previous = np.zeros(n)
    previous[1:] = held[:-1]  # blocks start flat, so a block boundary never continues a trade
    sign, previous_sign = np.sign(held), np.sign(previous)
    starts = (sign != 0) & (sign != previous_sign)
    trade = np.cumsum(starts) - 1
    trade[sign == 0] = -1
    previous_trade = np.full(n, -1)
    previous_trade[1:] = trade[:-1]
    n_trades = int(starts.sum())

    cost = bars["fee_cost"].to_numpy(dtype=np.float64) + bars["slippage_cost"].to_numpy(dtype=np.float64)
    turnover = bars["turnover"].to_numpy(dtype=np.float64)
    rate = np.divide(cost, turnover, out=np.zeros(n), where=turnover > 0)
    closing = (previous_sign != 0) & (sign != previous_sign)
    # The closing position's share of the bar's cost: what was traded beyond opening the new one
    # (positions are held in contracts, so the old one's size has drifted since its last bar).
    exit_cost = np.where(closing, rate * np.maximum(turnover - np.abs(held), 0.0), 0.0)
    # A bar's funding is what settled while its position was held (the engine books it on that bar).
    own = bars["gross_return"].to_numpy(dtype=np.float64) - (cost - exit_cost) - bars["funding_cost"].to_numpy(
        dtype=np.float64)
    carried = -exit_cost

    in_trade, after_trade = trade >= 0, previous_trade >= 0
    returns = (np.bincount(trade[in_trade], own[in_trade], minlength=n_trades)
               + np.bincount(previous_trade[after_trade], carried[after_trade], minlength=n_trades))
    first = np.flatnonzero(starts)
    return pd.DataFrame({
        "series": bars["series"].iloc[first].to_numpy(),
        "entry": bars["timestamp"].array[first],
        "bars": np.bincount(trade[in_trade], minlength=n_trades),
        "direction": sign[first],
        "return": returns[:n_trades],
    })


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def performance_metrics(bars: pd.DataFrame, n_trials: int | None = None, confidence: float = 0.95,
                        interval_resamples: int = 0, seed: int = 0,
                        trials_sharpe_variance: float | None = None) -> dict[str, Any]:
    """Every performance metric of the per-bar results `bars` of one or several series (an
    equal-weight portfolio of them). With `n_trials`, also the significance of its daily Sharpe
    ratio (PSR, DSR over n_trials with the trials' Sharpe variance `trials_sharpe_variance` per day,
    or luck-only trials when None, MinTRL in days at `confidence`); with `interval_resamples`, a
    stationary-block-bootstrap interval of the daily Sharpe ratio. See docs/metrics.md."""
    if bars.empty:
        return {"n_bars": 0}
    returns = portfolio_returns(bars, "net_return")
    daily = daily_returns(returns)
    trades = trade_table(bars)
    hours_per_bar = {s: series_bar_length(s) / pd.Timedelta(hours=1) for s in bars["series"].unique()}
    n_series = len(hours_per_bar)
    bar = min(hours_per_bar.values()) * pd.Timedelta(hours=1)
    if len(set(hours_per_bar.values())) == 1:  # one timeframe (the usual case)
        holding = trades["bars"].to_numpy() * next(iter(hours_per_bar.values()))
    else:
        holding = trades["bars"].to_numpy() * trades["series"].map(hours_per_bar).to_numpy(dtype=np.float64)
    wins = trades["return"].to_numpy()
    gains, losses = wins[wins > 0].sum(), -wins[wins < 0].sum()
    held = bars["held_position"].to_numpy(dtype=np.float64)
    in_market = held != 0
    net = bars["net_return"].to_numpy(dtype=np.float64)
    elapsed_days = elapsed_time(pd.DatetimeIndex(returns.index), bar) / DAY
    max_dd = max_drawdown(returns)
    growth = cagr(returns, bar)
    significance = {}
    if n_trials is not None:
        significance = sharpe_significance(daily.to_numpy(), n_trials, trials_sharpe_variance, confidence=confidence)
        significance["min_track_record_length_days"] = significance.pop("min_track_record_length")
    if interval_resamples > 0:
        interval = bootstrap_sharpe_interval(daily.to_numpy(), confidence, interval_resamples, seed)
        annualise = np.sqrt(DAYS_PER_YEAR)
        significance["sharpe_interval"] = {
            **interval, **{bound: None if interval[bound] is None else interval[bound] * annualise
                           for bound in ("low", "high")}}
    years = elapsed_days / DAYS_PER_YEAR
    long_enough = years >= 1.0
    return {
        "sharpe": sharpe_ratio(daily.to_numpy(), DAYS_PER_YEAR),
        "sharpe_per_bar": sharpe_ratio(returns.to_numpy(), periods_per_year(bar)),
        "sortino": _finite_or_none(sortino_ratio(daily.to_numpy(), DAYS_PER_YEAR)),
        "max_drawdown": max_dd,
        "max_drawdown_duration_days": max_drawdown_duration(returns, bar) / DAY,
        # Annualising a shorter period extrapolates its luck: CAGR and Calmar need a year of bars.
        "cagr": growth if long_enough else None,
        "calmar": (_finite_or_none(growth / -max_dd) if max_dd < 0 else None) if long_enough else None,
        "total_return": float(equity_curve(returns)[-1] - 1.0),
        "volatility": float(daily.std(ddof=1) * np.sqrt(DAYS_PER_YEAR)) if len(daily) > 1 else 0.0,
        "win_rate": float((wins > 0).mean()) if wins.size else None,
        "win_rate_bars": float((net[in_market] > 0).mean()) if in_market.any() else None,
        "profit_factor": _finite_or_none(gains / losses) if losses > 0 else (None if gains > 0 else 0.0),
        "n_trades": int(len(trades)),
        "average_trade_return": float(wins.mean()) if wins.size else None,
        "average_holding_hours": float(holding.mean()) if holding.size else None,
        "turnover_per_day": float(bars["turnover"].sum() / n_series / elapsed_days),
        "exposure": float(np.abs(held).mean()),
        "time_in_market": float(in_market.mean()),
        "fees": float(bars["fee_cost"].sum() / n_series),
        "slippage": float(bars["slippage_cost"].sum() / n_series),
        "funding": float(bars["funding_cost"].sum() / n_series),
        # Where the money went, in fractions of the capital a year (sums, not compounded).
        "per_year": {name: float(bars[column].sum() / n_series / years) if years > 0 else None
                     for name, column in (("gross_return", "gross_return"), ("fees", "fee_cost"),
                                          ("slippage", "slippage_cost"), ("funding", "funding_cost"),
                                          ("net_return", "net_return"))},
        "n_bars": int(len(returns)),
        "n_days": int(len(daily)),
        "n_series": n_series,
        "start": pd.Timestamp(returns.index[0]).isoformat(),
        "end": pd.Timestamp(returns.index[-1]).isoformat(),
        **significance,
    }
