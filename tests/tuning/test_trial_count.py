"""The evaluation counts the trials of a real Optuna study (SQLite and journal storages) and
creates nothing while doing so."""

from __future__ import annotations

import optuna

from trading_engine.tuning.storage import count_trials


def _study(storage: str, name: str) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 3:
            raise optuna.TrialPruned()
        if trial.number == 4:
            raise RuntimeError("a failed trial")
        return x

    study.optimize(objective, n_trials=5, catch=(RuntimeError,))
    return study


def test_count_trials_reads_a_real_study_and_creates_nothing(tmp_path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    missing = tmp_path / "none.db"
    assert count_trials(f"sqlite:///{missing}", "study") == 0
    assert not missing.exists()
    database = tmp_path / "tuning.db"
    storage = f"sqlite:///{database}"
    _study(storage, "study")
    # 3 complete + 1 pruned count; the failed trial gave no result.
    assert count_trials(storage, "study") == 4
    assert count_trials(storage, "another") == 0
    assert optuna.get_all_study_names(storage) == ["study"]
    assert count_trials(None, "study") == 0


def test_count_trials_reads_a_journal_file(tmp_path) -> None:
    from optuna.storages.journal import JournalFileBackend

    path = tmp_path / "journal.log"
    assert count_trials(str(path), "study") == 0 and not path.exists()
    _study(optuna.storages.JournalStorage(JournalFileBackend(str(path))), "study")
    assert count_trials(str(path), "study") == 4
