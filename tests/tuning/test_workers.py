"""Two worker processes run `kedro run --pipelines tuning` at the same time against one shared
storage (a journal file; a real PostgreSQL server): the study ends with the trials of both, with
no duplicate trial numbers or parameter sets and nothing left running.

Each run happens in a temporary copy of the project (pyproject.toml, conf/base, a conf/local with
tiny sizes, the model input under data/), so nothing is written to the repository's data/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
import sqlalchemy
from optuna.trial import TrialState

from tests.tuning.conftest import (
    PROJECT_ROOT,
    TINY_SPACE,
    TINY_TRAINING,
    project_parameters,
    write_yaml,
)
from trading_engine.tuning import open_storage
from trading_engine.tuning.space import space_entries

KEDRO = Path(sys.executable).with_name("kedro")
POSTGRES_URL = os.environ.get("TRADING_ENGINE_TEST_POSTGRES_URL",
                              "postgresql://trading_engine:trading_engine@127.0.0.1:5432/optuna_test")
N_TRIALS = 6


def tiny_search_space() -> dict:
    """TINY_SPACE, with every other entry of the project's space set to null (dropped)."""
    space: dict = {}
    entries = [(name, None) for name, _ in space_entries(project_parameters()["tuning"]["search_space"])]
    for name, entry in entries + list(space_entries(TINY_SPACE)):
        *parents, leaf = name.split(".")
        node = space
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = entry
    return space


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_input) -> Path:
    """A temporary copy of the project: its conf/base, tiny conf/local, the model input on disk."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "conf" / "base", root / "conf" / "base")
    (root / "src").mkdir()  # kedro wants the folder; the package itself is installed
    folder = root / "data" / "05_model_input" / "model_input"
    folder.mkdir(parents=True)
    for key, frame in tiny_model_input.items():
        frame.to_parquet(folder / f"{key}.parquet")
    write_yaml(root / "conf" / "local" / "parameters_training.yml", {"training": TINY_TRAINING})
    write_yaml(root / "conf" / "local" / "parameters_tuning.yml", {"tuning": {
        "study_name": "workers", "n_trials": N_TRIALS, "n_startup_trials": 3,
        "trial_training": {"max_epochs": 1, "patience": 1, "max_samples_per_epoch": 512, "folds": {"n_folds": 2}},
        "search_space": tiny_search_space()}})
    return root


def run_two_workers(project: Path, storage: str, study_name: str) -> None:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    command = [str(KEDRO), "run", "--pipelines", "tuning",
               "--params", f"tuning.storage={storage},tuning.study_name={study_name}"]
    workers = [subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for _ in range(2)]
    outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output[-4000:]


def assert_both_workers_shared_one_study(storage: optuna.storages.BaseStorage, study_name: str, project: Path) -> None:
    trials = optuna.load_study(study_name=study_name, storage=storage).get_trials()
    assert N_TRIALS <= len(trials) <= N_TRIALS + 1  # one extra at most, from a race at the end
    assert sorted(trial.number for trial in trials) == list(range(len(trials)))
    assert all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in trials)
    workers = {trial.user_attrs["worker_pid"] for trial in trials}
    assert len(workers) == 2, "one worker ran every trial: the other never joined the study"
    assert len({tuple(sorted(trial.params.items())) for trial in trials}) == len(trials)
    table = pd.read_parquet(project / "data" / "08_reporting" / "tuning_trials.parquet")
    assert set(table["number"]) == set(range(len(trials)))
    assert (project / "data" / "06_models" / "tuned_parameters.yml").is_file()
    assert (project / "data" / "08_reporting" / "tuning_parameter_importances.png").stat().st_size > 0


@pytest.mark.slow
def test_two_worker_processes_share_one_journal_file_study(project):
    journal = project / "data" / "06_models" / "optuna_journal.log"
    run_two_workers(project, str(journal.relative_to(project)), "journal_workers")
    assert_both_workers_shared_one_study(open_storage(str(journal)), "journal_workers", project)


@pytest.fixture
def postgres_url() -> str:
    engine = sqlalchemy.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except Exception as error:  # noqa: BLE001 (any failure to connect means: no server here)
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL.split('@')[-1]}: {type(error).__name__}")
    finally:
        engine.dispose()
    return POSTGRES_URL


@pytest.mark.slow
@pytest.mark.postgres
def test_two_worker_processes_share_one_postgresql_study(project, postgres_url):
    study_name = f"workers_{uuid.uuid4().hex[:12]}"
    storage = open_storage(postgres_url)
    try:
        run_two_workers(project, postgres_url, study_name)
        assert_both_workers_shared_one_study(storage, study_name, project)
    finally:
        if study_name in optuna.get_all_study_names(storage):
            optuna.delete_study(study_name=study_name, storage=storage)
        storage.remove_session()
