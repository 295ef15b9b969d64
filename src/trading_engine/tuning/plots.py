"""Plots of a study (optuna.visualization.matplotlib), drawn from its trials, so that a node needs
no storage: optimisation history, parameter importances, parallel coordinates. A study too small
for a plot (importances need two completed trials) gets a figure that says so."""

from __future__ import annotations

import warnings

import optuna
from matplotlib.figure import Figure
from optuna.importance import FanovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization import matplotlib as optuna_plots


def optimisation_history_figure(trials: list[FrozenTrial]) -> Figure:
    if not _completed(trials):
        return _message_figure("Optimisation history: no completed trial yet")
    return _draw(optuna_plots.plot_optimization_history, trials)


def parameter_importances_figure(trials: list[FrozenTrial]) -> Figure:
    """fANOVA importances (seeded); needs two completed trials whose parameters differ."""
    completed = _completed(trials)
    if len(completed) < 2 or all(trial.params == completed[0].params for trial in completed):
        return _message_figure(f"Parameter importances need at least 2 completed trials with different "
                               f"parameters; the study has {len(completed)} completed")
    return _draw(optuna_plots.plot_param_importances, trials, evaluator=FanovaImportanceEvaluator(seed=0))


def parallel_coordinate_figure(trials: list[FrozenTrial]) -> Figure:
    if not _completed(trials):
        return _message_figure("Parallel coordinates: no completed trial yet")
    figure = _draw(optuna_plots.plot_parallel_coordinate, trials)
    figure.set_size_inches(max(8.0, 1.1 * len({name for trial in trials for name in trial.params})), 6.0)
    return figure


def _completed(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [trial for trial in trials if trial.state == TrialState.COMPLETE]


def _draw(plot, trials: list[FrozenTrial], **kwargs) -> Figure:
    study = optuna.create_study(direction="maximize")  # in memory, only to hold the trials
    study.add_trials(trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = plot(study, **kwargs)
    figure = axes.figure
    figure.tight_layout()
    return figure


def _message_figure(text: str) -> Figure:
    figure = Figure(figsize=(7, 2.5))
    axes = figure.add_subplot()
    axes.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    axes.set_axis_off()
    return figure
