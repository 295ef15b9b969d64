"""Bring stored series up to date from the exchange's REST API: incremental, chunked, crash-safe.

For each series the download starts one timeframe after the last stored candle (or at `start`),
stops before the candle still forming (or at `end`), and commits every `commit_every_pages`
pages to the `SeriesStore` (an atomic rewrite of the month or two it touches). A process killed
at any moment therefore loses at most the uncommitted pages, leaves every file readable, and the
next run resumes from the last committed candle without gap or duplicate. Memory stays bounded
by one chunk plus one month, whatever the length of the history.

Series run in a few threads (`max_workers`), each with its own connection, all sharing one
weight budget: a distant exchange answers a page in a few hundred milliseconds, so one
connection alone cannot use the budget. Each series has a progress bar (candles/s, ETA) and a
one-line summary at the end.

The store's identity of a series is the exchange and the market: REST candles extend a series
that the archive started (and the other way round), but a series made by the synthetic
generator, or of another exchange, is never extended (`ProvenanceConflictError`, raised before
any candle is fetched). `download_candle_range` and `download_funding_range` are the REST legs
that the archive source (`sources/archive.py`) also uses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trading_engine.data.schema import (
    CANDLE_COLUMNS,
    epoch_to_timestamps,
    funding_key,
    series_key,
    timeframe_offset_milliseconds,
    timeframe_to_milliseconds,
)
from trading_engine.data.storage import SeriesStore
from trading_engine.progress import tqdm
from trading_engine.sources.base import (
    EmptyWindowError,
    SeriesReport,
    Window,
    checked_reports,
    empty_window_message,
    stored_range,
)
from trading_engine.sources.exchange.client import ExchangeClient
from trading_engine.sources.exchange.history import candle_pages, funding_rate_pages

logger = logging.getLogger(__name__)
Provenance = Callable[[], dict]  # the provenance of the next commit (it may change in a run)


@dataclass(frozen=True)
class DownloadSettings:
    # Candles a request. Binance weighs klines by limit: <100: 1, <500: 2, <=1000: 5, >1000: 10,
    # so 1000 (weight 5) gives 200 candles a weight and 499 (weight 2) 250, if the connections
    # can send the 2.5x more requests that it needs.
    candles_per_request: int = 1000
    commit_every_pages: int = 20  # a crash loses at most this many pages
    max_workers: int = 3  # series downloaded at once, one connection each
    progress: bool = True
    # Live signals: an empty page where the newest candles should be means "not published yet"
    # (the caller judges staleness by the exchange's clock), not a malformed answer to retry.
    empty_page_is_end: bool = False


class ExchangeSource:
    """`ingestion.source: exchange`: every candle and settlement over the REST API."""

    name = "exchange"
    has_funding = True

    def __init__(self, client: ExchangeClient, settings: DownloadSettings = DownloadSettings()):
        self.client = client
        self.settings = settings

    def sync(
        self, store: SeriesStore, symbols: Sequence[str], timeframes: Sequence[str], window: Window
    ) -> dict[str, dict]:
        reports = sync_candles(
            self.client, store, symbols, timeframes, window.start_ms, window.end_ms, self.settings
        )
        return checked_reports(store, reports, window, lambda key: self.held(store, key))

    def sync_funding(
        self, store: SeriesStore, symbols: Sequence[str], window: Window
    ) -> dict[str, dict]:
        reports = sync_funding_rates(
            self.client, store, symbols, window.start_ms, window.end_ms, self.settings
        )
        return {report.key: report.to_dict() for report in reports}

    def held(self, store: SeriesStore, key: str) -> str:
        return f"the exchange ({self.client.host}) gave none there; {stored_range(store, key)}"


def exchange_provenance(
    client: ExchangeClient, kind: str, symbol: str, timeframe: str | None
) -> dict:
    return {
        "kind": kind,
        "source": "exchange",
        "exchange": client.exchange_id,
        "api_url": client.api_url or client.exchange.urls.get("api", {}).get("fapiPublic"),
        "symbol": symbol,
        "timeframe": timeframe,
    }


def sync_candles(
    client: ExchangeClient,
    store: SeriesStore,
    symbols: Sequence[str],
    timeframes: Sequence[str],
    start_ms: int,
    end_ms: int | None,
    settings: DownloadSettings = DownloadSettings(),
) -> list[SeriesReport]:
    """Bring every (symbol, timeframe) series of `store` up to `end_ms` (None: the exchange's
    now). Fails before any candle is fetched on an unknown symbol or timeframe, on a window that
    ends before the market's listing, or on a series of another exchange or market."""
    markets = checked_markets(client, store, symbols, timeframes, "candles")
    end_ms = checked_end(client, start_ms, end_ms)
    check_listed(client, markets.values(), timeframes, start_ms, end_ms)

    def task(
        market: dict, timeframe: str
    ) -> Callable[[ExchangeClient, int, threading.Event], SeriesReport]:
        return lambda worker, position, stop: _download_candle_series(
            worker, store, market, timeframe, start_ms, end_ms, settings, position, stop
        )

    # the longest series (the shortest timeframe) first, so that they run side by side
    by_length = sorted(timeframes, key=timeframe_to_milliseconds)
    return run_series(
        client, [task(markets[s], tf) for tf in by_length for s in symbols], settings.max_workers
    )


def sync_funding_rates(
    client: ExchangeClient,
    store: SeriesStore,
    symbols: Sequence[str],
    start_ms: int,
    end_ms: int | None,
    settings: DownloadSettings = DownloadSettings(),
) -> list[SeriesReport]:
    """Bring the funding settlements of every symbol (key `BTC_USDT`) up to `end_ms`."""
    markets = checked_markets(client, store, symbols, [], "funding_rates")
    end_ms = checked_end(client, start_ms, end_ms)

    def task(market: dict) -> Callable[[ExchangeClient, int, threading.Event], SeriesReport]:
        def download(worker: ExchangeClient, position: int, stop: threading.Event) -> SeriesReport:
            key = funding_key(market["symbol"])
            report = SeriesReport(key, "funding_rates", "exchange")
            began = time.perf_counter()
            provenance = exchange_provenance(worker, "funding_rates", market["symbol"], None)
            with store.lock(key):
                last = store.last_timestamp(key)
                since = start_ms if last is None else max(start_ms, _ms(last) + 1)
                download_funding_range(
                    worker, store, key, market, since, end_ms, lambda: provenance, report, stop
                )
                report.finish(store, began, time.perf_counter())
            return report

        return download

    return run_series(client, [task(markets[s]) for s in symbols], settings.max_workers)


# ------------------------------------------------------------------ checks before any download


def checked_markets(
    client: ExchangeClient,
    store: SeriesStore,
    symbols: Sequence[str],
    timeframes: Sequence[str],
    kind: str,
) -> dict[str, dict]:
    """Load the markets; the market of every symbol (BadSymbol for an unknown one), every
    timeframe checked, every stored series checked to be of this exchange and market."""
    client.load()
    markets = {symbol: client.market(symbol) for symbol in symbols}
    for timeframe in timeframes:
        client.check_timeframe(timeframe)
    for market in markets.values():
        symbol = market["symbol"]
        if kind == "funding_rates":
            provenance = exchange_provenance(client, kind, symbol, None)
            store.check_provenance(funding_key(symbol), provenance)
        for timeframe in timeframes:
            provenance = exchange_provenance(client, kind, symbol, timeframe)
            store.check_provenance(series_key(symbol, timeframe), provenance)
    return markets


def checked_end(client: ExchangeClient, start_ms: int, end_ms: int | None) -> int:
    now = client.now_ms()
    end_ms = now if end_ms is None else min(end_ms, now)
    if start_ms >= end_ms:
        raise ValueError(
            f"start {_iso(start_ms)} is not before the end {_iso(end_ms)} (the exchange's clock)"
        )
    return end_ms


def check_listed(
    client: ExchangeClient, markets, timeframes: Sequence[str], start_ms: int, end_ms: int
) -> None:
    """EmptyWindowError at once when the window ends before a market's listing."""
    listed = {
        series_key(m["symbol"], tf): _timestamp(int(m["created"])).strftime("%Y-%m-%d %H:%M UTC")
        for m in markets
        if m.get("created") and end_ms <= int(m["created"])
        for tf in timeframes
    }
    if listed:
        window = Window(_timestamp(start_ms), _timestamp(end_ms))
        raise EmptyWindowError(
            empty_window_message(
                list(listed), window, lambda key: f"listed on the exchange on {listed[key]}"
            )
        )


# ------------------------------------------------------------------ one series


def _download_candle_series(
    client: ExchangeClient,
    store: SeriesStore,
    market: dict,
    timeframe: str,
    start_ms: int,
    end_ms: int,
    settings: DownloadSettings,
    position: int,
    stop_event: threading.Event,
) -> SeriesReport:
    key = series_key(market["symbol"], timeframe)
    provenance = exchange_provenance(client, "candles", market["symbol"], timeframe)
    report = SeriesReport(key, "candles", "exchange")
    began = time.perf_counter()
    with store.lock(key):
        last = store.last_timestamp(key)
        since = align_up(start_ms, timeframe)
        if last is not None:
            since = max(since, _ms(last) + timeframe_to_milliseconds(timeframe))
        download_candle_range(
            client, store, key, market, timeframe, since, end_ms, lambda: provenance, report,
            settings, position, stop_event,
        )  # fmt: skip
        report.finish(store, began, time.perf_counter())
    return report


def download_candle_range(
    client: ExchangeClient,
    store: SeriesStore,
    key: str,
    market: dict,
    timeframe: str,
    since_ms: int,
    end_ms: int,
    provenance: Provenance,
    report: SeriesReport,
    settings: DownloadSettings,
    position: int = 0,
    stop_event: threading.Event | None = None,
) -> int:
    """Page the closed candles opening in [since_ms, end_ms) into the store (the caller holds
    the series' lock), committing every `commit_every_pages` pages; gaps go to `report`.
    -> candles stored."""
    step = timeframe_to_milliseconds(timeframe)
    requests0, retries0 = client.stats.requests, client.stats.retries
    stop = min(end_ms, client.now_ms() - step + 1)  # only candles that have closed
    last = store.last_timestamp(key)
    previous_open = _ms(last) if last is not None and _ms(last) < since_ms else None
    pending: list[np.ndarray] = []
    added = 0
    bar = progress_bar(key, max(0, -(-(stop - since_ms) // step)), position, settings.progress)
    try:
        pages = candle_pages(
            client, market["symbol"], timeframe, since_ms, stop,
            expect_data=market.get("active") is not False and not settings.empty_page_is_end,
            listed_ms=market.get("created"),
            limit=settings.candles_per_request,
        )  # fmt: skip
        for page in pages:
            opens = page[:, 0].astype("int64")
            previous_open = record_gaps(report, opens, previous_open, step)
            pending.append(page)
            next_since = int(opens[-1]) + step
            bar.total = bar.n + len(page) + max(0, -(-(stop - next_since) // step))
            bar.update(len(page))
            if len(pending) >= settings.commit_every_pages:
                added += _commit_candles(store, key, pending, provenance())
            if stop_event is not None and stop_event.is_set():
                break
        added += _commit_candles(store, key, pending, provenance())
    finally:
        bar.close()
        report.requests += client.stats.requests - requests0
        report.retries += client.stats.retries - retries0
        report.added += added
        report.rest_candles += added
    return added


def download_funding_range(
    client: ExchangeClient,
    store: SeriesStore,
    key: str,
    market: dict,
    since_ms: int,
    end_ms: int,
    provenance: Provenance,
    report: SeriesReport,
    stop_event: threading.Event | None = None,
) -> int:
    """The funding settlements in [since_ms, end_ms) into the store, a page at a time (the
    caller holds the series' lock). -> settlements stored."""
    requests0, retries0 = client.stats.requests, client.stats.retries
    stop = min(end_ms, client.now_ms() + 1)
    added = 0
    try:
        for page in funding_rate_pages(client, market["symbol"], since_ms, stop):
            frame = pd.DataFrame(
                {
                    "timestamp": epoch_to_timestamps(page[:, 0].astype("int64"), unit="ms"),
                    "funding_rate": page[:, 1],
                }
            )
            added += store.append(key, frame, provenance())
            if stop_event is not None and stop_event.is_set():
                break
    finally:
        report.requests += client.stats.requests - requests0
        report.retries += client.stats.retries - retries0
        report.added += added
        report.rest_candles += added
    return added


def candles_frame(rows: np.ndarray) -> pd.DataFrame:
    """A float64 array (n, 10) in the order of CANDLE_COLUMNS (open time in ms) -> a candle table."""
    return pd.DataFrame(
        {"timestamp": epoch_to_timestamps(rows[:, 0].astype("int64"), unit="ms")}
        | {name: rows[:, i] for i, name in enumerate(CANDLE_COLUMNS[1:], start=1)}
    )


def _commit_candles(
    store: SeriesStore, key: str, pending: list[np.ndarray], provenance: dict
) -> int:
    if not pending:
        return 0
    rows = np.concatenate(pending)
    pending.clear()
    return store.append(key, candles_frame(rows), provenance)


def record_gaps(
    report: SeriesReport, opens: np.ndarray, previous_open: int | None, step: int
) -> int:
    """Note every jump of more than one timeframe between consecutive candles (and from the
    stored candle before them, `previous_open`); -> last open."""
    chain = opens if previous_open is None else np.concatenate([[previous_open], opens])
    jumps = np.diff(chain)
    for index in np.flatnonzero(jumps > step):
        missing = int(-(-jumps[index] // step) - 1)  # grid slots strictly inside the jump
        report.record_gap(_iso(int(chain[index]) + step), missing)
        logger.warning(
            "%s: %d candles missing from %s on the exchange",
            report.key,
            missing,
            _iso(int(chain[index]) + step),
        )
    return int(opens[-1])


# ------------------------------------------------------------------ helpers


def run_series(
    client: ExchangeClient,
    tasks: list[Callable[[ExchangeClient, int, threading.Event], SeriesReport]],
    max_workers: int,
) -> list[SeriesReport]:
    """Run the series' downloads, `max_workers` at a time, each with a connection of its own;
    on the first failure the others commit what they have and stop, and the failure is raised."""
    stop = threading.Event()
    if max_workers <= 1 or len(tasks) <= 1:
        reports = [task(client, position, stop) for position, task in enumerate(tasks)]
    else:
        pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="download")
        futures = [
            pool.submit(task, client.clone(), position, stop) for position, task in enumerate(tasks)
        ]
        try:
            reports = [future.result() for future in futures]
        except BaseException:
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    for report in reports:  # after the progress bars: one line per series
        logger.info(report.line())
    return reports


def progress_bar(
    key: str, total: int, position: int, enabled: bool, unit: str = " candles"
) -> tqdm:
    return tqdm(
        total=total,
        desc=key,
        unit=unit,
        unit_scale=True,
        position=position,
        leave=True,
        disable=not enabled,
        mininterval=0.5,
        dynamic_ncols=True,
    )


def align_up(ms: int, timeframe: str) -> int:
    """The first candle open time of the timeframe at or after `ms`."""
    step = timeframe_to_milliseconds(timeframe)
    offset = timeframe_offset_milliseconds(timeframe)
    return offset + -((offset - ms) // step) * step


def _timestamp(ms: int) -> pd.Timestamp:
    return pd.Timestamp(ms, unit="ms", tz="UTC")


def _ms(stamp: pd.Timestamp) -> int:
    return int(stamp.value // 1_000_000)  # .value is in nanoseconds whatever the unit


def _iso(ms: int) -> str:
    return _timestamp(ms).isoformat()
