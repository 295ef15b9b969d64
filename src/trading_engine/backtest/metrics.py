"""Performance metrics of a strategy's per-bar returns (fractions of equity)."""

from __future__ import annotations

import numpy as np
import pandas as pd

DAYS_PER_YEAR = 365  # crypto trades every day


def daily_returns(returns: pd.Series) -> pd.Series:
    """Compound per-bar returns (DatetimeIndex) into calendar-day returns (UTC days); days
    without bars are left out."""
    if returns.empty:
        return returns.astype(np.float64)
    growth = np.log1p(returns.astype(np.float64))
    days = growth.groupby(returns.index.floor("D")).sum()
    return np.expm1(days)


def sharpe_daily_annualised(returns: pd.Series) -> float:
    """Sharpe ratio of daily-compounded returns times sqrt(365), risk-free rate 0.

    0.0 when there are fewer than two days or no variation (a flat strategy has no edge).
    """
    daily = daily_returns(returns)
    if len(daily) < 2:
        return 0.0
    deviation = daily.std(ddof=1)
    if not np.isfinite(deviation) or deviation == 0:
        return 0.0
    return float(daily.mean() / deviation * np.sqrt(DAYS_PER_YEAR))
