"""Nodes of the training pipeline: model input in; the fold layout, the fold models and their
predictions, the holdout's refitted model and its predictions, the log and a summary out. The
domain lives in trading_engine.training."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from trading_engine.trading import CostModel, TradingRule
from trading_engine.training import (
    FoldLayout,
    TrainingConfig,
    make_walk_forward_layout,
    refit_for_holdout,
    series_of_timeframe,
    train_walk_forward,
)

Partitions = Mapping[str, Callable[[], pd.DataFrame]]


def _frames(model_input: Partitions, config: TrainingConfig) -> dict[str, pd.DataFrame]:
    """Only the partitions of the training timeframe are loaded."""
    return {key: model_input[key]() for key in series_of_timeframe(model_input, config.timeframe)}


def lay_out_folds(model_input: Partitions, training: dict[str, Any]) -> dict[str, Any]:
    """The purged walk-forward folds, the holdout, the holdout's refit and the tuning window on
    the common time axis of the training timeframe's series."""
    config = TrainingConfig.from_params(training)
    return make_walk_forward_layout(_frames(model_input, config), config).to_dict()


def train_fold_models(
    model_input: Partitions,
    fold_layout: dict[str, Any],
    training: dict[str, Any],
    trading: dict[str, Any],
) -> tuple[dict[str, dict[str, Any]], pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """One model per fold, early-stopped on its validation Sharpe. Returns the fold models
    ({"fold_<k>": checkpoint}), the predictions of every validation and test bar, the per-epoch
    training log and a summary (the fold layout, best epochs, features, config)."""
    config = TrainingConfig.from_params(training)
    result = train_walk_forward(_frames(model_input, config), config, TradingRule.from_params(trading.get("rule")),
                                CostModel.from_params(trading.get("costs")), layout=FoldLayout.from_dict(fold_layout))
    return result.checkpoints(), result.predictions, result.training_log, result.summary()


def last_fold_epochs(fold_models: Partitions) -> int:
    """The number of epochs early stopping chose on the last fold (its checkpoint says it)."""
    last = max(fold_models, key=lambda name: int(name.rsplit("_", 1)[1]))
    return int(fold_models[last]()["best_epoch"])


def refit_holdout_model(model_input: Partitions, fold_layout: dict[str, Any], fold_models: Partitions,
                        training: dict[str, Any]) -> tuple[dict[str, Any], pd.DataFrame]:
    """The holdout's model: the configuration refitted on every bar before the holdout (purged),
    for the number of epochs early stopping chose on the last fold; and its holdout predictions."""
    config = TrainingConfig.from_params(training)
    layout = FoldLayout.from_dict(fold_layout)
    epochs = last_fold_epochs(fold_models)
    result = refit_for_holdout(_frames(model_input, config), config, layout, epochs)
    checkpoint = result.model.to_checkpoint(training_config=config.to_dict(),
                                            fold_layout=layout.holdout_refit.to_dict(),
                                            purge_bars=layout.purge_bars, epochs=int(result.epochs_run))
    return checkpoint, result.predictions


def combine_predictions(fold_predictions: pd.DataFrame, holdout_predictions: pd.DataFrame) -> pd.DataFrame:
    """Every prediction the evaluation reads: the folds' validation and test bars and the holdout."""
    return pd.concat([fold_predictions, holdout_predictions], ignore_index=True)
