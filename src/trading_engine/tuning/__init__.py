"""Hyper-parameter tuning with Optuna: the search space (`space`), the walk-forward objective that
reads the tuning window only (`objective`), where studies live (`storage`), the resumable study and what
is read back from it (`study`), and its plots (`plots`). See docs/tuning.md."""

from trading_engine.tuning.objective import (
    WalkForwardObjective,
    cut_to_window,
    trial_training_params,
)
from trading_engine.tuning.space import ParameterSpec, SearchSpace, SearchSpaceError
from trading_engine.tuning.storage import FAIL_REASON, fail_orphaned_trials, open_storage, redact
from trading_engine.tuning.study import (
    WINDOW_ATTRIBUTES,
    PrunerSettings,
    TrialSeededTPESampler,
    TuningSettings,
    best_trial,
    kedro_params_overrides,
    open_study,
    record_tuning_window,
    run_study,
    study_summary,
    trials_table,
    tuned_parameters,
    warn_if_losing,
)

__all__ = [
    "WINDOW_ATTRIBUTES", "record_tuning_window", "warn_if_losing",
    "FAIL_REASON", "ParameterSpec", "PrunerSettings", "SearchSpace", "SearchSpaceError", "TrialSeededTPESampler",
    "TuningSettings", "WalkForwardObjective", "best_trial", "cut_to_window", "fail_orphaned_trials",
    "kedro_params_overrides", "open_storage", "open_study", "redact", "run_study", "study_summary",
    "trial_training_params", "trials_table", "tuned_parameters",
]
