"""Nodes of the training pipeline: model input in; fold models, predictions, log and summary out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from trading_engine.trading import CostModel, TradingRule
from trading_engine.training import TrainingConfig, series_of_timeframe, train_walk_forward


def train_fold_models(
    model_input: Mapping[str, Callable[[], pd.DataFrame]],
    training: dict[str, Any],
    trading: dict[str, Any],
) -> tuple[dict[str, dict[str, Any]], pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Walk-forward training on the series of `training.timeframe` (only those partitions are
    loaded). Returns the fold models ({"fold_<k>": checkpoint}), the predictions of every
    validation, test and holdout bar, the per-epoch training log and a summary with the fold layout."""
    config = TrainingConfig.from_params(training)
    frames = {key: model_input[key]() for key in series_of_timeframe(model_input, config.timeframe)}
    result = train_walk_forward(frames, config, TradingRule.from_params(trading.get("rule")),
                                CostModel.from_params(trading.get("costs")))
    return result.checkpoints(), result.predictions, result.training_log, result.summary()
