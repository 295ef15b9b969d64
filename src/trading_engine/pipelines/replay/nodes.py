"""Nodes of the replay pipeline: a stretch of the store's history replayed one bar at a time
through the signals run, against the backtest of the same bars by the deployed model. The domain
lives in trading_engine.live.replay."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from trading_engine.data.storage import SeriesStore
from trading_engine.evaluation.backtest import json_safe
from trading_engine.live.deployment import DeployedModel
from trading_engine.live.replay import ReplaySettings, parity_verdict, replay_against_backtest
from trading_engine.live.signals import SignalSettings

logger = logging.getLogger(__name__)


def replay_deployed_model(candle_store: SeriesStore, funding_store: SeriesStore,
                          model_input: Mapping[str, Callable[[], pd.DataFrame]], deployed_model: DeployedModel,
                          replay: dict[str, Any], signals: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """-> (`replay_decisions`: live and backtest, bar by bar; `replay_report`: the verdict)."""
    missing = sorted(set(deployed_model.series) - set(model_input))
    if missing:
        raise KeyError(f"model_input has no partition for {missing}: run the features pipeline")
    frames = {key: model_input[key]() for key in deployed_model.series}
    table, report = replay_against_backtest(candle_store, funding_store, frames, deployed_model,
                                            ReplaySettings.from_params(replay), SignalSettings.from_params(signals))
    return table, json_safe(report)


def check_replay_parity(replay_report: dict[str, Any]) -> None:
    """The verdict: logged when parity holds, ReplayParityError (a failed run) when it does not."""
    logger.info(parity_verdict(replay_report))
