"""Nodes of the tuning pipeline: model input in; the study's trials table, the tuned parameters,
a summary and plots out. The domain lives in trading_engine.tuning."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial

from trading_engine.training import TrainingConfig, series_of_timeframe
from trading_engine.tuning import (
    WINDOW_ATTRIBUTES,
    SearchSpace,
    TuningSettings,
    WalkForwardObjective,
    best_trial,
    fail_orphaned_trials,
    kedro_params_overrides,
    open_storage,
    open_study,
    plots,
    record_tuning_window,
    redact,
    run_study,
    study_summary,
    trial_training_params,
    trials_table,
    tuned_parameters,
    warn_if_losing,
)

logger = logging.getLogger(__name__)


def run_tuning_study(model_input: Mapping[str, Callable[[], pd.DataFrame]], training: dict[str, Any],
                     trading: dict[str, Any], tuning: dict[str, Any]) -> tuple[list[FrozenTrial], dict[str, Any]]:
    """Validate the search space, then add trials to the study `tuning.study_name` in
    `tuning.storage` until it holds `tuning.n_trials`. Trials read the tuning window only: the
    bars before the final run's out-of-sample period. Returns every trial of the study (this
    worker's and the others') and a summary."""
    settings = TuningSettings.from_params(tuning)
    base = trial_training_params(training, settings.trial_training)
    space = SearchSpace.from_params(settings.search_space, base, trading)  # fails before any data is read
    timeframe = TrainingConfig.from_params(base).timeframe
    frames = {key: model_input[key]() for key in series_of_timeframe(model_input, timeframe)}
    objective = WalkForwardObjective(frames, training, trading, space, settings.aggregate, settings.trial_training)
    logger.info("tuning %d parameters on %d folds inside the tuning window %s .. %s; trials read bars up to %s, "
                "the out-of-sample period starts at %s", len(space.parameters), objective.n_folds,
                objective.window.start, objective.window.end, objective.last_bar_seen,
                objective.first_out_of_sample_bar)
    storage = open_storage(settings.storage, settings.heartbeat_interval_s, settings.grace_period_s)
    study = open_study(settings, storage, objective.n_folds)
    record_tuning_window(study, objective)
    fail_orphaned_trials(study)
    added = run_study(study, objective, settings.n_trials, settings.timeout_s)
    trials = study.get_trials()
    logger.info("study %r in %s: this run added %d trials; %d in all", settings.study_name,
                redact(settings.storage), added, len(trials))
    summary = study_summary(settings.study_name, redact(settings.storage), trials, settings.n_trials,
                            objective.n_folds)
    summary.update({key: study.user_attrs.get(key) for key in WINDOW_ATTRIBUTES})
    warn_if_losing(summary)
    return trials, summary


def tabulate_trials(trials: list[FrozenTrial]) -> pd.DataFrame:
    return trials_table(trials)


def select_tuned_parameters(trials: list[FrozenTrial]) -> tuple[dict[str, Any], str]:
    """The best completed trial's values: as parameter-file YAML ({training: ..., trading: {rule:
    ...}}) and as `kedro run --params` text."""
    best = best_trial(trials)
    logger.info("best trial %d: mean validation Sharpe %.3f", best.number, best.value)
    if best.value <= 0:
        logger.warning("the best trial loses money on validation after costs (Sharpe %.3f): these parameters are "
                       "the least bad of the study, not a configuration with an edge", best.value)
    return tuned_parameters(best), kedro_params_overrides(best)


def plot_optimisation_history(trials: list[FrozenTrial]) -> Figure:
    return plots.optimisation_history_figure(trials)


def plot_parameter_importances(trials: list[FrozenTrial]) -> Figure:
    return plots.parameter_importances_figure(trials)


def plot_parallel_coordinate(trials: list[FrozenTrial]) -> Figure:
    return plots.parallel_coordinate_figure(trials)
