"""Paper trading: the ledger's positions marked to market on the candles that came after each
decision, by the backtest's own engine and cost model, beside the backtest of the same bars.

* `paper_bars`: every ledger row, in contiguous blocks per series, traded as the evaluation
  trades a predictions table (`align_market` + `trade_positions`): the target decided at a bar's
  close is filled at the next open, positions are held in contracts, fees, slippage and funding
  are charged; a bar the ledger missed ends a block.
* `backtest_of_ledger`: the backtest of the rows of one model version: its forecasts computed
  in one pass over the stretch (the lead before it included, so that the features equal the
  whole history's), traded by the shared rule from flat at each block's first bar, on the same
  aligned bars. When the live path equals the backtest, the two equities are equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from trading_engine.data.schema import timeframe_to_timedelta
from trading_engine.data.storage import SeriesStore
from trading_engine.features.model_input import align_funding
from trading_engine.live.deployment import DeployedModel
from trading_engine.live.signals import window_candles, window_funding
from trading_engine.live.window import rows_needed
from trading_engine.trading.costs import CostModel
from trading_engine.trading.metrics import equity_curve, performance_metrics
from trading_engine.trading.portfolio import (
    align_market,
    model_forecast,
    portfolio_returns,
    rule_positions,
    trade_positions,
)

LEDGER_ROW_COLUMNS = ("model_version", "target_position")


def read_stretch(store: SeriesStore, funding_store: SeriesStore | None, keys: list[str], start: pd.Timestamp,
                 end: pd.Timestamp, timeframe: str) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame | None]]:
    """The candles of `keys` in [start, end] (validated, indexed by timestamp) and their funding
    settlements (None for a series without any)."""
    candles, funding = {}, {}
    for key in keys:
        candles[key] = window_candles(store, key, start, end + pd.Timedelta(1, "ns"), timeframe)
        funding[key] = window_funding(funding_store, key, start)
    return candles, funding


def with_funding_rates(candles: Mapping[str, pd.DataFrame], funding: Mapping[str, pd.DataFrame | None],
                       timeframe: str) -> dict[str, pd.DataFrame]:
    """The market frames the engine trades on: the candles with `funding_rate` per bar (the
    settlements after the previous open up to this open, as the model input has it)."""
    return {key: frame.assign(funding_rate=align_funding(frame.index, funding.get(key),
                                                         timeframe_to_timedelta(timeframe)))
            for key, frame in candles.items()}


def _as_predictions(ledger: pd.DataFrame, segment: str) -> pd.DataFrame:
    return ledger.rename(columns={"bar_time": "timestamp"}).assign(fold=0, segment=segment)


def paper_bars(ledger: pd.DataFrame, market: Mapping[str, pd.DataFrame], costs: CostModel) -> pd.DataFrame:
    """The per-bar results of trading the ledger's target positions (engine columns), with the
    row's model version and target position."""
    aligned = align_market(_as_predictions(ledger, "paper"), market)
    bars = trade_positions(aligned, aligned["target_position"].to_numpy(dtype=np.float64), costs)
    for name in LEDGER_ROW_COLUMNS:
        bars[name] = aligned[name].to_numpy()
    return bars


def backtest_of_ledger(ledger: pd.DataFrame, candles: Mapping[str, pd.DataFrame],
                       funding: Mapping[str, pd.DataFrame | None], deployed: DeployedModel,
                       market: Mapping[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The backtest of `ledger`'s rows (one model version): the model's forecasts from the
    features of the whole stretch, the shared rule from flat at each block's first bar, traded
    on the same bars as `paper_bars`. -> (per-bar backtest results, the ledger's own results on
    the same aligned bars)."""
    first_row = ledger["bar_time"].min() - (rows_needed(deployed.seq_len, deployed.rule) - 1) * deployed.bar
    frames = deployed.features.model_input(sorted(ledger["series"].unique()), candles, funding, deployed.timeframe,
                                           first_row=first_row)
    forecasts = deployed.model.predict(frames)
    rows = _as_predictions(ledger, "backtest").merge(
        forecasts[["series", "timestamp", "pred_return", "confidence"]].rename(
            columns={"pred_return": "backtest_expected_return", "confidence": "backtest_confidence"}),
        on=["series", "timestamp"], how="left", validate="one_to_one")
    if rows["backtest_expected_return"].isna().any():
        missing = rows.loc[rows["backtest_expected_return"].isna(), ["series", "timestamp"]].head(3)
        raise ValueError(f"the backtest has no forecast for ledger bars {missing.to_dict('records')}")
    aligned = align_market(rows, market)
    aligned["pred_return"] = aligned["backtest_expected_return"]
    aligned["confidence"] = aligned["backtest_confidence"]
    expected_return, confidence = model_forecast(aligned)
    positions = rule_positions(aligned, expected_return, deployed.rule, deployed.costs, deployed.horizon, confidence,
                               frames)
    backtest = trade_positions(aligned, positions, deployed.costs).assign(target_position=positions)
    live = trade_positions(aligned, aligned["target_position"].to_numpy(dtype=np.float64), deployed.costs).assign(
        target_position=aligned["target_position"].to_numpy())
    return backtest, live


def equity_table(paper: pd.DataFrame, backtest: pd.DataFrame) -> pd.DataFrame:
    """Per bar: the equal-weight portfolio's net return and equity, paper and backtest."""
    paper_returns = portfolio_returns(paper)
    backtest_returns = portfolio_returns(backtest).reindex(paper_returns.index)
    return pd.DataFrame({"timestamp": paper_returns.index,
                         "paper_net_return": paper_returns.to_numpy(),
                         "backtest_net_return": backtest_returns.to_numpy(),
                         "paper_equity": equity_curve(paper_returns.to_numpy()),
                         "backtest_equity": equity_curve(backtest_returns.to_numpy())})


def compare_paper_with_backtest(live: pd.DataFrame, backtest: pd.DataFrame) -> dict[str, Any]:
    """Bar by bar: the positions and the equity of the ledger's rows and of their backtest."""
    equal = live["target_position"].to_numpy() == backtest["target_position"].to_numpy()
    equity = equity_table(live, backtest)
    difference = np.abs(equity["paper_equity"] - equity["backtest_equity"]).to_numpy()
    return {"bars": int(len(live)), "positions_equal": bool(equal.all()), "bars_differing": int((~equal).sum()),
            "max_equity_difference": float(difference.max()) if difference.size else 0.0,
            "paper": performance_metrics(live), "backtest": performance_metrics(backtest)}


def equity_figure(equity: pd.DataFrame) -> Figure:
    """Paper against backtest: the equity (start 1) of the deployed version's ledger rows and of
    their backtest, bar by bar, and their difference."""
    figure = Figure(figsize=(10, 6), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    figure.suptitle("Paper trading against the backtest of the same bars (equal-weight portfolio, after costs)")
    if equity.empty:
        top.text(0.5, 0.5, "no ledger row of the deployed model", ha="center", va="center", transform=top.transAxes)
        return figure
    times = pd.DatetimeIndex(equity["timestamp"])
    top.plot(times, equity["backtest_equity"], label="backtest", linewidth=2.5, alpha=0.5)
    top.plot(times, equity["paper_equity"], label="paper (ledger)", linewidth=1.0, linestyle="--")
    top.set_ylabel("equity")
    top.legend(loc="best")
    bottom.plot(times, equity["paper_equity"] - equity["backtest_equity"], linewidth=1.0)
    bottom.set_ylabel("paper - backtest")
    return figure
