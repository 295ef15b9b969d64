"""The signal ledger in SQLite and in PostgreSQL (when a server answers): append-only and
idempotent in the database itself, and two signals runs at once: one waits for the other (or
fails clearly, having written nothing), and the ledger holds one row per series and bar."""

from __future__ import annotations

import dataclasses
import os
import threading
import uuid

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.live.conftest import SETTINGS, START, deploy, deployed_dataset, rest_feed
from tests.live.test_signals import CUT, closed
from trading_engine.data.storage import SeriesStore
from trading_engine.live.ledger import Ledger, LedgerBusyError, LedgerRow, sqlite_url
from trading_engine.live.signals import run_signals

POSTGRES_URL = os.environ.get("TRADING_ENGINE_TEST_POSTGRES_URL",
                              "postgresql://trading_engine:trading_engine@127.0.0.1:5432/optuna_test")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request, tmp_path):
    """A fresh ledger: a SQLite file, or a schema of its own in the test PostgreSQL database."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "signal_ledger.db")
        return
    admin = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with admin.connect():
            pass
    except Exception as error:  # noqa: BLE001 (any failure to connect means: no server here)
        admin.dispose()
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL.split('@')[-1]}: {type(error).__name__}")
    schema = f"ledger_{uuid.uuid4().hex[:12]}"
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def decision(series: str, bar: int, position: float) -> LedgerRow:
    return LedgerRow(series=series, symbol="BTC/USDT:USDT", timeframe="5m", bar_time=START + bar * pd.Timedelta("5min"),
                     model_version="v1", prob_down=0.2, prob_flat=0.3, prob_up=0.5, expected_return=1.234567890123e-3,
                     confidence=0.61, target_position=position, rule_direction=1.0, rule_size=position, rule_age=2,
                     decided_at=pd.Timestamp("2025-01-02 00:00:01.5", tz="UTC"))


def test_the_ledger_is_idempotent_and_append_only_in_the_database(ledger_url):
    ledger = Ledger(ledger_url)
    rows = [decision("BTC_USDT_5m", bar, 0.5 + bar / 7) for bar in range(3)]

    assert ledger.append(rows) == 3
    assert ledger.append(rows) == 0  # the same bars again add nothing
    assert ledger.append([decision("BTC_USDT_5m", 1, -1.0)]) == 0  # nor does another decision for a decided bar

    stored = ledger.read()
    assert len(stored) == 3 and ledger.count() == 3
    assert stored["target_position"].tolist() == [0.5 + bar / 7 for bar in range(3)]  # exact doubles
    assert stored["expected_return"].iloc[0] == 1.234567890123e-3
    assert stored["bar_time"].iloc[1] == START + pd.Timedelta("5min")
    assert ledger.last_rows(["BTC_USDT_5m"])["BTC_USDT_5m"].state.age == 2
    for statement in ("UPDATE signal_ledger SET target_position = 0", "DELETE FROM signal_ledger"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with ledger.engine.begin() as connection:
                connection.execute(sa.text(statement))
    assert ledger.count() == 3


def test_two_signal_runs_at_once_leave_one_row_per_series_and_bar(tmp_path, trained, candles, funding, make_server,
                                                               ledger_url):
    served = {key: frame.iloc[:CUT] for key, frame in candles.items()}
    server = make_server(served, funding, now=closed(CUT - 1))
    deploy(tmp_path / "models", trained)
    results, start = [None, None], threading.Barrier(2)

    def signals_run(slot: int) -> None:  # everything of its own, as a second process would have
        deployed = deployed_dataset(tmp_path / "models").load()
        stores = SeriesStore(tmp_path / "candles"), SeriesStore(tmp_path / "funding")
        start.wait()
        try:
            results[slot] = run_signals(rest_feed(server), *stores, deployed, Ledger(ledger_url), SETTINGS)
        except Exception as error:  # noqa: BLE001 (reported below)
            results[slot] = error

    threads = [threading.Thread(target=signals_run, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert all(isinstance(result, dict) for result in results), results  # the second waited, then ran
    assert sorted(result["written"] for result in results) == [0, 3]
    rows = Ledger(ledger_url).read()
    assert len(rows) == 3 and not rows.duplicated(["series", "bar_time"]).any()


def test_a_run_that_cannot_get_the_ledger_fails_clearly_having_written_nothing(tmp_path, trained, candles, funding,
                                                                              make_server, ledger_url):
    server = make_server({key: frame.iloc[:CUT] for key, frame in candles.items()}, funding, now=closed(CUT - 1))
    deployed = deploy(tmp_path / "models", trained)
    ledger = Ledger(ledger_url)

    with ledger.run_lock(timeout_s=5):  # another run holds the ledger
        with pytest.raises(LedgerBusyError, match=r"another signals run holds the ledger .* wrote nothing"):
            run_signals(rest_feed(server), SeriesStore(tmp_path / "candles"), None, deployed, Ledger(ledger_url),
                        dataclasses.replace(SETTINGS, lock_timeout_s=0.3))

    assert ledger.count() == 0
