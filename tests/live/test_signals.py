"""One signals run against the loopback Binance server: the refusals (a stale feed judged by the
exchange's clock, a gap inside the model's window, a model whose features differ) write nothing;
a second run for the same bar adds nothing; a run after a failed one decides the missed bar as
the backtest does."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from tests.live.conftest import (
    BAR,
    SETTINGS,
    START,
    SYMBOLS,
    deploy,
    recipe_of,
    rest_feed,
    set_clock,
)
from tests.sources.fixtures import FAST_RETRY
from tests.sources.loopback.binance_rest import Fault
from trading_engine.data.storage import SeriesStore
from trading_engine.live.ledger import Ledger, sqlite_url
from trading_engine.live.replay import backtest_decisions, compare_decisions
from trading_engine.live.signals import (
    FeatureMismatchError,
    StaleFeedError,
    WindowGapError,
    run_signals,
)
from trading_engine.sources.exchange import RetriesExhaustedError

CUT = 2500  # the exchange has the candles of bars 0 .. CUT - 1
SECOND = pd.Timedelta(seconds=1)


def closed(bar_index: int) -> pd.Timestamp:
    """A second after bar `bar_index` closed."""
    return START + (bar_index + 1) * BAR + SECOND


@pytest.fixture
def world(tmp_path, trained, candles, funding, make_server):
    """(run(deployed) -> report, the ledger, the server): a server with CUT bars, its clock a
    second after the last one closed; empty stores and ledger."""
    served = {key: frame.iloc[:CUT] for key, frame in candles.items()}
    server = make_server(served, funding, now=closed(CUT - 1))
    ledger = Ledger(sqlite_url(tmp_path / "signal_ledger.db"))
    feed = rest_feed(server)
    stores = SeriesStore(tmp_path / "candles"), SeriesStore(tmp_path / "funding")

    def run(deployed, settings=SETTINGS):
        return run_signals(feed, *stores, deployed, ledger, settings)

    return run, ledger, server


def test_a_run_writes_one_row_per_series_for_the_last_closed_bar_and_a_second_run_adds_nothing(
        tmp_path, trained, world):
    run, ledger, server = world
    deployed = deploy(tmp_path / "models", trained)

    first, again = run(deployed), run(deployed)

    assert first["written"] == 3 and again["written"] == 0
    rows = ledger.read()
    assert sorted(rows["series"]) == sorted(f"{s.split('/')[0]}_USDT_5m" for s in SYMBOLS)
    assert (rows["bar_time"] == START + (CUT - 1) * BAR).all()
    assert (rows["model_version"] == deployed.version).all()
    # decided_at is the exchange's time (a year before this machine's clock)
    assert (rows["decided_at"] - closed(CUT - 1)).abs().max() < pd.Timedelta(seconds=30)


def test_a_stale_feed_is_refused_by_the_exchanges_clock_with_nothing_written(tmp_path, trained, world):
    run, ledger, server = world
    deployed = deploy(tmp_path / "models", trained)
    run(deployed)  # fresh: the last bar closed a second ago on the exchange (this machine's clock is a year on)
    set_clock(server, closed(CUT + 1))  # two more bars have closed on the exchange, and none has arrived

    with pytest.raises(StaleFeedError, match=r"stale feed: by the exchange's clock .* has not arrived"):
        run(deployed)

    assert ledger.count() == 3


def test_a_gap_inside_the_models_window_is_refused_with_nothing_written(tmp_path, trained, candles, funding,
                                                                       make_server):
    deployed = deploy(tmp_path / "models", trained)
    ledger = Ledger(sqlite_url(tmp_path / "signal_ledger.db"))

    def run_with_hole(at: int, folder: str):
        served = {key: frame.iloc[:CUT].drop(index=[at]) for key, frame in candles.items()}
        server = make_server(served, funding, now=closed(CUT - 1))
        return run_signals(rest_feed(server), SeriesStore(tmp_path / folder / "candles"), None, deployed, ledger,
                           SETTINGS)

    with pytest.raises(WindowGapError, match=r"1 bars missing inside the model's window"):
        run_with_hole(CUT - 20, "near")
    assert ledger.count() == 0
    # A hole further back, in the lead only, is computed through as the backtest does.
    assert run_with_hole(CUT - 1500, "far")["written"] == 3


def test_a_model_whose_features_differ_is_refused_with_nothing_written(tmp_path, trained, world):
    run, ledger, _ = world
    mismatched = deploy(tmp_path / "models", trained, recipe=dataclasses.replace(recipe_of(trained), order_flow=False))

    with pytest.raises(FeatureMismatchError, match=r"the model needs \['feat_taker_buy_share'"):
        run(mismatched)

    assert ledger.count() == 0


def test_a_run_after_a_failed_one_decides_the_missed_bar_as_the_backtest_does(tmp_path, trained, world,
                                                                              model_input):
    run, ledger, server = world
    deployed = deploy(tmp_path / "models", trained)
    set_clock(server, closed(CUT - 3))
    run(deployed)
    set_clock(server, closed(CUT - 2))
    server.inject(*[Fault("status", path="exchangeInfo", status=503, body="Service Unavailable")]
                  * FAST_RETRY.max_attempts)
    with pytest.raises(RetriesExhaustedError):  # the exchange is down for this bar
        run(deployed)
    set_clock(server, closed(CUT - 1))

    report = run(deployed)

    assert report["written"] == 6  # the missed bar and the new one, for each series
    backtest = backtest_decisions(deployed, model_input, START + (CUT - 3) * BAR, START + (CUT - 1) * BAR)
    table, verdict = compare_decisions(ledger.read(), backtest)
    assert verdict["parity"], verdict
    np.testing.assert_array_equal(table["live_position"], table["backtest_position"])
