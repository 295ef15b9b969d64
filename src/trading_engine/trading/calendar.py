"""Time units of the trading core: the crypto year (365 days, every day trades) and bar lengths."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trading_engine.data.schema import parse_series_key, timeframe_to_timedelta

DAYS_PER_YEAR = 365  # crypto trades every day
DAY = pd.Timedelta(days=1)


def bar_length(index: pd.DatetimeIndex | pd.Series) -> pd.Timedelta:
    """The median positive spacing of consecutive timestamps (1 day when there is none)."""
    values = pd.DatetimeIndex(index).as_unit("ns").asi8
    steps = np.diff(values)
    steps = steps[steps > 0]
    return pd.Timedelta(int(np.median(steps)), unit="ns") if steps.size else DAY


def series_bar_length(series: str) -> pd.Timedelta:
    """The bar length of a series, from the timeframe in its key (BTC_USDT_5m -> 5 minutes)."""
    return timeframe_to_timedelta(parse_series_key(series)[1])


def periods_per_year(bar: pd.Timedelta) -> float:
    """How many bars of this length fit in 365 days."""
    return DAYS_PER_YEAR * DAY / bar
