"""`python -m trading_engine signals --every ...`: runs after every bar close, survives a failed
run (the exchange is down: one line in the log, the next bar is tried), stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from tests.sources.loopback.binance_rest import Fault
from trading_engine.live.ledger import Ledger, sqlite_url
from trading_engine.live.service import next_run, parse_every, run_every


def test_runs_fall_a_delay_after_each_bar_close():
    every = parse_every("5m")
    close = pd.Timestamp("2025-01-01 10:05", tz="UTC").timestamp()
    assert next_run(close - 60, every, 2.0) == close + 2.0
    assert next_run(close + 1.0, every, 2.0) == close + 2.0  # still before this close's run
    assert next_run(close + 2.0, every, 2.0) == close + 300 + 2.0
    assert parse_every("30s") == pd.Timedelta(seconds=30)


def test_a_failing_run_does_not_stop_the_loop_and_stop_ends_it():
    stop, calls = threading.Event(), []

    def run_once() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise ConnectionError("exchange down")
        if len(calls) == 3:
            stop.set()

    assert run_every(run_once, parse_every("1s"), 0.0, stop) == 1
    assert len(calls) == 3


@pytest.mark.slow
def test_the_service_survives_a_failed_run_and_stops_cleanly_on_sigterm(tmp_path, live_world):
    project, server, _ = live_world
    server.inject(*[Fault("status", path="exchangeInfo", status=503, body="Service Unavailable")] * 2)  # a run's tries
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "200"}
    service = subprocess.Popen([sys.executable, "-m", "trading_engine", "signals", "--every", "2s", "--delay", "0.2",
                                "--env", "test"], cwd=project, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    ledger = Ledger(sqlite_url(tmp_path / "data" / "model_output" / "signal_ledger.db"))
    try:
        deadline = time.monotonic() + 120
        while ledger.count() < 3 and time.monotonic() < deadline and service.poll() is None:
            time.sleep(0.5)
        assert ledger.count() == 3, "no successful run after the failed one"
        service.send_signal(signal.SIGTERM)
        output, _ = service.communicate(timeout=60)
    finally:
        if service.poll() is None:
            service.kill()
    assert service.returncode == 0, output[-3000:]
    assert "failed: RetriesExhaustedError" in output and "trying again at the next bar" in output
    assert "SIGTERM received" in output and "signals service stopped (1 failed runs)" in output
