"""Nodes of the signals pipeline: the store brought up to date over REST, the deployed model and
the shared rule applied to the trailing window, one ledger row per series for the last closed
bar. The domain lives in trading_engine.live.signals."""

from __future__ import annotations

from typing import Any

from trading_engine.data.storage import SeriesStore
from trading_engine.live.deployment import DeployedModel
from trading_engine.live.ledger import Ledger
from trading_engine.live.signals import ExchangeFeed, SignalSettings, run_signals


def generate_signals(candle_store: SeriesStore, funding_store: SeriesStore, deployed_model: DeployedModel,
                     signal_ledger: Ledger, signals: dict[str, Any], ingestion: dict[str, Any]) -> dict[str, Any]:
    """One signals run against the exchange of `params:ingestion` (its REST API, whatever the
    ingestion's source); refuses, writing nothing, on a stale feed, a gap in the model's window
    or features that differ from the deployed model's. -> the run's report."""
    settings = SignalSettings.from_params(signals)
    feed = ExchangeFeed.from_params(ingestion, funding=settings.sync_funding or deployed_model.features.funding)
    return run_signals(feed, candle_store, funding_store, deployed_model, signal_ledger, settings)
