"""Prediction targets of one candle series, for several horizons (in bars).

For a horizon h and the bar t (decided at t's close):
- target_ret_h = log(close[t+h] / close[t]);
- target_binary_h = 1 if target_ret_h > 0 else 0;
- target_dir_h = +1 / -1 when |target_ret_h| exceeds the dead zone, 0 inside it, with the dead
  zone max(dead_zone_k * sigma_t * sqrt(h), min_threshold), where sigma_t is the standard
  deviation of the last `volatility_window` one-bar log returns (known at t's close).
The last h rows have no future close: all three targets are NaN there, never a made-up value.
target_dir_h is also NaN while sigma_t is undefined (the first `volatility_window` bars).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from trading_engine.features import indicators as ind

DEFAULT_HORIZONS = (5, 15, 30, 60)


def target_columns(horizons: Iterable[int]) -> list[str]:
    return [f"target_{kind}_{h}" for h in horizons for kind in ("dir", "ret", "binary")]


def compute_targets(candles: pd.DataFrame, horizons: Iterable[int] = DEFAULT_HORIZONS, *,
                    dead_zone_k: float = 0.35, volatility_window: int = 100,
                    min_threshold: float = 0.0) -> pd.DataFrame:
    """target_dir_h, target_ret_h, target_binary_h (float64) for every horizon h, on the
    candles' index. See the module docstring for the dead-zone rule."""
    horizons = [int(h) for h in horizons]
    if not horizons or min(horizons) < 1:
        raise ValueError(f"horizons must be positive bar counts, got {horizons}")
    if dead_zone_k < 0 or min_threshold < 0 or volatility_window < 2:
        raise ValueError("dead_zone_k and min_threshold must be >= 0, volatility_window >= 2")
    close = candles["close"].to_numpy(dtype=np.float64)
    n = close.shape[0]
    sigma = ind.rolling_std(np.diff(np.log(close), prepend=np.nan), volatility_window)

    names = target_columns(horizons)
    values = np.empty((n, len(names)), dtype=np.float64, order="F")  # filled in place, no copy
    for i, h in enumerate(horizons):
        direction, future_return, binary = values[:, 3 * i], values[:, 3 * i + 1], values[:, 3 * i + 2]
        future_return[:] = np.nan
        if h < n:
            np.log(close[h:] / close[: n - h], out=future_return[: n - h])
        threshold = np.maximum(dead_zone_k * sigma * np.sqrt(h), min_threshold)
        with np.errstate(invalid="ignore"):
            direction[:] = np.where(np.abs(future_return) > threshold, np.sign(future_return), 0.0)
            binary[:] = future_return > 0
        unknown = np.isnan(future_return)
        direction[unknown | np.isnan(threshold)] = np.nan
        binary[unknown] = np.nan
    return pd.DataFrame(values, index=candles.index, columns=names, copy=False)
