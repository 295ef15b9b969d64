"""The model-input table of one series (the contract in docs/architecture.md).

Columns: the `feat_*` features (float32, finite), the targets (float64, NaN on the last h rows),
then the market columns the backtest needs: open, high, low, close, volume, funding_rate
(float64; the rates settled after the previous candle's open up to this bar's open, 0 where none)
and funding_cumulative (its running sum over every candle, dropped rows included). Index:
`timestamp` (UTC).
Rows dropped: the first `warmup_bars` bars of the series, and the `warmup_bars` bars from each
time gap on (a bar whose distance to the previous one exceeds the timeframe), since indicators
computed across a gap mix two separate stretches of market.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from trading_engine.data.schema import PRICE_COLUMNS

logger = logging.getLogger(__name__)

MARKET_COLUMNS = (*PRICE_COLUMNS, "volume", "funding_rate", "funding_cumulative")
SETTLEMENT_STAMP_TOLERANCE_NS = 1_000_000_000  # one second


def _as_utc_nanoseconds(index: pd.DatetimeIndex | pd.Series) -> np.ndarray:
    times = pd.DatetimeIndex(index)
    if times.tz is None:
        times = times.tz_localize("UTC")
    return times.tz_convert("UTC").as_unit("ns").asi8


def align_funding(index: pd.DatetimeIndex, funding: pd.DataFrame | None,
                  timeframe: pd.Timedelta) -> np.ndarray:
    """Per bar of `index`, the funding rates settled after the previous bar's open up to and
    including this bar's open: for the usual settlement on a bar boundary, the rate settled at
    that bar's open. A settlement inside a (long) bar, or in a gap of the candles, counts at the
    next bar's open: it is owed by the position held when it settles, which the backtest charges
    on the position held before that open. 0 where none; settlements before the first bar or after
    the last are ignored. `funding` has columns timestamp (settlement time) and funding_rate;
    `timeframe` is kept for the callers' signature."""
    rates = np.zeros(len(index))
    if funding is None or len(funding) == 0 or len(index) == 0:
        return rates
    bar_open = _as_utc_nanoseconds(index)
    times = funding["timestamp"] if "timestamp" in funding.columns else funding.index
    settled = _as_utc_nanoseconds(times)
    # The first bar that opens at or after it; exchanges stamp settlements a few milliseconds after
    # the hour (Binance: 08:00:00.003), which still belong to the bar that opens on the hour.
    due = settled - SETTLEMENT_STAMP_TOLERANCE_NS
    bar = np.searchsorted(bar_open, due, side="left")
    inside = (due >= bar_open[0] - SETTLEMENT_STAMP_TOLERANCE_NS) & (bar < len(bar_open))
    np.add.at(rates, bar[inside], funding["funding_rate"].to_numpy(dtype=np.float64)[inside])
    return rates


def rows_after_warmup(index: pd.DatetimeIndex, warmup_bars: int,
                      timeframe: pd.Timedelta) -> np.ndarray:
    """Boolean mask of the rows that keep `warmup_bars` contiguous bars behind them: False for
    the first `warmup_bars` rows and for `warmup_bars` rows from each gap on."""
    n = len(index)
    keep = np.arange(n) >= warmup_bars
    if n > 1:
        is_gap = np.zeros(n, dtype=np.int64)
        is_gap[1:] = np.diff(_as_utc_nanoseconds(index)) > timeframe.value
        gaps_so_far = np.cumsum(is_gap)
        gaps_before_window = np.zeros(n, dtype=np.int64)
        if warmup_bars < n:
            gaps_before_window[warmup_bars:] = gaps_so_far[: n - warmup_bars]
        keep &= gaps_so_far == gaps_before_window
    return keep


def build_model_input(candles: pd.DataFrame, feature_table: pd.DataFrame,
                      funding: pd.DataFrame | None, *, warmup_bars: int,
                      timeframe: pd.Timedelta) -> pd.DataFrame:
    """Join features + targets (`feature_table`, indexed like `candles`) with the market
    columns, align funding, drop warm-up rows; raise if a feature is not finite afterwards.
    Memory: the kept rows are a view of the feature table when no gap interrupts them (else one
    copy), and the checks go column by column."""
    if not feature_table.index.equals(candles.index):
        raise ValueError("the feature table and the candles must share one index")
    keep = rows_after_warmup(candles.index, warmup_bars, timeframe)
    dropped_after_gaps = int((~keep[warmup_bars:]).sum())
    if dropped_after_gaps:
        logger.warning("dropped %d rows that follow time gaps by less than %d bars",
                       dropped_after_gaps, warmup_bars)
    # Without gaps the kept rows are one slice: a view, not a copy of the whole table.
    first = int(np.argmax(keep)) if keep.any() else len(keep)
    table = feature_table.iloc[first:] if keep[first:].all() else feature_table[keep]
    keep = slice(first, None) if keep[first:].all() else keep
    for column in (*PRICE_COLUMNS, "volume"):
        table[column] = candles[column].to_numpy(dtype=np.float64)[keep]
    funding_per_bar = align_funding(candles.index, funding, timeframe)
    table["funding_rate"] = funding_per_bar[keep]
    # Over every candle, before the warm-up rows are dropped: the backtest charges a position held
    # through a gap every settlement in it (trading_engine.trading.portfolio.align_market).
    table["funding_cumulative"] = np.cumsum(funding_per_bar)[keep]
    table.index.name = "timestamp"
    features = [c for c in table.columns if str(c).startswith("feat_")]
    bad = [c for c in features if not np.isfinite(table[c].to_numpy()).all()]
    if bad:
        raise ValueError(f"non-finite feature values after the warm-up in {bad}")
    for column in table.columns[table.columns.str.startswith("target_")]:
        horizon = int(column.rsplit("_", 1)[1])
        if table[column].iloc[: max(len(table) - horizon, 0)].isna().any():
            raise ValueError(f"{column} is NaN before the last {horizon} rows: warmup_bars "
                             f"({warmup_bars}) is shorter than the targets' volatility window")
    return table
