"""Where a study lives: `tuning.storage` is a database URL or a journal file path.

- `sqlite:///data/06_models/optuna.db` (relative to the project root, where Kedro runs) or
  `sqlite:////abs/path.db`: one process at a time (SQLite locks under concurrent writers).
- `postgresql://user@host:5432/db` (or `mysql+pymysql://...`): any number of workers on any
  number of machines. Keep the password out of the URL: libpq reads PGPASSWORD or ~/.pgpass.
- a plain file path, e.g. `data/06_models/optuna_journal.log`: Optuna's journal file storage,
  safe for several processes on ONE machine (file locks), no server needed.

These are the forms `count_trials` reads, so the evaluation
counts the trials of the same study for the deflated Sharpe ratio.

A run that is killed leaves its trial RUNNING. On the next start, `fail_orphaned_trials` marks
RUNNING trials of this machine whose worker process no longer exists as FAIL; database storages
also keep a heartbeat, so a trial of a worker that died on another machine fails after the grace
period.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

logger = logging.getLogger(__name__)

FAIL_REASON = "fail_reason"  # user attribute of a failed trial: why it failed
WORKER_HOST, WORKER_PID = "worker_host", "worker_pid"  # user attributes: who ran the trial


def is_database_url(storage: str) -> bool:
    return "://" in storage


def open_storage(storage: str, heartbeat_interval_s: int | None = 60, grace_period_s: int | None = 180) -> BaseStorage:
    """The Optuna storage for a `tuning.storage` value; creates the SQLite or journal file's folder."""
    if not storage:
        raise ValueError("tuning.storage is empty: give a database URL or a journal file path")
    if not is_database_url(storage):
        path = Path(storage)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    scheme = urlsplit(storage).scheme
    if scheme == "journal":
        raise ValueError(f"{storage!r}: a journal storage is given as a plain file path, "
                         "e.g. data/06_models/optuna_journal.log")
    if scheme.startswith("sqlite"):
        database = storage.split(":///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    return RDBStorage(storage, heartbeat_interval=heartbeat_interval_s, grace_period=grace_period_s,
                      heartbeat_stale_trial_callback=_record_stale_trial if heartbeat_interval_s else None)


def redact(storage: str) -> str:
    """The storage URL without its password, for logs and reports."""
    if not is_database_url(storage):
        return storage
    parts = urlsplit(storage)
    if parts.password is None:
        return storage
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def worker_identity() -> dict[str, str | int]:
    return {WORKER_HOST: socket.gethostname(), WORKER_PID: os.getpid()}


def fail_orphaned_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL the RUNNING trials started on this machine by a process that no longer exists
    (a killed run); returns their numbers. Trials of live workers are left alone."""
    host, storage = socket.gethostname(), study._storage
    orphaned = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get(WORKER_PID)
        if trial.user_attrs.get(WORKER_HOST) != host or pid is None or _process_exists(int(pid)):
            continue
        storage.set_trial_user_attr(trial._trial_id, FAIL_REASON,
                                    f"orphaned: worker process {pid} on {host} ended during the trial")
        if storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
            orphaned.append(trial.number)
    if orphaned:
        logger.warning("marked the trials %s of dead workers on this machine as FAIL", orphaned)
    return orphaned


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _record_stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Heartbeat callback: the trial was set to FAIL because its worker stopped beating."""
    study._storage.set_trial_user_attr(trial._trial_id, FAIL_REASON,
                                       "stale: no heartbeat within the grace period (worker died?)")


def read_study(storage_url: str | None, study_name: str | None) -> optuna.Study | None:
    """The Optuna study `study_name` in `storage_url`; None when there is no such storage or
    study. Never creates a database or a study."""
    if not storage_url or not study_name:
        return None
    parsed = urlsplit(storage_url)
    if parsed.scheme.startswith("sqlite"):
        database = storage_url.split(":///", 1)[-1]
        if database in ("", ":memory:") or not Path(database).is_file():
            return None
    elif not parsed.scheme:  # a journal file
        if not Path(storage_url).is_file():
            return None
    if parsed.scheme:
        import sqlalchemy  # noqa: PLC0415

        engine = sqlalchemy.create_engine(storage_url)
        try:
            has_studies = sqlalchemy.inspect(engine).has_table("studies")
        finally:
            engine.dispose()
        if not has_studies:
            return None
        storage = optuna.storages.RDBStorage(storage_url, skip_table_creation=True)
    else:
        storage = optuna.storages.JournalStorage(JournalFileBackend(storage_url))
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return None


def count_trials(storage_url: str | None, study_name: str | None) -> int:
    """Trials of the study that produced a result (complete or pruned); 0 without a study."""
    study = read_study(storage_url, study_name)
    if study is None:
        return 0
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def study_record(storage_url: str | None, study_name: str | None) -> dict[str, object]:
    """What the evaluation needs of a study: the trials that produced a result, the objective
    values of the complete ones (mean validation Sharpe, annualised) and the bars its trials read
    (its user attributes). Empty counts without a study."""
    study = read_study(storage_url, study_name)
    if study is None:
        return {"n_trials": 0, "values": [], "attributes": {}}
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    trials = study.get_trials(deepcopy=False, states=states)
    values = [float(t.value) for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    return {"n_trials": len(trials), "values": values, "attributes": dict(study.user_attrs)}
