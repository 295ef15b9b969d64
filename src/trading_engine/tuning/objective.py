"""The objective of a trial: the walk-forward validation Sharpe (after costs, with the shared
trading rule; `train_walk_forward` computes it exactly as the evaluation does), aggregated over
the folds (mean by default).

What a trial may read. The folds are laid out once on the full model input, with the purge fixed
at the longest target horizon plus the LARGEST sequence length the space can draw, so that every
trial validates on the same bars. The model input is then cut after the last fold's test segment:
the final holdout (and the purge before it) are not in the data a trial gets, and the trainer is
asked to predict neither the holdout nor the folds' test rows: a trial reads validation Sharpes
only. (As in the training pipeline,
a later fold trains on the bars of the earlier folds' test segments: walk-forward reuses them.)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
import pandas as pd
import torch

from trading_engine.trading import CostModel, TradingRule
from trading_engine.training import (
    Fold,
    TrainingConfig,
    make_walk_forward_layout,
    resolve_device,
    train_walk_forward,
)
from trading_engine.training.trainer import longest_horizon, series_of_timeframe
from trading_engine.tuning.space import SearchSpace
from trading_engine.tuning.storage import FAIL_REASON, worker_identity

AGGREGATES = {"mean": np.mean, "median": np.median, "min": np.min}
# Training keys a trial may not change: the cut of the data depends on them.
PROTECTED_TRIAL_KEYS = ("timeframe",)


def trial_training_params(training: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """`params:training` with `tuning.trial_training` merged in (the cheaper settings of a trial:
    epochs, patience, samples per epoch, folds). The holdout and the timeframe cannot change."""
    overrides = dict(overrides or {})
    for key in PROTECTED_TRIAL_KEYS:
        if key in overrides and overrides[key] != training.get(key):
            raise ValueError(f"tuning.trial_training cannot change training.{key}")
    folds = dict(overrides.get("folds") or {})
    if "holdout_fraction" in folds and folds["holdout_fraction"] != (training.get("folds") or {}).get("holdout_fraction"):
        raise ValueError("tuning.trial_training cannot change training.folds.holdout_fraction: "
                         "the holdout is the evaluation's")
    return _deep_merge(training, overrides)


def cut_before_holdout(model_input: Mapping[str, pd.DataFrame], folds: list[Fold]) -> dict[str, pd.DataFrame]:
    """The rows up to the last bar of the last fold's test segment: what a trial may read."""
    last_bar = folds[-1].test.end
    return {key: frame.loc[frame.index <= last_bar] for key, frame in model_input.items()}


class WalkForwardObjective:
    """Callable Optuna objective: one walk-forward training per trial, one report per fold."""

    def __init__(self, model_input: Mapping[str, pd.DataFrame], training: Mapping[str, Any],
                 trading: Mapping[str, Any], space: SearchSpace, aggregate: str = "mean") -> None:
        if aggregate not in AGGREGATES:
            raise ValueError(f"unknown aggregate {aggregate!r}; choose one of {sorted(AGGREGATES)}")
        self.training, self.trading, self.space, self.aggregate = dict(training), dict(trading), space, aggregate
        config = TrainingConfig.from_params(self.training)
        frames = {key: model_input[key] for key in series_of_timeframe(model_input, config.timeframe)}
        self.purge_bars = max(
            longest_horizon(frames, max(config.horizon, space.max_value("training.horizon") or 0))
            + max(config.seq_len, space.max_value("training.seq_len") or 0),
            config.folds.min_purge_bars)
        layout_config = dataclasses.replace(
            config, folds=dataclasses.replace(config.folds, min_purge_bars=self.purge_bars))
        layout = make_walk_forward_layout(frames, layout_config)
        self.folds = layout.folds
        self.holdout_start = layout.holdout.start if layout.holdout is not None else None
        self.model_input = cut_before_holdout(frames, self.folds)

    @property
    def n_folds(self) -> int:
        return len(self.folds)

    def trial_config(self, values: Mapping[str, Any]) -> tuple[TrainingConfig, TradingRule, CostModel]:
        training, trading = self.space.apply(values, self.training, self.trading)
        config = TrainingConfig.from_params(training)
        # The folds are given explicitly; the trainer's own layout of the cut input needs no holdout.
        folds = dataclasses.replace(config.folds, holdout_fraction=0.0, min_purge_bars=self.purge_bars)
        return (dataclasses.replace(config, folds=folds), TradingRule.from_params(trading.get("rule")),
                CostModel.from_params(trading.get("costs")))

    def __call__(self, trial: optuna.Trial) -> float:
        for key, value in worker_identity().items():
            trial.set_user_attr(key, value)
        try:
            config, rule, costs = self.trial_config(self.space.sample(trial))
            trial.set_user_attr("device", str(resolve_device(config.device)))

            def report(fold_index: int, validation_sharpe: float) -> None:
                if not math.isfinite(validation_sharpe):
                    raise FloatingPointError(f"fold {fold_index}: validation Sharpe is {validation_sharpe}")
                trial.report(validation_sharpe, step=fold_index)
                # After the last fold there is nothing left to save: the trial completes.
                if fold_index != self.folds[-1].index and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after fold {fold_index} (Sharpe {validation_sharpe:.3f})")

            result = train_walk_forward(self.model_input, config, rule, costs, on_fold_end=report,
                                        folds=self.folds, predict_holdout=False, predict_test=False)
            losses = result.training_log[["train_loss", "validation_loss"]].to_numpy()
            if not np.isfinite(losses).all():
                bad = result.training_log.loc[~np.isfinite(losses).all(axis=1), ["fold", "epoch"]]
                raise FloatingPointError(f"non-finite loss (diverged) in fold/epoch {bad.to_numpy().tolist()}")
            return float(AGGREGATES[self.aggregate](result.validation_sharpes))
        except optuna.TrialPruned:
            raise
        except Exception as error:  # recorded, then re-raised: the study marks the trial FAIL and goes on
            trial.set_user_attr(FAIL_REASON, f"{type(error).__name__}: {error}"[:2000])
            if isinstance(error, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
            raise


def _deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
