"""Nodes of the deploy pipeline: the evaluation's choice in, the configuration refitted on every
bar available, packed into one versioned artifact that the `deployed` pointer names. The domain
lives in trading_engine.live.deployment and trading_engine.training."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import pandas as pd

from trading_engine.data.schema import parse_series_key
from trading_engine.evaluation.backtest import training_horizon
from trading_engine.live.deployment import DeploySettings, build_artifact, model_card
from trading_engine.live.window import FeatureRecipe
from trading_engine.trading import CostModel, TradingRule
from trading_engine.training import TrainingConfig, refit_on_all_bars, series_of_timeframe
from trading_engine.training.trainer import common_axis

logger = logging.getLogger(__name__)
Partitions = Mapping[str, Callable[[], pd.DataFrame]]


def choose_deployment(rule_selection: dict[str, Any], backtest_metrics: dict[str, Any],
                      training_summary: dict[str, Any], trading: dict[str, Any],
                      deploy: dict[str, Any]) -> dict[str, Any]:
    """What to deploy: the training configuration (as training wrote it), the rule the
    evaluation chose for the model's last fold (the rule the holdout traded), the cost model it
    was chosen with, the number of epochs of the refit, and the evaluation's metrics."""
    settings = DeploySettings.from_params(deploy)
    folds = (rule_selection.get("strategies", {}).get("model") or {}).get("folds") or []
    if not folds:
        raise ValueError("rule_selection names no rule for the model: run the evaluation before deploying")
    chosen = folds[-1]
    rule = TradingRule.from_params(chosen["rule"])
    costs = CostModel.from_params(trading.get("costs"))
    evaluated = (backtest_metrics.get("trading_rule") or {}).get("costs")
    if evaluated is not None and evaluated != asdict(costs):
        raise ValueError(f"trading.costs {asdict(costs)} differ from the costs the evaluation chose the rule with "
                         f"({evaluated}): run the evaluation again before deploying")
    horizon = training_horizon(training_summary)
    epochs = settings.epochs or training_summary["folds"][-1]["best_epoch"]
    if rule.flat:
        logger.warning("the evaluation chose not to trade the model (no rule beat not trading on validation): the "
                       "deployed model will forecast, but hold no position")
    return {
        "training_config": training_summary["config"],
        "epochs": int(epochs),
        "horizon": horizon,
        "series": list(training_summary["series"]),
        "feature_names": list(training_summary["feature_names"]),
        "rule": asdict(rule),
        "costs": asdict(costs),
        "evaluation": {"rule_selection": {key: chosen.get(key) for key in ("fold", "changes", "validation_score")},
                       "selection_metric": rule_selection.get("metric"),
                       "portfolio": backtest_metrics.get("portfolio", {}),
                       "trials": backtest_metrics.get("trials", {})},
    }


def refit_deployed_model(model_input: Partitions, deployment_choice: dict[str, Any]) -> dict[str, Any]:
    """The chosen configuration trained on every bar of the model input, purged at the end, for
    the chosen number of epochs; its checkpoint and the data range it saw."""
    config = TrainingConfig.from_params(deployment_choice["training_config"])
    keys = series_of_timeframe(model_input, config.timeframe)
    if keys != sorted(deployment_choice["series"]):
        raise ValueError(f"the model input holds the series {keys}, training used {deployment_choice['series']}: "
                         "run the training and the evaluation again before deploying")
    frames = {key: model_input[key]() for key in keys}
    result = refit_on_all_bars(frames, config, deployment_choice["epochs"])
    if result.model.feature_names != deployment_choice["feature_names"]:
        raise ValueError("the model input's features differ from the ones training used: run the training and the "
                         "evaluation again before deploying")
    axis = common_axis(frames)
    data_range = {"model_input": {"start": axis[0].isoformat(), "end": axis[-1].isoformat(), "bars": len(axis)},
                  "train": result.fold.train.to_dict(), "purged": result.fold.test.to_dict()}
    checkpoint = result.model.to_checkpoint(training_config=config.to_dict(), epochs=int(result.epochs_run))
    return {"checkpoint": checkpoint, "data_range": data_range}


def package_deployed_model(deployed_weights: dict[str, Any], deployment_choice: dict[str, Any],
                           features: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The artifact (`deployed_model`, which points `deployed` at its version) and its card
    (`deployed_model_card`: everything but the weights, for people)."""
    series = deployment_choice["series"]
    artifact = build_artifact(
        deployed_weights["checkpoint"], series=series, timeframe=parse_series_key(series[0])[1],
        horizon=deployment_choice["horizon"], rule=TradingRule.from_params(deployment_choice["rule"]),
        costs=CostModel.from_params(deployment_choice["costs"]),
        features=FeatureRecipe.of_trained_features(features, deployment_choice["feature_names"]),
        data_range=deployed_weights["data_range"], evaluation=deployment_choice["evaluation"],
        training={"config": deployment_choice["training_config"], "epochs": deployment_choice["epochs"]})
    logger.info("deploying %s on %s: %s; trained on %s -> %s", artifact["model"]["model_name"], ", ".join(series),
                artifact["rule_description"], deployed_weights["data_range"]["train"]["start"],
                deployed_weights["data_range"]["train"]["end"])
    return artifact, model_card(artifact)
