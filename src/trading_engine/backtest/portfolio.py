"""Trade a predictions table: the one path from model outputs to strategy returns.

Early stopping (training), the tuning objective and the evaluation all call
`strategy_returns` and `portfolio_returns`, so they share the trading rule, the cost model and
the fill timing of `rules.py`, `costs.py` and `engine.py`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from trading_engine.backtest.costs import CostModel
from trading_engine.backtest.engine import simulate
from trading_engine.backtest.rules import TradingRule, target_positions

RESULT_COLUMNS = ("held_position", "gross_return", "fee_cost", "slippage_cost", "funding_cost",
                  "net_return", "turnover")
# A segment is traded on its own: positions never carry across a purge gap or a fold boundary.
SEGMENT_KEYS = ["series", "fold", "segment"]


def strategy_returns(
    predictions: pd.DataFrame,
    market: Mapping[str, pd.DataFrame],
    rule: TradingRule,
    costs: CostModel,
) -> pd.DataFrame:
    """Per-bar results of trading `predictions` (the predictions contract of
    docs/architecture.md) on `market` (series key -> frame indexed by timestamp with `open`,
    `close` and optionally `funding_rate`, e.g. the model input).

    Each (series, fold, segment) block is a contiguous run of bars and is simulated on its own,
    flat at its start. Returns one row per prediction: timestamp, series, fold, segment and the
    engine's per-bar columns.
    """
    missing = set(SEGMENT_KEYS) - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions lack the columns {sorted(missing)}")
    blocks = []
    for (series, fold, segment), block in predictions.groupby(SEGMENT_KEYS, sort=False):
        if series not in market:
            raise KeyError(f"no market data for series {series!r}; have {sorted(market)}")
        block = block.sort_values("timestamp")
        bars = market[series].reindex(pd.DatetimeIndex(block["timestamp"]))
        if bars["open"].isna().any():
            raise ValueError(f"market data of {series!r} misses bars that have predictions")
        positions = target_positions(block["prob_down"].to_numpy(), block["prob_up"].to_numpy(),
                                     block["confidence"].to_numpy(), rule)
        funding = bars["funding_rate"].to_numpy() if "funding_rate" in bars else None
        result = simulate(positions, bars["open"].to_numpy(), bars["close"].to_numpy(), costs, funding)
        frame = pd.DataFrame({name: getattr(result, name) for name in RESULT_COLUMNS})
        frame.insert(0, "timestamp", block["timestamp"].to_numpy())
        frame.insert(1, "series", series)
        frame.insert(2, "fold", fold)
        frame.insert(3, "segment", segment)
        blocks.append(frame)
    if not blocks:
        return pd.DataFrame(columns=["timestamp", *SEGMENT_KEYS, *RESULT_COLUMNS])
    return pd.concat(blocks, ignore_index=True)


def portfolio_returns(trades: pd.DataFrame, column: str = "net_return") -> pd.Series:
    """Equal-weight portfolio of the series in `trades`: each series gets 1/N of the capital,
    rebalanced every bar; a series with no bar at a timestamp is flat there."""
    if trades.empty:
        return pd.Series(dtype=np.float64, name=column)
    per_series = trades.pivot_table(index="timestamp", columns="series", values=column, aggfunc="sum")
    n_series = per_series.shape[1]
    returns = per_series.fillna(0.0).sum(axis=1) / n_series
    returns.index = pd.DatetimeIndex(returns.index)
    return returns.rename(column)
