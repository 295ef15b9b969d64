"""Bring stored series up to date from the exchange: incremental, chunked, crash-safe.

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

The store refuses to mix sources: a series made by the synthetic generator or imported from
files is never extended with exchange data (`ProvenanceConflictError`, raised before any
candle is fetched).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from trading_engine.data.schema import (
    CANDLE_COLUMNS,
    epoch_to_timestamps,
    series_key,
    timeframe_offset_milliseconds,
    timeframe_to_milliseconds,
)
from trading_engine.data.storage import SeriesStore
from trading_engine.exchange.client import ExchangeClient
from trading_engine.exchange.history import candle_pages, funding_rate_pages
from trading_engine.progress import tqdm

logger = logging.getLogger(__name__)
MAX_LISTED_GAPS = 100


@dataclass(frozen=True)
class DownloadSettings:
    # Candles a request. Binance weighs klines by limit: <100: 1, <500: 2, <=1000: 5, >1000: 10,
    # so 1000 (weight 5, ccxt's cap) gives 200 candles a weight and 499 (weight 2) 250, if the
    # connections can send the 2.5x more requests that it needs.
    candles_per_request: int = 1000
    commit_every_pages: int = 20  # a crash loses at most this many pages
    max_workers: int = 3  # series downloaded at once, one connection each
    progress: bool = True


@dataclass
class SeriesReport:
    """What one run did to one stored series."""

    key: str
    kind: str  # "candles" | "funding_rates"
    added: int = 0
    stored_from: str | None = None
    stored_to: str | None = None
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    gap_count: int = 0
    missing_candles: int = 0
    longest_gap: int = 0  # in candles
    gaps: list[dict] = field(default_factory=list)  # the first MAX_LISTED_GAPS: {"from", "missing"}

    def line(self) -> str:
        rate = self.added / self.seconds if self.seconds > 0 else 0.0
        unit = "candles" if self.kind == "candles" else "funding rates"
        stored = (
            f"stored {self.stored_from} -> {self.stored_to}"
            if self.stored_from
            else "nothing stored"
        )
        text = (
            f"{self.key}: +{self.added:,} {unit} in {self.seconds:.1f} s ({rate:,.0f}/s), "
            f"{self.requests} requests, {self.retries} retries; {stored}"
        )
        if self.kind == "candles":
            text += f"; {self.gap_count} gaps"
            if self.gap_count:
                text += f" ({self.missing_candles:,} candles missing, longest {self.longest_gap:,})"
        return text

    def to_dict(self) -> dict:
        return asdict(self)


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
    now). Fails before any candle is fetched on an unknown symbol or timeframe, or on a series
    that another source made."""
    client.load()
    markets = {symbol: client.market(symbol) for symbol in symbols}
    for timeframe in timeframes:
        client.check_timeframe(timeframe)
    for market in markets.values():
        for timeframe in timeframes:
            key = series_key(market["symbol"], timeframe)
            store.check_provenance(
                key, exchange_provenance(client, "candles", market["symbol"], timeframe)
            )
    end_ms = _checked_end(client, start_ms, end_ms)

    def task(
        market: dict, timeframe: str
    ) -> Callable[[ExchangeClient, int, threading.Event], SeriesReport]:
        return lambda worker, position, stop: _download_candle_series(
            worker, store, market, timeframe, start_ms, end_ms, settings, position, stop
        )

    # the longest series (the shortest timeframe) first, so that they run side by side
    by_length = sorted(timeframes, key=timeframe_to_milliseconds)
    return _run(
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
    client.load()
    markets = [client.market(symbol) for symbol in symbols]
    for market in markets:
        store.check_provenance(
            funding_key(market["symbol"]),
            exchange_provenance(client, "funding_rates", market["symbol"], None),
        )
    end_ms = _checked_end(client, start_ms, end_ms)

    def task(market: dict) -> Callable[[ExchangeClient, int, threading.Event], SeriesReport]:
        return lambda worker, position, stop: _download_funding_series(
            worker, store, market, start_ms, end_ms, settings, position, stop
        )

    return _run(client, [task(m) for m in markets], settings.max_workers)


def funding_key(symbol: str) -> str:
    """'BTC/USDT:USDT' -> 'BTC_USDT', the key of a perpetual's funding series."""
    return series_key(symbol, "1m").rsplit("_", 1)[0]


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
    symbol = market["symbol"]
    key = series_key(symbol, timeframe)
    step = timeframe_to_milliseconds(timeframe)
    provenance = exchange_provenance(client, "candles", symbol, timeframe)
    report = SeriesReport(key, "candles")
    began, requests0, retries0 = time.perf_counter(), client.stats.requests, client.stats.retries
    with store.lock(key):
        last = store.last_timestamp(key)
        since = _align_up(start_ms, timeframe)
        if last is not None:
            since = max(since, _ms(last) + step)
        # only candles that have closed on the exchange's clock
        stop = min(end_ms, client.now_ms() - step + 1)
        previous_open = _ms(last) if last is not None else None
        pending: list[np.ndarray] = []
        bar = _progress_bar(key, max(0, -(-(stop - since) // step)), position, settings.progress)
        try:
            pages = candle_pages(
                client, symbol, timeframe, since, stop,
                expect_data=market.get("active") is not False, listed_ms=market.get("created"),
                limit=settings.candles_per_request,
            )  # fmt: skip
            for page in pages:
                opens = page[:, 0].astype("int64")
                previous_open = _record_gaps(report, opens, previous_open, step)
                pending.append(page)
                next_since = int(opens[-1]) + step
                bar.total = bar.n + len(page) + max(0, -(-(stop - next_since) // step))
                bar.update(len(page))
                if len(pending) >= settings.commit_every_pages:
                    report.added += _commit_candles(store, key, pending, provenance)
                if stop_event.is_set():
                    break
            report.added += _commit_candles(store, key, pending, provenance)
        finally:
            bar.close()
        _finish(report, store, key, client, began, requests0, retries0)
    return report


def _download_funding_series(
    client: ExchangeClient,
    store: SeriesStore,
    market: dict,
    start_ms: int,
    end_ms: int,
    settings: DownloadSettings,
    position: int,
    stop_event: threading.Event,
) -> SeriesReport:
    symbol = market["symbol"]
    key = funding_key(symbol)
    provenance = exchange_provenance(client, "funding_rates", symbol, None)
    report = SeriesReport(key, "funding_rates")
    began, requests0, retries0 = time.perf_counter(), client.stats.requests, client.stats.retries
    with store.lock(key):
        last = store.last_timestamp(key)
        since = start_ms if last is None else max(start_ms, _ms(last) + 1)
        stop = min(end_ms, client.now_ms() + 1)
        for page in funding_rate_pages(client, symbol, since, stop):
            frame = pd.DataFrame(
                {
                    "timestamp": epoch_to_timestamps(page[:, 0].astype("int64"), unit="ms"),
                    "funding_rate": page[:, 1],
                }
            )
            report.added += store.append(key, frame, provenance)
            if stop_event.is_set():
                break
        _finish(report, store, key, client, began, requests0, retries0)
    return report


def _commit_candles(
    store: SeriesStore, key: str, pending: list[np.ndarray], provenance: dict
) -> int:
    if not pending:
        return 0
    rows = np.concatenate(pending)
    pending.clear()
    frame = pd.DataFrame(
        {"timestamp": epoch_to_timestamps(rows[:, 0].astype("int64"), unit="ms")}
        | {name: rows[:, i] for i, name in enumerate(CANDLE_COLUMNS[1:], start=1)}
    )
    return store.append(key, frame, provenance)


def _record_gaps(
    report: SeriesReport, opens: np.ndarray, previous_open: int | None, step: int
) -> int:
    """Note every jump of more than one timeframe between consecutive candles; -> last open."""
    chain = opens if previous_open is None else np.concatenate([[previous_open], opens])
    jumps = np.diff(chain)
    for index in np.flatnonzero(jumps > step):
        missing = int(-(-jumps[index] // step) - 1)  # grid slots strictly inside the jump
        report.gap_count += 1
        report.missing_candles += missing
        report.longest_gap = max(report.longest_gap, missing)
        if len(report.gaps) < MAX_LISTED_GAPS:
            report.gaps.append({"from": _iso(int(chain[index]) + step), "missing": missing})
        logger.warning(
            "%s: %d candles missing from %s on the exchange",
            report.key,
            missing,
            _iso(int(chain[index]) + step),
        )
    return int(opens[-1])


def _finish(
    report: SeriesReport,
    store: SeriesStore,
    key: str,
    client: ExchangeClient,
    began: float,
    requests0: int,
    retries0: int,
) -> None:
    report.seconds = time.perf_counter() - began
    report.requests = client.stats.requests - requests0
    report.retries = client.stats.retries - retries0
    first, last = store.first_timestamp(key), store.last_timestamp(key)
    report.stored_from = None if first is None else first.isoformat()
    report.stored_to = None if last is None else last.isoformat()


# ------------------------------------------------------------------ helpers


def _run(
    client: ExchangeClient,
    tasks: list[Callable[[ExchangeClient, int, threading.Event], SeriesReport]],
    max_workers: int,
) -> list[SeriesReport]:
    """Run the series' downloads, `max_workers` at a time; on the first failure the others
    commit what they have and stop, and the failure is raised."""
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


def _checked_end(client: ExchangeClient, start_ms: int, end_ms: int | None) -> int:
    now = client.now_ms()
    end_ms = now if end_ms is None else min(end_ms, now)
    if start_ms >= end_ms:
        raise ValueError(
            f"start {_iso(start_ms)} is not before the end {_iso(end_ms)} (the exchange's clock)"
        )
    return end_ms


def _progress_bar(key: str, total: int, position: int, enabled: bool) -> tqdm:
    return tqdm(
        total=total,
        desc=key,
        unit=" candles",
        unit_scale=True,
        position=position,
        leave=True,
        disable=not enabled,
        mininterval=0.5,
        dynamic_ncols=True,
    )


def _align_up(ms: int, timeframe: str) -> int:
    step = timeframe_to_milliseconds(timeframe)
    offset = timeframe_offset_milliseconds(timeframe)
    return offset + -((offset - ms) // step) * step


def _ms(stamp: pd.Timestamp) -> int:
    return int(stamp.value // 1_000_000)  # .value is in nanoseconds whatever the unit


def _iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()
