"""The archive source against a loopback Binance archive and a loopback REST API: real zips,
real checksums, real ccxt, real HTTP, real Parquet; faults injected."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.sources.fixtures import FAST_RETRY
from tests.sources.loopback.binance_archive import ArchiveFault
from trading_engine.data.schema import CANDLE_COLUMNS
from trading_engine.data.storage import SeriesStore
from trading_engine.sources import EmptyWindowError, Window
from trading_engine.sources.archive import (
    ArchiveFileError,
    ArchiveSettings,
    ArchiveSource,
    plan_pieces,
)
from trading_engine.sources.exchange import (
    DownloadSettings,
    ExchangeClient,
    HostUnreachableError,
    WeightBudget,
)

BTC = ("BTCUSDT", "5m")
WINDOW = Window(pd.Timestamp("2024-11-01", tz="UTC"))
# Published: November's monthly file, December's daily files up to the 29th (the 30th and 31st
# come over REST, as when the archive is a day or two behind the exchange).
PUBLISHED_UNTIL = "2024-12-30"
DECEMBER_30 = pd.Timestamp("2024-12-30", tz="UTC")


def archive_source(rest, archive, max_connections: int = 4) -> ArchiveSource:
    client = ExchangeClient(
        api_url=rest.url, timeout_s=2.0, retry=FAST_RETRY, budget=WeightBudget(limit=None), seed=0
    )
    return ArchiveSource(
        client,
        ArchiveSettings(base_url=archive.url, max_connections=max_connections, timeout_s=2.0),
        DownloadSettings(progress=False, max_workers=2),
    )


@pytest.fixture
def servers(exchange_server, archive_server, archive_candles, archive_funding):
    """(REST server, archive server) of BTC and ETH 5m, 2024-11 and 2024-12; the exchange's
    clock at 2025-01-01 00:00, the archive published until 2024-12-30."""
    rest = exchange_server(archive_candles, archive_funding)
    archive = archive_server(archive_candles, archive_funding, published_until=PUBLISHED_UNTIL)
    return rest, archive


def stored(store: SeriesStore, key: str = "BTC_USDT_5m") -> pd.DataFrame:
    return store.read(key)[list(CANDLE_COLUMNS)]


def expected(candles: pd.DataFrame) -> pd.DataFrame:
    return candles[list(CANDLE_COLUMNS)].reset_index(drop=True)


def zips(archive) -> list[str]:
    """The zip files downloaded (checksum files left out)."""
    return [path for path in archive.requests if path.endswith(".zip")]


def test_months_then_days_then_rest_give_exactly_the_exchange_candles(
    servers, archive_candles, archive_funding, tmp_path
):
    rest, archive = servers
    store, funding_store = SeriesStore(tmp_path / "candles"), SeriesStore(tmp_path / "funding")
    source = archive_source(rest, archive)

    reports = source.sync(store, ["BTC/USDT", "ETH/USDT"], ["5m"], WINDOW)
    funding_reports = source.sync_funding(funding_store, ["BTC/USDT"], WINDOW)

    for market, key in (("BTCUSDT", "BTC_USDT_5m"), ("ETHUSDT", "ETH_USDT_5m")):
        pd.testing.assert_frame_equal(stored(store, key), expected(archive_candles[(market, "5m")]))
        report = reports[key]
        # November's monthly file; December's (not published), then its daily files, of which
        # the 30th and the 31st are not published yet either
        assert report["archive_files"] == 1 + 29 and report["archive_not_published"] == 1 + 2
        assert report["rest_candles"] == 2 * 288 and report["gap_count"] == 0
    assert sorted(p.rsplit("/", 1)[-1] for p in zips(archive) if "BTCUSDT-5m" in p) == sorted(
        ["BTCUSDT-5m-2024-11.zip"] + [f"BTCUSDT-5m-2024-12-{d:02d}.zip" for d in range(1, 30)]
    )
    assert rest.count("klines") == 2  # the 30th and 31st, one page per series
    provenance = store.read("BTC_USDT_5m").attrs["provenance"]
    assert provenance["sources"] == ["archive", "exchange"]
    assert provenance["unverified_from"] == DECEMBER_30.isoformat()
    # funding: November from the archive, December over REST
    pd.testing.assert_frame_equal(
        funding_store.read("BTC_USDT")[["timestamp", "funding_rate"]],
        archive_funding["BTCUSDT"].reset_index(drop=True),
    )
    assert funding_reports["BTC_USDT"]["archive_files"] == 1
    assert funding_reports["BTC_USDT"]["rest_candles"] == 31 * 3


FAULTS = {
    "zip_not_matching_its_checksum": ArchiveFault("checksum_mismatch", path="-2024-11.zip"),
    "truncated_zip": ArchiveFault("truncated", path="-2024-12-05.zip"),
    "http_503": ArchiveFault("status", status=503, path="-2024-12-07.zip"),
    "dropped_connection": ArchiveFault("drop", path="-2024-12-09.zip"),
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_each_archive_fault_is_retried_and_nothing_unverified_is_stored(
    servers, archive_candles, tmp_path, fault
):
    rest, archive = servers
    archive.inject(fault)
    store = SeriesStore(tmp_path)

    archive_source(rest, archive).sync(store, ["BTC/USDT"], ["5m"], WINDOW)

    assert archive.pending_faults == 0
    assert sum(fault.path in path for path in zips(archive)) == 2  # fetched again
    pd.testing.assert_frame_equal(stored(store), expected(archive_candles[BTC]))


def test_a_file_that_keeps_failing_its_checksum_fails_the_run_by_name_and_keeps_the_verified(
    servers, archive_candles, tmp_path
):
    rest, archive = servers
    bad = "BTCUSDT-5m-2024-12-10.zip"
    archive.inject(*[ArchiveFault("checksum_mismatch", path=bad) for _ in range(FAST_RETRY.max_attempts)])
    store = SeriesStore(tmp_path)
    source = archive_source(rest, archive)

    with pytest.raises(ArchiveFileError, match=rf"{bad}.*failed 6 times.*does not match its checksum"):
        source.sync(store, ["BTC/USDT"], ["5m"], WINDOW)

    december_10 = pd.Timestamp("2024-12-10", tz="UTC")
    candles = archive_candles[BTC]
    pd.testing.assert_frame_equal(
        stored(store), expected(candles[candles["timestamp"] < december_10])
    )  # every file before the bad one, verified and stored; nothing after it
    source.sync(store, ["BTC/USDT"], ["5m"], WINDOW)  # the archive is healthy again
    pd.testing.assert_frame_equal(stored(store), expected(candles))


def test_a_missing_month_falls_back_to_daily_files_and_a_missing_day_to_rest(
    servers, archive_candles, tmp_path
):
    rest, archive = servers
    archive.unpublish("BTCUSDT-5m-2024-11.zip")
    archive.unpublish("BTCUSDT-5m-2024-11-15.zip")
    store = SeriesStore(tmp_path)

    [report] = archive_source(rest, archive).sync(store, ["BTC/USDT"], ["5m"], WINDOW).values()

    pd.testing.assert_frame_equal(stored(store), expected(archive_candles[BTC]))
    assert archive.count("BTCUSDT-5m-2024-11-14.zip.CHECKSUM") == 1
    assert report["archive_files"] == 29 + 29  # November but the 15th, December to the 29th
    assert report["rest_candles"] == 288 + 2 * 288  # the 15th, and the last two days
    # the 15th came over REST in the middle of the archive's days: not marked for a recheck
    assert store.provenance("BTC_USDT_5m")["unverified_from"] == DECEMBER_30.isoformat()


def test_files_with_and_without_a_header_in_ms_or_us_give_the_same_candles(
    exchange_server, archive_server, archive_candles, tmp_path
):
    rest = exchange_server(archive_candles)
    archive = archive_server(
        archive_candles,
        published_until="2025-01-01",
        header=lambda period: period.start.month == 12,  # November's file has no header row
        time_unit=lambda period: "us" if period.end - period.start == pd.Timedelta(days=1) else "ms",
    )
    archive.unpublish("BTCUSDT-5m-2024-12.zip")  # December from daily files, in microseconds
    store = SeriesStore(tmp_path)

    archive_source(rest, archive).sync(store, ["BTC/USDT"], ["5m"], WINDOW)

    pd.testing.assert_frame_equal(stored(store), expected(archive_candles[BTC]))
    assert rest.count("klines") == 0


def test_a_second_run_fetches_nothing_old_and_verifies_the_rest_candles_once_published(
    servers, archive_candles, tmp_path
):
    rest, archive = servers
    store = SeriesStore(tmp_path)
    source = archive_source(rest, archive)
    source.sync(store, ["BTC/USDT"], ["5m"], WINDOW)
    archive.reset_counts()
    rest.reset_counts()

    [second] = source.sync(store, ["BTC/USDT"], ["5m"], WINDOW).values()

    assert zips(archive) == [] and rest.count("klines") == 0  # only the two checksums asked
    assert second["added"] == 0 and second["archive_not_published"] == 2

    archive.publish_until("2025-01-01")  # the archive catches up with the 30th and 31st
    [third] = source.sync(store, ["BTC/USDT"], ["5m"], WINDOW).values()

    assert sorted(p.rsplit("/", 1)[-1] for p in zips(archive)) == [
        "BTCUSDT-5m-2024-12-30.zip", "BTCUSDT-5m-2024-12-31.zip",
    ]  # fmt: skip (downloaded concurrently: in any order)
    assert third["disagreements"]["candles_compared"] == 2 * 288
    assert third["disagreements"]["candles_differing"] == 0  # archive and REST agree
    assert store.provenance("BTC_USDT_5m")["unverified_from"] is None
    pd.testing.assert_frame_equal(stored(store), expected(archive_candles[BTC]))


def test_a_rest_candle_that_disagrees_with_the_archive_is_reported_and_the_archive_kept(
    exchange_server, archive_server, archive_candles, tmp_path
):
    altered = {key: frame.copy() for key, frame in archive_candles.items()}
    row = altered[BTC].index[altered[BTC]["timestamp"] == DECEMBER_30 + pd.Timedelta(hours=5)][0]
    altered[BTC].loc[row, "close"] += 0.1  # what the REST API said
    rest = exchange_server(altered)
    archive = archive_server(archive_candles, published_until=PUBLISHED_UNTIL)
    store = SeriesStore(tmp_path)
    source = archive_source(rest, archive)
    source.sync(store, ["BTC/USDT"], ["5m"], WINDOW)
    archive.publish_until("2025-01-01")

    [report] = source.sync(store, ["BTC/USDT"], ["5m"], WINDOW).values()

    disagreements = report["disagreements"]
    assert (disagreements["candles_differing"], disagreements["columns"]) == (1, {"close": 1})
    [example] = disagreements["examples"]
    original = archive_candles[BTC].loc[row, "close"]
    assert example["stored"] == pytest.approx(original + 0.1) and example["incoming"] == original
    pd.testing.assert_frame_equal(stored(store), expected(archive_candles[BTC]))


def test_resume_after_sigkill_gives_the_same_store_as_an_uninterrupted_run(
    exchange_server, archive_server, archive_candles, tmp_path
):
    rest = exchange_server(archive_candles)
    archive = archive_server(
        archive_candles, published_until=PUBLISHED_UNTIL, latency_s=0.05
    )
    archive.unpublish("BTCUSDT-5m-2024-11.zip")  # many daily files, to be killed among
    killed_root = tmp_path / "killed"
    script = (
        "import pandas as pd\n"
        "from trading_engine.data.storage import SeriesStore\n"
        "from trading_engine.sources import Window\n"
        "from trading_engine.sources.archive import ArchiveSettings, ArchiveSource\n"
        "from trading_engine.sources.exchange import DownloadSettings, ExchangeClient, WeightBudget\n"
        f"client = ExchangeClient(api_url={rest.url!r}, budget=WeightBudget(limit=None))\n"
        f"source = ArchiveSource(client, ArchiveSettings(base_url={archive.url!r}, max_connections=2),"
        " DownloadSettings(progress=False))\n"
        f"source.sync(SeriesStore({str(killed_root)!r}), ['BTC/USDT'], ['5m'],"
        " Window(pd.Timestamp('2024-11-01', tz='UTC')))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(zips(archive)) < 25 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    killed = SeriesStore(killed_root)
    stored_before = len(killed.read("BTC_USDT_5m"))  # every file readable
    assert 0 < stored_before < len(archive_candles[BTC])
    archive.latency_s = 0.0
    archive.reset_counts()

    archive_source(rest, archive).sync(killed, ["BTC/USDT"], ["5m"], WINDOW)
    resumed_zips = len(zips(archive))
    whole = SeriesStore(tmp_path / "whole")
    archive_source(rest, archive).sync(whole, ["BTC/USDT"], ["5m"], WINDOW)

    assert resumed_zips < 29 + 29  # resumed, not restarted
    killed_parts, whole_parts = killed.partitions("BTC_USDT_5m"), whole.partitions("BTC_USDT_5m")
    assert [p.name for p in killed_parts] == [p.name for p in whole_parts]
    for part, reference in zip(killed_parts, whole_parts, strict=True):
        pd.testing.assert_frame_equal(pd.read_parquet(part), pd.read_parquet(reference))
    pd.testing.assert_frame_equal(stored(killed), expected(archive_candles[BTC]))


def test_an_unreachable_archive_fails_in_seconds_naming_the_host(
    exchange_server, archive_candles, closed_port, tmp_path
):
    rest = exchange_server(archive_candles)
    client = ExchangeClient(api_url=rest.url, budget=WeightBudget(limit=None))  # default retries
    source = ArchiveSource(
        client, ArchiveSettings(base_url=f"http://127.0.0.1:{closed_port}"), DownloadSettings(progress=False)
    )

    began = time.monotonic()
    with pytest.raises(HostUnreachableError, match=rf"cannot reach 127.0.0.1:{closed_port} \(connection refused"):
        source.sync(SeriesStore(tmp_path), ["BTC/USDT"], ["5m"], WINDOW)

    assert time.monotonic() - began < 30  # the bound; about 2 s (3 attempts, 1 s apart)


def test_a_window_before_the_listing_fails_before_any_download(servers, tmp_path):
    rest, archive = servers
    before_listing = Window(pd.Timestamp("2019-01-01", tz="UTC"), pd.Timestamp("2019-02-01", tz="UTC"))

    with pytest.raises(EmptyWindowError, match=r"2019-01-01 00:00 -> 2019-02-01 00:00 UTC.*BTC_USDT_5m \(listed on the exchange on 2019-09-25"):
        archive_source(rest, archive).sync(SeriesStore(tmp_path), ["BTC/USDT"], ["5m"], before_listing)

    assert archive.requests == [] and rest.count("klines") == 0


def test_the_plan_takes_whole_months_then_days_and_leaves_today_to_rest():
    now = pd.Timestamp("2025-03-12 09:30", tz="UTC").value // 1_000_000
    resume = pd.Timestamp("2024-12-30 10:00", tz="UTC").value // 1_000_000
    pieces = plan_pieces("BTCUSDT", "1m", resume, now, now, 60_000)
    names = [p.name for p in pieces]
    assert names == [
        "BTCUSDT-1m-2024-12-30.zip", "BTCUSDT-1m-2024-12-31.zip",  # the rest of a stored month
        "BTCUSDT-1m-2025-01.zip", "BTCUSDT-1m-2025-02.zip",  # complete months
        *[f"BTCUSDT-1m-2025-03-{d:02d}.zip" for d in range(1, 12)],  # the current month's days
    ]  # fmt: skip
    assert all(a.end_ms == b.start_ms for a, b in zip(pieces, pieces[1:], strict=False))
