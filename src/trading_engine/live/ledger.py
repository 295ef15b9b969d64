"""The signal ledger: one row per series and bar, append-only and idempotent, in SQLite or
PostgreSQL through SQLAlchemy.

A row holds the decision taken at a bar's close: the series, the bar (`bar_time`, its open
time), the deployed model's version, its probabilities, expected return and confidence, the
target position (a signed fraction of the equity, filled at the next open), the trading rule's
state after the bar (direction, size, age: the next run continues from it) and `decided_at`,
the exchange's time when the row was written.

* Append-only: rows are only inserted; the database refuses an UPDATE or a DELETE (a trigger).
* Idempotent: (series, bar_time) is unique and an insert of an existing pair adds nothing, so
  running twice for the same bar adds nothing.
* One run at a time: `run_lock()` holds a lock for the whole signals run (read the state,
  decide, write): an advisory lock on PostgreSQL, a file lock beside a SQLite file. A second run
  waits for it up to `timeout_s`, then fails with `LedgerBusyError`, having written nothing.

SQLite is the default (`data/07_model_output/signal_ledger.db`, WAL journal, synchronous
commits); PostgreSQL by URL (`postgresql://user@host/db`, the password in PGPASSWORD or
~/.pgpass), e.g. the compose file's server.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from kedro.io import AbstractDataset, DatasetError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from trading_engine.errors import UserError
from trading_engine.trading.rule import RuleState

logger = logging.getLogger(__name__)

TABLE = "signal_ledger"
# The advisory lock of the signals run on PostgreSQL (any fixed 64-bit key).
ADVISORY_LOCK_KEY = 0x7E_51_6E_A1_5B_00_00_01
LOCK_POLL_S = 0.1

metadata = sa.MetaData()
signal_ledger = sa.Table(
    TABLE, metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("series", sa.String(64), nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("timeframe", sa.String(8), nullable=False),
    sa.Column("bar_time", sa.DateTime(timezone=True), nullable=False),  # open time of the bar decided at its close
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("prob_down", sa.Float(53), nullable=False),
    sa.Column("prob_flat", sa.Float(53), nullable=False),
    sa.Column("prob_up", sa.Float(53), nullable=False),
    sa.Column("expected_return", sa.Float(53), nullable=False),  # the model's pred_return over its horizon
    sa.Column("confidence", sa.Float(53), nullable=False),
    sa.Column("target_position", sa.Float(53), nullable=False),
    sa.Column("rule_direction", sa.Float(53), nullable=False),
    sa.Column("rule_size", sa.Float(53), nullable=False),
    sa.Column("rule_age", sa.Integer, nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("series", "bar_time", name="one_decision_per_series_and_bar"),
)
COLUMNS = tuple(column.name for column in signal_ledger.columns if column.name != "id")

_APPEND_ONLY = {
    "sqlite": [
        f"CREATE TRIGGER IF NOT EXISTS {TABLE}_no_update BEFORE UPDATE ON {TABLE} "
        f"BEGIN SELECT RAISE(ABORT, 'the signal ledger is append-only'); END",
        f"CREATE TRIGGER IF NOT EXISTS {TABLE}_no_delete BEFORE DELETE ON {TABLE} "
        f"BEGIN SELECT RAISE(ABORT, 'the signal ledger is append-only'); END",
    ],
    "postgresql": [
        f"CREATE OR REPLACE FUNCTION {TABLE}_append_only() RETURNS trigger AS $$ "
        f"BEGIN RAISE EXCEPTION 'the signal ledger is append-only'; END $$ LANGUAGE plpgsql",
        f"CREATE OR REPLACE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
        f"FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()",
    ],
}


class LedgerBusyError(UserError):
    """Another signals run holds the ledger; this one wrote nothing."""


@dataclass(frozen=True)
class LedgerRow:
    """One decision (the columns of the table)."""

    series: str
    symbol: str
    timeframe: str
    bar_time: pd.Timestamp
    model_version: str
    prob_down: float
    prob_flat: float
    prob_up: float
    expected_return: float
    confidence: float
    target_position: float
    rule_direction: float
    rule_size: float
    rule_age: int
    decided_at: pd.Timestamp

    @property
    def state(self) -> RuleState:
        return RuleState(float(self.rule_direction), float(self.rule_size), int(self.rule_age))

    def values(self) -> dict[str, Any]:
        values = asdict(self)
        for name in ("bar_time", "decided_at"):
            values[name] = _utc(values[name]).to_pydatetime()
        return values


def _utc(moment: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path)}"


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


class Ledger:
    """The ledger at a SQLAlchemy URL (`sqlite:///path.db` or `postgresql://...`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in _APPEND_ONLY:
            raise ValueError(f"the signal ledger supports SQLite and PostgreSQL URLs, not {describe_url(url)!r}")
        self.path = Path(parsed.database) if self.dialect == "sqlite" and parsed.database not in (None, "", ":memory:") \
            else None
        if self.dialect == "sqlite" and self.path is None:
            raise ValueError("an in-memory SQLite ledger is not shared between runs: give a file path")
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url, poolclass=NullPool, **_connect_args(self.dialect))
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._schema_ready = False

    def __repr__(self) -> str:
        return f"Ledger({describe_url(self.url)!r})"

    # ------------------------------------------------------------------ schema

    def ensure_schema(self) -> None:
        """Create the table and its append-only triggers if they do not exist yet."""
        if self._schema_ready:
            return
        for attempt in range(3):  # two processes creating it at once: the loser sees it exists
            try:
                with self.engine.begin() as connection:
                    metadata.create_all(connection, checkfirst=True)
                    for statement in _APPEND_ONLY[self.dialect]:
                        connection.execute(sa.text(statement))
                break
            except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
                if attempt == 2:
                    raise
                time.sleep(LOCK_POLL_S)
        self._schema_ready = True

    def _has_table(self) -> bool:
        return self._schema_ready or sa.inspect(self.engine).has_table(TABLE)

    # ------------------------------------------------------------------ writing

    def append(self, rows: Sequence[LedgerRow]) -> int:
        """Insert the rows whose (series, bar_time) is not in the ledger yet, in one
        transaction. -> rows added."""
        if not rows:
            return 0
        self.ensure_schema()
        insert = (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(signal_ledger)
        statement = insert.on_conflict_do_nothing(index_elements=["series", "bar_time"]).returning(signal_ledger.c.id)
        added = 0
        with self.engine.begin() as connection:
            for row in rows:  # a few rows a run (one per series and bar)
                added += len(connection.execute(statement, row.values()).all())
        return added

    @contextlib.contextmanager
    def run_lock(self, timeout_s: float) -> Iterator[None]:
        """Hold the ledger for one signals run; LedgerBusyError after `timeout_s` of waiting."""
        started = time.monotonic()
        if self.dialect == "sqlite":
            lock_path = self.path.with_name(self.path.name + ".lock")
            with open(lock_path, "a") as handle:
                while True:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        self._wait_or_fail(started, timeout_s)
                try:
                    self.ensure_schema()
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
            return
        with self.engine.connect() as connection:  # the lock lives as long as this session
            while not connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"),
                                         {"key": ADVISORY_LOCK_KEY}).scalar():
                connection.rollback()
                self._wait_or_fail(started, timeout_s)
            connection.commit()
            try:
                self.ensure_schema()
                yield
            finally:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
                connection.commit()

    def _wait_or_fail(self, started: float, timeout_s: float) -> None:
        waited = time.monotonic() - started
        if waited >= timeout_s:
            raise LedgerBusyError(f"another signals run holds the ledger {describe_url(self.url)} (waited "
                                  f"{waited:.1f} s, signals.lock_timeout_s = {timeout_s:g}); this run wrote nothing")
        time.sleep(min(LOCK_POLL_S, max(timeout_s - waited, 0.0)))

    # ------------------------------------------------------------------ reading

    def last_rows(self, series: Sequence[str]) -> dict[str, LedgerRow]:
        """The latest row of each series that has one."""
        if not series or not self._has_table():
            return {}
        newest = (sa.select(signal_ledger.c.series, sa.func.max(signal_ledger.c.bar_time).label("bar_time"))
                  .where(signal_ledger.c.series.in_(list(series))).group_by(signal_ledger.c.series).subquery())
        query = sa.select(*(signal_ledger.c[name] for name in COLUMNS)).join(
            newest, sa.and_(signal_ledger.c.series == newest.c.series, signal_ledger.c.bar_time == newest.c.bar_time))
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return {row["series"]: _row(row) for row in rows}

    def read(self, series: Sequence[str] | None = None) -> pd.DataFrame:
        """Every row (of `series`), sorted by series and bar: the columns of the table, times as
        UTC timestamps."""
        if not self._has_table():
            return _frame([])
        query = sa.select(*(signal_ledger.c[name] for name in COLUMNS))
        if series is not None:
            query = query.where(signal_ledger.c.series.in_(list(series)))
        query = query.order_by(signal_ledger.c.series, signal_ledger.c.bar_time)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return _frame(rows)

    def count(self) -> int:
        if not self._has_table():
            return 0
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(signal_ledger)).scalar())


def _row(values: Mapping[str, Any]) -> LedgerRow:
    fields = {name: values[name] for name in COLUMNS}
    fields["bar_time"], fields["decided_at"] = _utc(fields["bar_time"]), _utc(fields["decided_at"])
    return LedgerRow(**fields)


def _frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame([dict(row) for row in rows], columns=list(COLUMNS))
    for name in ("bar_time", "decided_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    for name in ("prob_down", "prob_flat", "prob_up", "expected_return", "confidence", "target_position",
                 "rule_direction", "rule_size"):
        frame[name] = frame[name].astype("float64")
    frame["rule_age"] = frame["rule_age"].astype("int64")
    return frame


def _connect_args(dialect: str) -> dict[str, Any]:
    if dialect == "postgresql":
        return {"connect_args": {"connect_timeout": 10}}
    return {"connect_args": {"timeout": 30.0}}  # SQLite's busy timeout, seconds


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


class LedgerDataset(AbstractDataset[None, Ledger]):
    """The signal ledger in the catalog: `load()` gives the `Ledger` that the signals run writes
    through (like the candle store); SQLite at `filepath`, or the database at `url` when given.

    ```yaml
    signal_ledger:
      type: trading_engine.live.ledger.LedgerDataset
      filepath: data/07_model_output/signal_ledger.db
      url: ${runtime_params:ledger_url, null}   # e.g. --params ledger_url=postgresql://user@host/db
    ```
    """

    def __init__(self, *, filepath: str, url: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self._url = url or sqlite_url(self._filepath)
        self.metadata = metadata

    def load(self) -> Ledger:
        return Ledger(self._url)

    def save(self, data: None) -> None:
        raise DatasetError("the signal ledger is written through the Ledger that load() returns")

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        if self._url == sqlite_url(self._filepath):
            return {"filepath": str(self._filepath)}
        return {"url": describe_url(self._url)}


__all__ = ["Ledger", "LedgerBusyError", "LedgerDataset", "LedgerRow", "signal_ledger"]
