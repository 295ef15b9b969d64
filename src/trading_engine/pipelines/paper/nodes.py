"""Nodes of the paper pipeline: the signal ledger's positions marked to market with the shared
engine and cost model, beside the backtest of the same bars by the same model; metrics and a
plot. The domain lives in trading_engine.live.paper."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from trading_engine.data.storage import SeriesStore
from trading_engine.evaluation.backtest import json_safe
from trading_engine.live import paper
from trading_engine.live.deployment import DeployedModel
from trading_engine.live.ledger import Ledger
from trading_engine.live.signals import SignalSettings
from trading_engine.live.window import rows_needed
from trading_engine.trading.metrics import performance_metrics


def mark_to_market(signal_ledger: Ledger, candle_store: SeriesStore, funding_store: SeriesStore,
                   deployed_model: DeployedModel, signals: dict[str, Any],
                   ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """-> (`paper_bars`: every ledger row traded, `paper_equity`: the deployed version's rows,
    paper and backtest equity per bar, `paper_metrics`: the backtest's metrics of both, whether
    they agree bar for bar)."""
    ledger = signal_ledger.read()
    if ledger.empty:
        raise ValueError(f"the signal ledger {signal_ledger} is empty: run the signals first "
                         "(`kedro run --pipelines signals`)")
    deployed = deployed_model
    settings = SignalSettings.from_params(signals)
    reference = deployed.features.reference_key(deployed.timeframe)
    keys = sorted(ledger["series"].unique())
    read_keys = keys + ([reference] if reference and reference not in keys else [])
    start = ledger["bar_time"].min() - (settings.lead_bars + rows_needed(deployed.seq_len, deployed.rule)) \
        * deployed.bar
    candles, funding = paper.read_stretch(candle_store, funding_store, read_keys, start, ledger["bar_time"].max(),
                                          deployed.timeframe)
    market = paper.with_funding_rates({key: candles[key] for key in keys}, funding, deployed.timeframe)
    bars = paper.paper_bars(ledger, market, deployed.costs)
    own = ledger.loc[ledger["model_version"] == deployed.version]
    comparison: dict[str, Any] = {"model_version": deployed.version, "bars": 0}
    equity = pd.DataFrame(columns=["timestamp", "paper_net_return", "backtest_net_return", "paper_equity",
                                   "backtest_equity"])
    if not own.empty:
        backtest, live = paper.backtest_of_ledger(own, candles, funding, deployed, market)
        comparison.update(paper.compare_paper_with_backtest(live, backtest))
        equity = paper.equity_table(live, backtest)
    metrics = {
        "paper": performance_metrics(bars),
        "comparison": comparison,
        "ledger": {"rows": int(len(ledger)), "series": keys, "from": ledger["bar_time"].min().isoformat(),
                   "to": ledger["bar_time"].max().isoformat(),
                   "rows_per_model_version": {str(k): int(v) for k, v in ledger["model_version"].value_counts().items()}},
        "costs": {"taker_fee": deployed.costs.taker_fee, "slippage_bps": deployed.costs.slippage_bps,
                  "charge_funding": deployed.costs.charge_funding},
    }
    return bars, equity, json_safe(metrics)


def plot_paper_vs_backtest(paper_equity: pd.DataFrame) -> Figure:
    return paper.equity_figure(paper_equity)
