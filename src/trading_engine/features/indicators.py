"""Vectorised indicator primitives on float64 numpy arrays.

Every function is causal (the value at index t uses inputs at indices <= t only) and returns an
array of the input's length, NaN where the indicator is not yet defined (its warm-up).
Definitions follow the `ta` package (bukosabino/ta 0.11), so that tests can compare them:

- Exponential moving averages are `pandas.ewm(span, adjust=False)`: seeded with the first value.
- Wilder's smoothing (RSI, ATR, ADX) is an exponential average with alpha = 1/n, seeded with the
  simple mean of the first n values. (`ta` seeds its RSI with the first value instead; the two
  agree to within 1e-12 after a few hundred bars.)
- Recursions run through `scipy.signal.lfilter`, a compiled first-order IIR filter: exact,
  strictly sequential, hence exactly causal and truncation-invariant.
- Rolling sums, means, deviations, minima and maxima use pandas' rolling windows (compensated
  summation, exact zeros on constant windows), never differences of a long cumulative sum.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

Array = np.ndarray


# ---------------------------------------------------------------- elementary helpers
def safe_divide(numerator: Array, denominator: Array, fill: float) -> Array:
    """numerator / denominator, `fill` where the denominator is exactly 0; NaN stays NaN."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = numerator / denominator
    out[denominator == 0] = fill
    return out


def shift(x: Array, periods: int) -> Array:
    """x shifted forward by `periods` bars (value at t is x[t - periods]); NaN at the start."""
    out = np.full(x.shape[0], np.nan)
    if periods < x.shape[0]:
        out[periods:] = x[: x.shape[0] - periods]
    return out


def rolling_sum(x: Array, window: int) -> Array:
    return pd.Series(x, copy=False).rolling(window, min_periods=window).sum().to_numpy()


def rolling_mean(x: Array, window: int) -> Array:
    return pd.Series(x, copy=False).rolling(window, min_periods=window).mean().to_numpy()


def rolling_std(x: Array, window: int, ddof: int = 1) -> Array:
    return pd.Series(x, copy=False).rolling(window, min_periods=window).std(ddof=ddof).to_numpy()


def rolling_min(x: Array, window: int) -> Array:
    return pd.Series(x, copy=False).rolling(window, min_periods=window).min().to_numpy()


def rolling_max(x: Array, window: int) -> Array:
    return pd.Series(x, copy=False).rolling(window, min_periods=window).max().to_numpy()


def rolling_mean_absolute_deviation(x: Array, window: int, chunk: int = 65_536) -> tuple[Array, Array]:
    """(rolling mean, rolling mean absolute deviation around that mean), as in CCI.

    Uses a sliding-window view in chunks of rows, so memory stays O(chunk * window)."""
    n = x.shape[0]
    mean = np.full(n, np.nan)
    mad = np.full(n, np.nan)
    if n < window:
        return mean, mad
    windows = sliding_window_view(x, window)
    for start in range(0, windows.shape[0], chunk):
        block = windows[start : start + chunk]
        block_mean = block.mean(axis=1)
        mean[start + window - 1 : start + window - 1 + block.shape[0]] = block_mean
        mad[start + window - 1 : start + window - 1 + block.shape[0]] = np.abs(
            block - block_mean[:, None]
        ).mean(axis=1)
    return mean, mad


# ---------------------------------------------------------------- recursive smoothers
def _exponential_smoothing(x: Array, alpha: float, start: int, seed: float) -> Array:
    """y[start] = seed; y[t] = alpha * x[t] + (1 - alpha) * y[t-1] for t > start; NaN before."""
    n = x.shape[0]
    y = np.full(n, np.nan)
    if start >= n:
        return y
    y[start] = seed
    if start + 1 < n:
        y[start + 1 :], _ = lfilter(
            [alpha], [1.0, alpha - 1.0], x[start + 1 :], zi=[(1.0 - alpha) * seed]
        )
    return y


def ema(x: Array, span: int, start: int = 0) -> Array:
    """Exponential moving average as pandas `ewm(span, adjust=False)`, seeded with x[start].
    Defined from index start + span - 1 (like `ta`'s min_periods=span); NaN before."""
    if start >= x.shape[0]:
        return np.full(x.shape[0], np.nan)
    y = _exponential_smoothing(x, 2.0 / (span + 1.0), start, float(x[start]))
    y[: start + span - 1] = np.nan
    return y


def wilder(x: Array, window: int, start: int = 0) -> Array:
    """Wilder's smoothing (alpha = 1/window), seeded at index start + window - 1 with the mean of
    x[start : start + window]; NaN before."""
    first = start + window - 1
    if first >= x.shape[0]:
        return np.full(x.shape[0], np.nan)
    seed = float(np.mean(x[start : start + window]))
    return _exponential_smoothing(x, 1.0 / window, first, seed)


# ---------------------------------------------------------------- price indicators
def true_range(high: Array, low: Array, close: Array) -> Array:
    """max(high, previous close) - min(low, previous close); the first bar's is high - low."""
    previous_close = shift(close, 1)
    tr = np.fmax(high, previous_close) - np.fmin(low, previous_close)
    return tr


def atr(high: Array, low: Array, close: Array, window: int = 14) -> Array:
    """Average true range, Wilder-smoothed, first value at index window - 1 (as `ta`)."""
    return wilder(true_range(high, low, close), window)


def rsi(close: Array, window: int = 14) -> Array:
    """Relative strength index in [0, 100] with Wilder's smoothing; first value at index
    `window`. 50 where there was neither a gain nor a loss."""
    change = np.diff(close, prepend=np.nan)
    gain = np.maximum(change, 0.0)
    loss = np.maximum(-change, 0.0)
    average_gain = wilder(gain, window, start=1)
    average_loss = wilder(loss, window, start=1)
    return safe_divide(100.0 * average_gain, average_gain + average_loss, 50.0)


def adx(high: Array, low: Array, close: Array, window: int = 14) -> tuple[Array, Array, Array]:
    """(ADX, +DI, -DI), Wilder's definitions as in `ta`: +DI/-DI from index `window`, ADX
    (Wilder-smoothed DX seeded with the mean of the first `window` DX) from 2 * window - 1."""
    up_move = np.diff(high, prepend=np.nan)
    down_move = -np.diff(low, prepend=np.nan)
    plus_dm = np.where((up_move > down_move) & (up_move > 0), up_move, 0.0)
    minus_dm = np.where((down_move > up_move) & (down_move > 0), down_move, 0.0)
    smoothed_tr = wilder(true_range(high, low, close), window, start=1)
    plus_di = safe_divide(100.0 * wilder(plus_dm, window, start=1), smoothed_tr, 0.0)
    minus_di = safe_divide(100.0 * wilder(minus_dm, window, start=1), smoothed_tr, 0.0)
    dx = safe_divide(100.0 * np.abs(plus_di - minus_di), plus_di + minus_di, 0.0)
    return wilder(dx, window, start=window), plus_di, minus_di


def macd(close: Array, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[Array, Array, Array]:
    """(MACD line, signal line, histogram) in price units, as `ta`: EMAs seeded with the first
    close, line from index slow - 1, signal (EMA of the line seeded there) from slow + signal - 2."""
    line = ema(close, fast) - ema(close, slow)
    signal_line = ema(line, signal, start=slow - 1)
    return line, signal_line, line - signal_line


def stochastic_k(high: Array, low: Array, close: Array, window: int = 14) -> Array:
    """Stochastic %K in [0, 100]; 50 when the window's high equals its low."""
    lowest = rolling_min(low, window)
    highest = rolling_max(high, window)
    return safe_divide(100.0 * (close - lowest), highest - lowest, 50.0)


def rate_of_change(close: Array, window: int) -> Array:
    """close[t] / close[t - window] - 1, a fraction (`ta`'s ROC divided by 100)."""
    return close / shift(close, window) - 1.0


def bollinger(close: Array, window: int = 20, deviations: float = 2.0) -> tuple[Array, Array]:
    """(%B position of close in the band, width (upper - lower) / middle), population std as `ta`.
    Position 0.5 and width 0 on a constant window."""
    middle = rolling_mean(close, window)
    spread = deviations * rolling_std(close, window, ddof=0)
    position = safe_divide(close - (middle - spread), 2.0 * spread, 0.5)
    return position, 2.0 * spread / middle


def commodity_channel_index(high: Array, low: Array, close: Array, window: int = 20,
                            constant: float = 0.015) -> Array:
    """CCI: (typical - mean) / (constant * mean absolute deviation); 0 on a constant window
    (deviation below 1e-12 of the price)."""
    typical = (high + low + close) / 3.0
    mean, mad = rolling_mean_absolute_deviation(typical, window)
    mad = np.where(mad <= 1e-12 * np.abs(mean), 0.0, mad)
    return safe_divide(typical - mean, constant * mad, 0.0)


# ---------------------------------------------------------------- volume indicators
def on_balance_volume_flow(close: Array, volume: Array) -> Array:
    """Each bar's OBV increment: +volume on an up close, -volume on a down close, 0 otherwise
    (Granville's rule; `ta` counts an unchanged close as up)."""
    return np.sign(np.diff(close, prepend=np.nan)) * volume


def volume_weighted_average_price(high: Array, low: Array, close: Array, volume: Array,
                                  window: int = 20) -> Array:
    """Rolling VWAP of the typical price over `window` bars (as `ta`); the plain mean of the
    typical price where the window traded no volume."""
    typical = (high + low + close) / 3.0
    total_volume = rolling_sum(volume, window)
    vwap = safe_divide(rolling_sum(typical * volume, window), total_volume, np.nan)
    no_volume = total_volume == 0
    if no_volume.any():
        vwap[no_volume] = rolling_mean(typical, window)[no_volume]
    return vwap


def money_flow_volume(high: Array, low: Array, close: Array, volume: Array) -> Array:
    """Chaikin money-flow volume: ((close - low) - (high - close)) / (high - low) * volume,
    0 for a bar with high == low."""
    multiplier = safe_divide((close - low) - (high - close), high - low, 0.0)
    return multiplier * volume


def chaikin_money_flow(high: Array, low: Array, close: Array, volume: Array,
                       window: int = 20) -> Array:
    """CMF in [-1, 1]: the window's money-flow volume over its volume; 0 with no volume."""
    return safe_divide(rolling_sum(money_flow_volume(high, low, close, volume), window),
                       rolling_sum(volume, window), 0.0)


def money_flow_index(high: Array, low: Array, close: Array, volume: Array,
                     window: int = 14) -> Array:
    """MFI in [0, 100]: 100 * positive / (positive + negative) typical-price money flow over the
    window; 50 with no money flow. A typical-price change below 1e-12 of the price is rounding
    noise of (high + low + close) / 3, not a move, and counts as no change."""
    typical = (high + low + close) / 3.0
    change = np.diff(typical, prepend=np.nan)
    change[np.abs(change) <= 1e-12 * typical] = 0.0
    flow = typical * volume
    positive = rolling_sum(np.where(change > 0, flow, 0.0), window)
    negative = rolling_sum(np.where(change < 0, flow, 0.0), window)
    return safe_divide(100.0 * positive, positive + negative, 50.0)
