"""The study through the pipeline's node, on real Optuna storages (SQLite, journal file) and real
walk-forward training of a tiny transformer on CPU."""

from __future__ import annotations

import socket
import subprocess
import sys

import numpy as np
import optuna
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.cli.utils import _split_params
from optuna.trial import TrialState

from tests.tuning.conftest import (
    PROJECT_ROOT,
    TINY_SPACE,
    project_parameters,
    tiny_training,
    tiny_tuning,
)
from trading_engine.pipelines.tuning import nodes
from trading_engine.training import TrainingConfig, make_walk_forward_layout
from trading_engine.tuning import (
    FAIL_REASON,
    SearchSpace,
    TrialSeededTPESampler,
    WalkForwardObjective,
    open_storage,
    warn_if_losing,
)
from trading_engine.tuning.storage import count_trials

TRADING = project_parameters()["trading"]


def partitions(frames: dict[str, pd.DataFrame]) -> dict:
    return {key: (lambda frame=frame: frame) for key, frame in frames.items()}


def create_study_with_queue(storage: str, queued: list[dict]) -> None:
    """The study the node will load, with trials queued to run first (a constructed case)."""
    study = optuna.create_study(storage=open_storage(storage), study_name="tiny", direction="maximize")
    for params in queued:
        study.enqueue_trial(params)


@pytest.fixture(scope="module")
def resumed_study(tmp_path_factory, tiny_model_input):
    """A study run to 2 trials, then resumed with a target of 3."""
    storage = f"sqlite:///{tmp_path_factory.mktemp('study') / 'optuna.db'}"
    first, _ = nodes.run_tuning_study(partitions(tiny_model_input), tiny_training(), TRADING,
                                      tiny_tuning(storage, n_trials=2))
    trials, summary = nodes.run_tuning_study(partitions(tiny_model_input), tiny_training(), TRADING,
                                             tiny_tuning(storage, n_trials=3))
    return storage, first, trials, summary


def test_a_resumed_study_only_adds_the_missing_trials(resumed_study):
    storage, first, trials, summary = resumed_study
    assert len(first) == 2
    assert [trial.number for trial in trials] == [0, 1, 2]
    assert [trial.params for trial in trials[:2]] == [trial.params for trial in first]  # not run again
    assert all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in trials)
    assert summary["n_trials"] == 3 and summary["n_folds"] == 2
    # The evaluation's count for the deflated Sharpe reads the same study.
    assert count_trials(storage, "tiny") == 3


def test_the_trials_table_holds_states_values_folds_params_and_workers(resumed_study):
    _, _, trials, _ = resumed_study
    table = nodes.tabulate_trials(trials)
    assert list(table["number"]) == [0, 1, 2]
    for row, trial in zip(table.itertuples(index=False), trials, strict=True):
        assert row.state == trial.state.name and row.folds_evaluated == len(trial.intermediate_values)
    completed = table[table["state"] == "COMPLETE"]
    fold_sharpes = completed[["fold_0_validation_sharpe", "fold_1_validation_sharpe"]].to_numpy()
    np.testing.assert_allclose(completed["value"], fold_sharpes.mean(axis=1))  # the objective: mean over folds
    assert {f"param:{name}" for name in trials[0].params} <= set(table.columns)
    assert table["worker"].str.startswith(socket.gethostname()).all()
    assert table["duration_s"].gt(0).all()


def test_tuned_parameters_reach_the_training_config_through_kedro_params(resumed_study):
    _, _, trials, _ = resumed_study
    best = max((trial for trial in trials if trial.state == TrialState.COMPLETE), key=lambda trial: trial.value)
    tuned, overrides = nodes.select_tuned_parameters(trials)
    assert tuned["training"]["learning_rate"] == best.params["training.learning_rate"]
    assert tuned["trading"]["rule"]["confidence_threshold"] == best.params["trading.rule.confidence_threshold"]
    # `kedro run --params "<overrides>"`, parsed the way kedro's CLI parses it, over the project's config.
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base",
                               merge_strategy={"parameters": "soft"}, runtime_params=_split_params(None, None, overrides))
    params = loader["parameters"]
    config = TrainingConfig.from_params(params["training"])
    assert config.learning_rate == pytest.approx(best.params["training.learning_rate"], rel=1e-12)
    assert config.seq_len == best.params["training.seq_len"]
    assert config.model_params["n_heads"] == best.params["training.transformer.n_heads"]
    assert config.loss_weights.regression == pytest.approx(best.params["training.loss_weights.regression"], rel=1e-12)
    assert params["trading"]["rule"]["confidence_threshold"] == pytest.approx(
        best.params["trading.rule.confidence_threshold"], rel=1e-12)
    assert config.max_epochs == project_parameters()["training"]["max_epochs"]  # trial shortcuts stay out


def test_plots_are_drawn_for_a_study_and_for_one_too_small(resumed_study):
    _, _, trials, _ = resumed_study
    for plot in (nodes.plot_optimisation_history, nodes.plot_parameter_importances, nodes.plot_parallel_coordinate):
        assert plot(trials).axes
        small = plot(trials[:1])  # one trial: importances say why they are missing
        assert small.axes
    message = nodes.plot_parameter_importances(trials[:1]).axes[0].texts[0].get_text()
    assert "at least 2 completed trials" in message


def test_a_diverging_trial_is_recorded_as_failed_with_its_reason_and_the_study_goes_on(tmp_path, tiny_model_input):
    storage = str(tmp_path / "journal.log")
    space = {"training": {"learning_rate": {"type": "float", "low": 1.0e-3, "high": 1.0e30, "log": True}}}
    create_study_with_queue(storage, [{"training.learning_rate": lr} for lr in (1e-3, 1e30, 2e-3)])
    trials, summary = nodes.run_tuning_study(partitions(tiny_model_input), tiny_training(), TRADING,
                                             tiny_tuning(storage, n_trials=3, search_space=space,
                                                         pruner={"type": "none"}))
    assert [trial.state for trial in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].user_attrs[FAIL_REASON].startswith("FloatingPointError: non-finite loss")
    assert nodes.tabulate_trials(trials)["fail_reason"].notna().tolist() == [False, True, False]
    assert summary["states"] == {"COMPLETE": 2, "FAIL": 1}
    tuned, _ = nodes.select_tuned_parameters(trials)
    assert tuned["training"]["learning_rate"] in (1e-3, 2e-3)


def test_a_hopeless_trial_is_pruned_after_its_first_fold(tmp_path, tiny_model_input):
    """Constructed case: on a market whose price never moves, a strategy that never trades scores
    exactly 0 and one that trades only pays costs (< 0): the median pruner stops it after fold 0."""
    still = {key: frame.assign(open=100.0, high=100.0, low=100.0, close=100.0) for key, frame in tiny_model_input.items()}
    storage = str(tmp_path / "journal.log")
    space = {"trading": {"rule": {"confidence_threshold": {"type": "float", "low": 0.0, "high": 1.0}}}}
    create_study_with_queue(storage, [{"trading.rule.confidence_threshold": value} for value in (1.0, 0.0)])
    trials, summary = nodes.run_tuning_study(
        partitions(still), tiny_training(), TRADING,
        tiny_tuning(storage, n_trials=2, search_space=space, pruner={"type": "median", "n_startup_trials": 1}))
    never_trades, trades = trials
    assert never_trades.state == TrialState.COMPLETE and never_trades.intermediate_values == {0: 0.0, 1: 0.0}
    assert trades.state == TrialState.PRUNED
    assert list(trades.intermediate_values) == [0] and trades.intermediate_values[0] < 0.0
    assert summary["fold_evaluations"] == 3 and summary["fold_evaluations_saved_by_pruning"] == 1


def scramble(frame: pd.DataFrame, rows: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Every column's values of the masked rows, shuffled among those rows."""
    frame = frame.copy()
    positions = np.flatnonzero(rows)
    shuffled = np.random.default_rng(seed).permutation(positions)
    frame.iloc[positions] = frame.iloc[shuffled].to_numpy()
    return frame


def test_no_trial_reads_a_bar_the_report_calls_out_of_sample_or_the_holdout(tiny_model_input):
    """Nested walk-forward: scramble every bar from the final run's first test bar on (the
    out-of-sample period and the holdout) and the study is unchanged."""
    training = tiny_training()
    final = make_walk_forward_layout(tiny_model_input, TrainingConfig.from_params(training))
    first_out_of_sample = final.folds[0].test.start
    space = SearchSpace.from_params(TINY_SPACE, training, TRADING)
    params = {"training.transformer.n_heads": 2, "training.learning_rate": 3e-3, "training.seq_len": 16,
              "training.loss_weights.regression": 0.5, "trading.rule.confidence_threshold": 0.0}

    def fold_sharpes(frames: dict[str, pd.DataFrame]) -> dict[int, float]:
        objective = WalkForwardObjective(frames, training, TRADING, space)
        assert all(frame.index.max() < first_out_of_sample for frame in objective.model_input.values())
        assert objective.last_bar_seen < first_out_of_sample
        study = optuna.create_study(direction="maximize")
        study.enqueue_trial(params)
        study.optimize(objective, n_trials=1)
        assert study.trials[0].state == TrialState.COMPLETE
        return study.trials[0].intermediate_values

    original = fold_sharpes(tiny_model_input)
    later = {key: scramble(frame, frame.index >= first_out_of_sample) for key, frame in tiny_model_input.items()}
    assert fold_sharpes(later) == original
    # The comparison can fail: scrambling the last tuning fold's validation bars changes the trial.
    validation = WalkForwardObjective(tiny_model_input, training, TRADING, space).folds[-1].validation
    assert validation.end < first_out_of_sample
    in_validation = {key: scramble(frame, validation.contains(frame.index)) for key, frame in tiny_model_input.items()}
    changed = fold_sharpes(in_validation)
    assert changed[0] == original[0] and changed[1] != original[1]


def test_the_summary_says_which_bars_tuning_read_and_warns_of_a_losing_best(tmp_path, tiny_model_input):
    storage = f"sqlite:///{tmp_path / 'window.db'}"
    training = tiny_training()
    final = make_walk_forward_layout(tiny_model_input, TrainingConfig.from_params(training))
    _, summary = nodes.run_tuning_study(partitions(tiny_model_input), training, TRADING,
                                        tiny_tuning(storage, n_trials=2))
    assert pd.Timestamp(summary["last_bar_seen"]) < final.folds[0].test.start
    # The earliest out-of-sample start of any configuration the space can draw (its largest purge).
    assert pd.Timestamp(summary["first_out_of_sample_bar"]) <= final.folds[0].test.start
    assert pd.Timestamp(summary["tuning_window_end"]) < pd.Timestamp(summary["last_bar_seen"])
    assert summary["best_trial_loses"] == (summary["best_trial"]["value"] <= 0)
    losing = {"best_trial": {"value": -0.4}}
    warn_if_losing(losing)
    assert losing["best_trial_loses"] and "least bad" in losing["warning"]


def test_workers_with_one_seed_draw_different_parameters_and_one_worker_reproduces(tmp_path):
    space = SearchSpace.from_params(TINY_SPACE, tiny_training(), TRADING)
    storage = open_storage(str(tmp_path / "journal.log"))

    def draws(sampler_class: type, study_name: str, n_workers: int, rounds: int = 3) -> list[dict]:
        workers = [optuna.create_study(storage=storage, study_name=study_name, direction="maximize",
                                       sampler=sampler_class(seed=42, n_startup_trials=2), load_if_exists=True)
                   for _ in range(n_workers)]
        drawn = []
        for _ in range(rounds):
            running = [(worker, worker.ask()) for worker in workers]  # every worker has a trial open at once
            drawn += [space.sample(trial) for _, trial in running]
            for worker, trial in running:
                worker.tell(trial, float(trial.number))
        return drawn

    ours = draws(TrialSeededTPESampler, "ours", n_workers=2)
    assert len({tuple(sorted(values.items())) for values in ours}) == len(ours) == 6
    alone = draws(TrialSeededTPESampler, "alone", n_workers=1, rounds=6)
    assert draws(TrialSeededTPESampler, "alone_again", n_workers=1, rounds=6) == alone
    assert alone[:2] == ours[:2]  # the random start depends on (seed, trial number) only
    plain = draws(optuna.samplers.TPESampler, "plain", n_workers=2)
    assert plain[0] == plain[1]  # what per-trial seeding prevents: both workers draw the same trial


def test_a_killed_workers_running_trial_is_failed_when_the_study_resumes(tmp_path, tiny_model_input):
    storage = str(tmp_path / "journal.log")
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    study = optuna.create_study(storage=open_storage(storage), study_name="tiny", direction="maximize")
    orphan = study.ask()  # the trial a killed worker left RUNNING
    orphan.set_user_attr("worker_host", socket.gethostname())
    orphan.set_user_attr("worker_pid", int(ended.stdout))
    trials, _ = nodes.run_tuning_study(partitions(tiny_model_input), tiny_training(), TRADING,
                                       tiny_tuning(storage, n_trials=2))
    assert [trial.state for trial in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].user_attrs[FAIL_REASON].startswith("orphaned")
