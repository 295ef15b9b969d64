"""The study: settings, sampler, pruner, the (resumable) run, and what is read back from it.

`n_trials` is the study's TOTAL target, not this run's: a run counts the trials already finished
(complete, pruned or failed) or running in the storage and only adds the missing ones, so a killed
run started again continues where it stopped, and N workers given the same `n_trials` share it
(a race can add at most one trial per extra worker).

Sampling is TPE with a seed. Its random draws are reseeded before each trial from (seed, trial
number): one worker reproduces a study exactly, and workers that share a storage and a seed still
draw different parameters (their trial numbers differ), instead of repeating each other's trials.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.samplers import TPESampler
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

from trading_engine.params import known_params
from trading_engine.tuning.storage import FAIL_REASON, WORKER_HOST, WORKER_PID

logger = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# Study attributes that say which bars the trials read (the evaluation reads them back).
WINDOW_ATTRIBUTES = ("tuning_window_start", "tuning_window_end", "last_bar_seen", "first_out_of_sample_bar")
PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class PrunerSettings:
    type: str = "median"  # median | hyperband | none
    n_startup_trials: int = 2  # median: trials that complete before any pruning
    n_warmup_steps: int = 0  # median: folds of a trial that are never pruned
    reduction_factor: int = 3  # hyperband

    def __post_init__(self) -> None:
        if self.type not in PRUNERS:
            raise ValueError(f"unknown pruner {self.type!r}; choose one of {PRUNERS}")

    def build(self, n_folds: int) -> optuna.pruners.BasePruner:
        """The pruner; a trial's steps are its folds (0 .. n_folds - 1)."""
        if self.type == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=self.n_startup_trials,
                                               n_warmup_steps=self.n_warmup_steps)
        if self.type == "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=n_folds,
                                                  reduction_factor=self.reduction_factor)
        return optuna.pruners.NopPruner()


@dataclass(frozen=True)
class TuningSettings:
    study_name: str
    storage: str
    n_trials: int = 8
    timeout_s: float | None = None
    seed: int | None = 42
    n_startup_trials: int = 4  # TPE: random trials before the model of good and bad trials
    aggregate: str = "mean"  # of the folds' validation Sharpes: mean | median | min
    pruner: PrunerSettings = field(default_factory=PrunerSettings)
    heartbeat_interval_s: int | None = 60  # database storages only
    grace_period_s: int | None = 180
    trial_training: dict[str, Any] = field(default_factory=dict)
    search_space: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.study_name:
            raise ValueError("tuning.study_name is empty")
        if self.n_trials < 1:
            raise ValueError(f"tuning.n_trials must be >= 1, got {self.n_trials}")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"tuning.timeout_s must be > 0 or null, got {self.timeout_s}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TuningSettings:
        params = known_params(params, cls, "tuning parameters")
        params["pruner"] = PrunerSettings(**dict(params.get("pruner") or {}))
        for name in ("trial_training", "search_space"):
            params[name] = dict(params.get(name) or {})
        if params.get("timeout_s") is not None:
            params["timeout_s"] = float(params["timeout_s"])
        return cls(**params)


class TrialSeededTPESampler(TPESampler):
    """TPE whose random state is reseeded from (seed, trial number) before each trial."""

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(seed=seed, **kwargs)
        self._base_seed = seed

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().before_trial(study, trial)
        if self._base_seed is not None:
            seed = int(np.random.SeedSequence([self._base_seed, trial.number]).generate_state(1)[0])
            # Optuna exposes reseed_rng() without a seed only; these are the two generators it reseeds.
            self._rng.rng.seed(seed)
            self._random_sampler._rng.rng.seed(seed)


def open_study(settings: TuningSettings, storage: optuna.storages.BaseStorage, n_folds: int) -> optuna.Study:
    """Create the study, or load it when it exists (a resumed run, another worker)."""
    sampler = TrialSeededTPESampler(seed=settings.seed, n_startup_trials=settings.n_startup_trials)
    return optuna.create_study(study_name=settings.study_name, storage=storage, sampler=sampler,
                               pruner=settings.pruner.build(n_folds), direction="maximize", load_if_exists=True)


def record_tuning_window(study: optuna.Study, objective: Any) -> None:
    """Store on the study which bars its trials read. A study resumed on other data keeps the
    latest `last_bar_seen` of all its runs, and says so."""
    values = {"tuning_window_start": objective.window.start.isoformat(),
              "tuning_window_end": objective.window.end.isoformat(),
              "last_bar_seen": objective.last_bar_seen.isoformat(),
              "first_out_of_sample_bar": objective.first_out_of_sample_bar.isoformat()}
    earlier = study.user_attrs.get("last_bar_seen")
    if earlier is not None and earlier != values["last_bar_seen"]:
        logger.warning("study %r was run before on a window that ended at %s; this run's ends at %s: its trials "
                       "read bars up to the later of the two", study.study_name, earlier, values["last_bar_seen"])
        values["last_bar_seen"] = max(earlier, values["last_bar_seen"], key=pd.Timestamp)
    for key, value in values.items():
        study.set_user_attr(key, value)


def warn_if_losing(summary: dict[str, Any]) -> None:
    """Say it when the best trial loses money on validation: its parameters are then the least
    bad ones, not an edge (also written in the summary as `best_trial_loses`)."""
    best = summary.get("best_trial")
    summary["best_trial_loses"] = bool(best is not None and best["value"] <= 0)
    if summary["best_trial_loses"]:
        summary["warning"] = ("the best trial's mean validation Sharpe after costs is <= 0: no configuration tried "
                              "earns money on validation; the tuned parameters are the least bad, not an edge")
        logger.warning(summary["warning"])


def run_study(study: optuna.Study, objective: Any, n_trials: int, timeout_s: float | None = None) -> int:
    """Add trials until the study holds `n_trials` finished or running ones (or `timeout_s` has
    passed); failed trials are recorded and the study goes on. Returns the trials this run added."""
    counted = (*FINISHED, TrialState.RUNNING)
    before = len(study.get_trials(deepcopy=False, states=counted))
    missing = max(n_trials - before, 0)
    logger.info("study %r holds %d trials; target %d: running %d more", study.study_name, before, n_trials, missing)
    if missing:
        study.optimize(objective, n_trials=missing, timeout=timeout_s, catch=(Exception,), gc_after_trial=True,
                       callbacks=[MaxTrialsCallback(n_trials, states=counted)])
    return len(study.get_trials(deepcopy=False, states=counted)) - before


def trials_table(trials: list[FrozenTrial]) -> pd.DataFrame:
    """One row per trial: number, state, value (of completed trials), seconds, folds evaluated,
    per-fold validation Sharpes (NaN where a fold was not run), the parameters (`param:<name>`),
    worker, fail reason."""
    n_folds = max((max(trial.intermediate_values, default=-1) + 1 for trial in trials), default=0)
    names = sorted({name for trial in trials for name in trial.params})
    rows = []
    for trial in sorted(trials, key=lambda trial: trial.number):
        host, pid = trial.user_attrs.get(WORKER_HOST), trial.user_attrs.get(WORKER_PID)
        rows.append({
            "number": trial.number, "state": trial.state.name,
            "value": trial.value if trial.state == TrialState.COMPLETE else np.nan,  # the objective
            "duration_s": np.nan if trial.duration is None else trial.duration.total_seconds(),
            "folds_evaluated": len(trial.intermediate_values),
            **{f"fold_{k}_validation_sharpe": trial.intermediate_values.get(k, np.nan) for k in range(n_folds)},
            **{f"param:{name}": trial.params.get(name) for name in names},
            "worker": f"{host}:{pid}" if host else None,
            "fail_reason": trial.user_attrs.get(FAIL_REASON),
        })
    columns = ["number", "state", "value", "duration_s", "folds_evaluated",
               *(f"fold_{k}_validation_sharpe" for k in range(n_folds)), *(f"param:{name}" for name in names),
               "worker", "fail_reason"]
    return pd.DataFrame(rows, columns=columns)


def best_trial(trials: list[FrozenTrial]) -> FrozenTrial:
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE and trial.value is not None]
    if not complete:
        raise ValueError("the study has no completed trial: nothing to take parameters from "
                         "(see the trials table's fail_reason)")
    return max(complete, key=lambda trial: (trial.value, -trial.number))


def tuned_parameters(trial: FrozenTrial) -> dict[str, Any]:
    """The best trial's values, shaped like the parameter files ({"training": {...}, "trading":
    {"rule": {...}}}): only the searched keys, to be merged over params:training / params:trading."""
    tuned: dict[str, Any] = {}
    for name, value in sorted(trial.params.items()):
        *parents, leaf = name.split(".")
        node = tuned
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return tuned


def kedro_params_overrides(trial: FrozenTrial) -> str:
    """The best trial's values as `kedro run --params` text: `training.learning_rate=0.0012,...`."""
    return ",".join(f"{name}={_cli_value(value)}" for name, value in sorted(trial.params.items()))


def study_summary(study_name: str, storage: str, trials: list[FrozenTrial], n_trials: int,
                  n_folds: int) -> dict[str, Any]:
    """Counts by state, the best trial, and the fold evaluations pruning saved (JSON-ready)."""
    states = pd.Series([trial.state.name for trial in trials], dtype="object").value_counts()
    pruned = [trial for trial in trials if trial.state == TrialState.PRUNED]
    summary: dict[str, Any] = {
        "study_name": study_name, "storage": storage, "n_trials_target": n_trials, "n_trials": len(trials),
        "n_folds": n_folds,
        "states": {name: int(count) for name, count in states.items()},
        "fold_evaluations": int(sum(len(trial.intermediate_values) for trial in trials)),
        "fold_evaluations_saved_by_pruning": int(sum(n_folds - len(trial.intermediate_values) for trial in pruned)),
        "best_trial": None,
    }
    try:
        best = best_trial(trials)
    except ValueError:
        return summary
    summary["best_trial"] = {"number": best.number, "value": best.value, "params": best.params,
                             "fold_validation_sharpes": [best.intermediate_values[k] for k in sorted(best.intermediate_values)]}
    return summary


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):  # positional: YAML 1.1 would read 1e-05 as a string
        return np.format_float_positional(value, trim="0")
    return str(value)
