"""The objective of a trial: the walk-forward validation Sharpe (after costs, with the shared
trading rule; `train_walk_forward` computes it exactly as the evaluation does), aggregated over
the folds (mean by default).

What a trial may read: the tuning window only (nested walk-forward). The final run's layout is
laid out on the full model input with the largest purge any configuration of the space can have
(the longest target horizon plus the LARGEST sequence length); its tuning window is every bar
before its first test segment, one purge before it. With a smaller purge the final run's test
segments only move later, so no bar a final run calls out-of-sample, and no holdout bar, is in
the window. The model input is cut at the window's end, and the trials lay their own validation
folds inside it (`make_validation_folds`: validation segments tiling the window's end), the same
folds for every trial. The trainer predicts validation rows only. `last_bar_seen` is the last bar
any trial's inputs or labels depend on: the window's last bar plus the longest target horizon.
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

from trading_engine.data.segments import Segment
from trading_engine.trading import CostModel, TradingRule
from trading_engine.training import (
    FoldLayout,
    TrainingConfig,
    make_validation_folds,
    make_walk_forward_layout,
    resolve_device,
    train_walk_forward,
)
from trading_engine.training.trainer import common_axis, longest_horizon, series_of_timeframe
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


def cut_to_window(model_input: Mapping[str, pd.DataFrame], window: Segment) -> dict[str, pd.DataFrame]:
    """The rows up to the window's last bar: what a trial may read."""
    return {key: frame.loc[frame.index <= window.end] for key, frame in model_input.items()}


class WalkForwardObjective:
    """Callable Optuna objective: one walk-forward training per trial, one report per fold."""

    def __init__(self, model_input: Mapping[str, pd.DataFrame], training: Mapping[str, Any],
                 trading: Mapping[str, Any], space: SearchSpace, aggregate: str = "mean",
                 trial_training: Mapping[str, Any] | None = None) -> None:
        """`training` is params:training, the final run's; `trial_training` the cheaper settings
        merged over it for the trials (tuning.trial_training)."""
        if aggregate not in AGGREGATES:
            raise ValueError(f"unknown aggregate {aggregate!r}; choose one of {sorted(AGGREGATES)}")
        self.training = trial_training_params(training, trial_training)
        self.trading, self.space, self.aggregate = dict(trading), space, aggregate
        final, trial = TrainingConfig.from_params(training), TrainingConfig.from_params(self.training)
        frames = {key: model_input[key] for key in series_of_timeframe(model_input, final.timeframe)}
        longest = longest_horizon(frames, max(final.horizon, trial.horizon, space.max_value("training.horizon") or 0))
        self.purge_bars = max(longest + max(final.seq_len, trial.seq_len, space.max_value("training.seq_len") or 0),
                              final.folds.min_purge_bars, trial.folds.min_purge_bars)
        final_layout = make_walk_forward_layout(frames, dataclasses.replace(
            final, folds=dataclasses.replace(final.folds, min_purge_bars=self.purge_bars)))
        self.window = final_layout.tuning_window
        self.first_out_of_sample_bar = final_layout.folds[0].test.start
        self.holdout_start = final_layout.holdout.start if final_layout.holdout is not None else None
        self.model_input = cut_to_window(frames, self.window)
        axis = common_axis(self.model_input)
        self.folds = make_validation_folds(axis, trial.folds, self.purge_bars)
        full_axis = common_axis(frames)
        self.last_bar_seen = full_axis[min(int(full_axis.searchsorted(self.window.end)) + longest, len(full_axis) - 1)]

    @property
    def n_folds(self) -> int:
        return len(self.folds)

    def trial_config(self, values: Mapping[str, Any]) -> tuple[TrainingConfig, TradingRule, CostModel]:
        training, trading = self.space.apply(values, self.training, self.trading)
        config = TrainingConfig.from_params(training)
        return config, TradingRule.from_params(trading.get("rule")), CostModel.from_params(trading.get("costs"))

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

            layout = FoldLayout(self.folds, None, self.purge_bars)
            result = train_walk_forward(self.model_input, config, rule, costs, on_fold_end=report, layout=layout,
                                        predict_test=False)
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
