"""The exchange's public archive of zipped CSVs (Binance's data.binance.vision), then REST for
what the archive does not have yet.

Per series, from the last stored candle (or the window's start, or the market's listing):

1. complete months from the monthly files; the days of the current month (and of a month the
   window or the store cuts) from the daily files;
2. a 404 means "not published yet": a missing monthly file is replaced by its daily files, a
   missing daily file by the REST API (the ccxt client) for that day;
3. the REST API for what no file can hold yet: today's candles up to the last closed one.

Every file is downloaded with its `.CHECKSUM` and verified (SHA-256) before it is parsed, let
alone stored. A mismatch, a truncated file, a 5xx or a dropped connection is fetched again
with the REST path's retry policy (exponential backoff); if it still fails, the run fails naming
the file, and what was verified before it stays stored. A host that never answers fails in
seconds, naming it (`HostUnreachableError`).

Downloads run in a bounded pool (`max_connections`); each download also verifies, unzips and
parses its file (pyarrow's CSV reader; files with and without a header row; ms or us times), so
that the series' own thread only stores results, in time order. Memory is bounded by the files
in flight, whatever the number of months.

Incremental and crash-safe like the REST path: files are stored in time order, each commit an
atomic rewrite of one month (`SeriesStore.append`), so the stored series is always a prefix of
the history and a killed run resumes from its last candle. Archive and REST candles of one
market are one series (the store's identity is exchange + market). Candles that came over REST
because their file was not published yet are marked (`unverified_from` in the provenance): the
next run fetches their daily files when they appear, compares the two copies
(`data.quality.compare_candles`, reported per series as `disagreements`, which the data-quality
report shows) and keeps the archive's. Funding rates: the monthly `fundingRate` files for
complete months, then REST.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import random
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlparse

import pandas as pd
import requests

from trading_engine.data.quality import compare_candles, merge_comparisons
from trading_engine.data.schema import (
    funding_key,
    series_key,
    timeframe_to_milliseconds,
)
from trading_engine.data.storage import SeriesStore
from trading_engine.sources.base import (
    SeriesReport,
    Window,
    checked_reports,
    stored_range,
)
from trading_engine.sources.exchange import binance
from trading_engine.sources.exchange.client import ExchangeClient, Reachability, RetryPolicy
from trading_engine.sources.exchange.download import (
    DownloadSettings,
    align_up,
    check_listed,
    checked_end,
    checked_markets,
    download_candle_range,
    download_funding_range,
    progress_bar,
    record_gaps,
    run_series,
)

logger = logging.getLogger(__name__)
DAY_MS = 86_400_000


class ArchiveFileError(RuntimeError):
    """An archive file that could not be fetched intact; the files before it are stored."""


@dataclass(frozen=True)
class ArchiveSettings:
    base_url: str = binance.ARCHIVE_BASE_URL
    max_connections: int = 8  # files downloaded at once, over all series
    timeout_s: float = 30.0  # per request


@dataclass(frozen=True)
class Piece:
    """One archive file: its path under the base URL and the candles (or settlements) it holds,
    opening in [start_ms, end_ms)."""

    kind: str  # "monthly" | "daily"
    start_ms: int
    end_ms: int
    path: str

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class Fetched:
    """A verified, parsed archive file; `frame=None` when it is not published (404)."""

    piece: Piece
    frame: pd.DataFrame | None
    nbytes: int = 0


class ArchiveSource:
    """`ingestion.source: archive` (see the module docstring)."""

    name = "archive"
    has_funding = True

    def __init__(
        self,
        client: ExchangeClient,
        settings: ArchiveSettings | None = None,
        download: DownloadSettings | None = None,
    ) -> None:
        self.client = client
        self.settings = settings or ArchiveSettings()
        self.download = download or DownloadSettings()

    def sync(
        self, store: SeriesStore, symbols: Sequence[str], timeframes: Sequence[str], window: Window
    ) -> dict[str, dict]:
        unknown = [tf for tf in timeframes if tf not in self.client.venue.ARCHIVE_INTERVALS]
        if unknown:
            raise ValueError(
                f"the archive has no klines of {', '.join(unknown)}; it has "
                f"{', '.join(self.client.venue.ARCHIVE_INTERVALS)} (or use ingestion.source: exchange)"
            )
        markets = checked_markets(self.client, store, symbols, timeframes, "candles")
        end_ms = checked_end(self.client, window.start_ms, window.end_ms)
        check_listed(self.client, markets.values(), timeframes, window.start_ms, end_ms)
        by_length = sorted(timeframes, key=timeframe_to_milliseconds)
        with ArchiveFetcher(self.settings, self.client.retry) as fetcher:
            tasks = [
                self._candle_task(fetcher, store, markets[s], tf, window.start_ms, end_ms)
                for tf in by_length
                for s in symbols
            ]
            reports = run_series(self.client, tasks, self.download.max_workers)
        return checked_reports(store, reports, window, lambda key: self.held(store, key))

    def sync_funding(
        self, store: SeriesStore, symbols: Sequence[str], window: Window
    ) -> dict[str, dict]:
        markets = checked_markets(self.client, store, symbols, [], "funding_rates")
        end_ms = checked_end(self.client, window.start_ms, window.end_ms)
        with ArchiveFetcher(self.settings, self.client.retry) as fetcher:
            tasks = [
                self._funding_task(fetcher, store, markets[s], window.start_ms, end_ms)
                for s in symbols
            ]
            reports = run_series(self.client, tasks, self.download.max_workers)
        return {report.key: report.to_dict() for report in reports}

    def held(self, store: SeriesStore, key: str) -> str:
        return (
            f"neither the archive ({self.settings.base_url}) nor the exchange "
            f"({self.client.host}) gave any there; {stored_range(store, key)}"
        )

    def provenance(self, client: ExchangeClient, kind: str, symbol: str, tf: str | None) -> dict:
        return {
            "kind": kind,
            "source": self.name,
            "exchange": client.exchange_id,
            "archive_url": self.settings.base_url,
            "symbol": symbol,
            "timeframe": tf,
        }

    # ------------------------------------------------------------------ candles of one series

    def _candle_task(
        self,
        fetcher: ArchiveFetcher,
        store: SeriesStore,
        market: dict,
        timeframe: str,
        start_ms: int,
        end_ms: int,
    ) -> Callable[[ExchangeClient, int, threading.Event], SeriesReport]:
        def task(client: ExchangeClient, position: int, stop_event: threading.Event) -> SeriesReport:
            key = series_key(market["symbol"], timeframe)
            with store.lock(key):
                return _CandleSync(
                    self, fetcher, client, store, market, timeframe, position, stop_event
                ).run(start_ms, end_ms)

        return task

    # ------------------------------------------------------------------ funding of one symbol

    def _funding_task(
        self, fetcher: ArchiveFetcher, store: SeriesStore, market: dict, start_ms: int, end_ms: int
    ) -> Callable[[ExchangeClient, int, threading.Event], SeriesReport]:
        def task(client: ExchangeClient, position: int, stop_event: threading.Event) -> SeriesReport:
            symbol, market_id = market["symbol"], market["id"]
            key = funding_key(symbol)
            report = SeriesReport(key, "funding_rates", self.name)
            began = time.perf_counter()
            archive = self.provenance(client, "funding_rates", symbol, None)
            rest = {**archive, "source": "exchange", "api_url": client.api_url}
            with store.lock(key):
                last = store.last_timestamp(key)
                since = max(start_ms, int(market.get("created") or 0))
                if last is not None:
                    since = max(since, _ms(last) + 1)
                months = [
                    Piece("monthly", a, b, binance.monthly_funding_path(market_id, *_year_month(a)))
                    for a, b in _months(since, min(end_ms, _month_floor(client.now_ms())))
                ]
                for fetched in fetcher.in_order(months, binance.read_funding_csv):
                    if fetched.frame is None:
                        report.archive_not_published += 1
                        break  # the rest over REST
                    _count_file(report, fetched)
                    frame = fetched.frame
                    times = frame["timestamp"]
                    inside = (times >= _timestamp(since)) & (times < _timestamp(end_ms))
                    report.added += store.append(key, frame[inside.to_numpy()], archive)
                    since = max(since, fetched.piece.end_ms)
                    if stop_event.is_set():
                        break
                last = store.last_timestamp(key)
                if last is not None:
                    since = max(since, _ms(last) + 1)
                download_funding_range(
                    client, store, key, market, since, end_ms, lambda: rest, report, stop_event
                )
                report.finish(store, began, time.perf_counter())
            return report

        return task


class _CandleSync:
    """The archive, then REST, for one candle series (the caller holds its lock)."""

    def __init__(
        self,
        source: ArchiveSource,
        fetcher: ArchiveFetcher,
        client: ExchangeClient,
        store: SeriesStore,
        market: dict,
        timeframe: str,
        position: int,
        stop_event: threading.Event,
    ) -> None:
        self.fetcher, self.client, self.store, self.market = fetcher, client, store, market
        self.timeframe, self.position, self.stop_event = timeframe, position, stop_event
        self.key = series_key(market["symbol"], timeframe)
        self.step = timeframe_to_milliseconds(timeframe)
        self.download = source.download
        self.archive_provenance = source.provenance(client, "candles", market["symbol"], timeframe)
        self.rest_provenance = {
            **self.archive_provenance,
            "source": "exchange",
            "api_url": client.api_url,
        }
        self.report = SeriesReport(self.key, "candles", source.name)
        stored = store.provenance(self.key) or {}
        self.unverified = _ms_or_none(stored.get("unverified_from"))
        last = store.last_timestamp(self.key)
        self.stored_last = None if last is None else _ms(last)
        self.previous_open = self.stored_last

    def run(self, start_ms: int, end_ms: int) -> SeriesReport:
        began = time.perf_counter()
        first = align_up(max(start_ms, int(self.market.get("created") or 0)), self.timeframe)
        resume = first if self.stored_last is None else max(first, self.stored_last + self.step)
        if self.unverified is not None and self.unverified >= first:
            resume = min(resume, self.unverified)  # fetch the files of REST's candles
        now = self.client.now_ms()
        stop = min(end_ms, now - self.step + 1)  # only candles that have closed
        interval = self.client.exchange.timeframes[self.timeframe]
        pieces = plan_pieces(self.market["id"], interval, resume, stop, now, self.step)
        bar = progress_bar(self.key, len(pieces), self.position, self.download.progress, " files")
        pending_rest: list[int] | None = None  # [start, end) of days to fetch over REST
        # this series' share of the downloads in flight, so that memory stays bounded
        lookahead = math.ceil(self.fetcher.max_connections / max(1, self.download.max_workers)) + 1
        try:
            for fetched in self.fetcher.in_order(
                pieces, binance.read_klines_csv, self._daily_pieces, lookahead
            ):
                bar.update(1)
                piece = fetched.piece
                if fetched.frame is None and piece.kind == "daily":
                    self.report.archive_not_published += 1
                    if pending_rest is not None and pending_rest[1] == piece.start_ms:
                        pending_rest[1] = piece.end_ms
                    else:
                        self._fetch_rest(pending_rest, stop)
                        pending_rest = [piece.start_ms, piece.end_ms]
                elif fetched.frame is None:  # a monthly file: its days come next
                    self.report.archive_not_published += 1
                    bar.total += (piece.end_ms - piece.start_ms) // DAY_MS
                else:
                    self._fetch_rest(pending_rest, stop)
                    pending_rest = None
                    self._store_file(fetched, first, stop)
                if self.stop_event.is_set():
                    return self.report
            self._fetch_rest(pending_rest, stop)
            tail = max(resume, today(now))
            self._fetch_rest([tail, stop], stop)
        finally:
            bar.close()
            self.report.finish(self.store, began, time.perf_counter())
        return self.report

    def _daily_pieces(self, piece: Piece) -> list[Piece]:
        """The daily files of a month whose monthly file is not published."""
        if piece.kind != "monthly":
            return []
        interval = self.client.exchange.timeframes[self.timeframe]
        market_id = self.market["id"]
        return [
            Piece("daily", day, day + DAY_MS, binance.daily_klines_path(market_id, interval, *_ymd(day)))
            for day in range(piece.start_ms, piece.end_ms, DAY_MS)
        ]

    def _store_file(self, fetched: Fetched, first: int, stop: int) -> None:
        """Compare with what REST stored of the same candles, then store the file's candles."""
        _count_file(self.report, fetched)
        frame = fetched.frame
        opens = frame["timestamp"].array.asi8 // 1_000  # us -> ms
        piece = fetched.piece
        frame = frame[(opens >= max(first, piece.start_ms)) & (opens < min(stop, piece.end_ms))]
        if frame.empty:
            return
        opens = frame["timestamp"].array.asi8 // 1_000
        if self.stored_last is not None and opens[0] <= self.stored_last:
            stored = self.store.read(
                self.key, _timestamp(int(opens[0])), _timestamp(self.stored_last + 1)
            )
            comparison = compare_candles(stored, frame)
            self.report.disagreements = merge_comparisons(self.report.disagreements, comparison)
            if comparison["candles_differing"]:
                logger.warning(
                    "%s: %s differs from the candles stored over REST on %d of %d candles (%s); "
                    "kept the archive's",
                    self.key, piece.name, comparison["candles_differing"],
                    comparison["candles_compared"], comparison["columns"],
                )  # fmt: skip
        new = opens > (self.stored_last if self.stored_last is not None else -1)
        if new.any():
            self.previous_open = record_gaps(self.report, opens[new], self.previous_open, self.step)
        self.stored_last = max(self.stored_last or 0, int(opens[-1]))
        if self.unverified is not None and self.unverified < piece.end_ms:
            # the candles before the file's end are verified now
            self.unverified = piece.end_ms if self.stored_last >= piece.end_ms else None
        self.store.append(self.key, frame, self._provenance(self.archive_provenance))
        self.report.added += int(new.sum())

    def _fetch_rest(self, span: list[int] | None, stop: int) -> None:
        """Candles of [span) over REST, past what is stored; they stay marked unverified."""
        if span is None:
            return
        since = span[0]
        if self.stored_last is not None:
            since = max(since, self.stored_last + self.step)
        until = min(span[1], stop)
        if since >= until:
            return
        if self.unverified is None or since < self.unverified:
            self.unverified = since if self.unverified is None else min(self.unverified, since)
        download_candle_range(
            self.client, self.store, self.key, self.market, self.timeframe, since, until,
            lambda: self._provenance(self.rest_provenance), self.report, self.download,
            self.position, self.stop_event,
        )  # fmt: skip
        last = self.store.last_timestamp(self.key)
        self.stored_last = None if last is None else _ms(last)
        self.previous_open = self.stored_last

    def _provenance(self, base: dict) -> dict:
        return {**base, "unverified_from": _iso_or_none(self.unverified)}


def plan_pieces(
    market_id: str, interval: str, resume_ms: int, stop_ms: int, now_ms: int, step_ms: int
) -> list[Piece]:
    """The archive files that hold the candles opening in [resume_ms, stop_ms), in time order:
    a monthly file for each month that is over (on the exchange's clock, `now_ms`) and wholly
    wanted (from its first candle to its last, which opens `step_ms` before its end), daily
    files for the other days before today (`now_ms`'s UTC day); nothing for today (REST's)."""
    archive_end = min(stop_ms, today(now_ms))
    current_month = _month_floor(now_ms)
    pieces = []
    day = resume_ms - resume_ms % DAY_MS
    while day < archive_end:
        month, next_month = _month_floor(day), _next_month(_month_floor(day))
        if day == month and next_month <= current_month and next_month - step_ms < stop_ms:
            path = binance.monthly_klines_path(market_id, interval, *_year_month(month))
            pieces.append(Piece("monthly", month, next_month, path))
            day = next_month
        else:
            path = binance.daily_klines_path(market_id, interval, *_ymd(day))
            pieces.append(Piece("daily", day, day + DAY_MS, path))
            day += DAY_MS
    return pieces


# ------------------------------------------------------------------ downloads


class ArchiveFetcher:
    """Downloads archive files in a bounded pool: each with its checksum, verified, unzipped and
    parsed in the pool's thread; `in_order` yields the results in the order asked for."""

    def __init__(self, settings: ArchiveSettings, retry: RetryPolicy, seed: int | None = None):
        self.base_url = settings.base_url.rstrip("/")
        self.host = urlparse(self.base_url).netloc or self.base_url
        self.timeout_s = settings.timeout_s
        self.max_connections = max(1, settings.max_connections)
        self.retry = retry
        self.reachability = Reachability(self.host, "ingestion.archive.base_url")
        self._local_proxies = self.base_url != binance.ARCHIVE_BASE_URL  # a mirror or a test
        self._rng = random.Random(seed)
        self._threads = threading.local()
        self._pool = ThreadPoolExecutor(self.max_connections, thread_name_prefix="archive")
        self.requests = 0

    def __enter__(self) -> ArchiveFetcher:
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def in_order(
        self,
        pieces: Sequence[Piece],
        parse: Callable[[bytes], pd.DataFrame],
        expand: Callable[[Piece], list[Piece]] | None = None,
        lookahead: int | None = None,
    ) -> Iterator[Fetched]:
        """The fetched pieces in order, with up to `lookahead` downloads in flight. A piece that
        is not published is yielded with `frame=None`, followed by `expand(piece)` (e.g. the
        daily files of a month)."""
        queue: deque[tuple[Piece, Future | None]] = deque((p, None) for p in pieces)
        depth = lookahead or self.max_connections
        try:
            while queue:
                for i in range(min(depth, len(queue))):
                    piece, future = queue[i]
                    if future is None:
                        queue[i] = (piece, self._pool.submit(self.fetch, piece, parse))
                piece, future = queue.popleft()
                fetched = future.result()
                yield fetched
                if fetched.frame is None and expand is not None:
                    queue.extendleft((p, None) for p in reversed(expand(piece)))
        finally:
            for _, future in queue:
                if future is not None:
                    future.cancel()

    def fetch(self, piece: Piece, parse: Callable[[bytes], pd.DataFrame]) -> Fetched:
        """Download, verify and parse one file, with retries; `frame=None` on a 404."""
        attempt, began = 0, time.monotonic()
        while True:
            attempt += 1
            try:
                expected = self._get(binance.checksum_path(piece.path))
                if expected is None:
                    return Fetched(piece, None)
                expected_sha = binance.parse_checksum(expected.decode(errors="replace"), piece.name)
                data = self._get(piece.path)
                if data is None:
                    return Fetched(piece, None)
                if hashlib.sha256(data).hexdigest() != expected_sha:
                    raise _Retryable(f"does not match its checksum ({len(data):,} bytes)")
                csv = _unzipped(data)
            except _Retryable as error:
                failure = str(error)
            except requests.RequestException as error:
                reason = self.reachability.failure(error, attempt, self.retry, began)
                failure = reason or f"{type(error).__name__}: {_first_line(error)}"
            else:
                try:
                    frame = parse(csv)
                except ValueError as error:
                    raise ArchiveFileError(
                        f"{piece.name} ({self.base_url}/{piece.path}) matches its checksum but "
                        f"cannot be read: {error}"
                    ) from None
                return Fetched(piece, frame, len(data))
            if attempt >= self.retry.max_attempts:
                raise ArchiveFileError(
                    f"{piece.name} ({self.base_url}/{piece.path}) failed {attempt} times; the last "
                    f"time it {failure}. The verified files before it are stored; run again to "
                    "resume."
                )
            delay = (
                self.retry.unreached_delay_s
                if not self.reachability.reached
                else self.retry.delay(attempt, self._rng)
            )
            logger.warning(
                "%s: %s; retry %d of %d in %.2f s",
                piece.name, failure, attempt, self.retry.max_attempts - 1, delay,
            )  # fmt: skip
            time.sleep(delay)

    def _get(self, path: str) -> bytes | None:
        """The body of a 200, None for a 404; _Retryable for a 5xx, 429 or 408 (after its
        Retry-After), ArchiveFileError for another status."""
        session = getattr(self._threads, "session", None)
        if session is None:
            session = self._threads.session = requests.Session()
            session.trust_env = not self._local_proxies
        self.requests += 1
        response = session.get(f"{self.base_url}/{path}", timeout=self.timeout_s)
        self.reachability.reached = True
        status = response.status_code
        if status == 200:
            return response.content
        if status == 404:
            return None
        if status in (408, 429) or status >= 500:
            retry_after = response.headers.get("Retry-After")
            if retry_after and retry_after.replace(".", "", 1).isdigit():
                time.sleep(min(float(retry_after), self.retry.max_retry_after_s))
            raise _Retryable(f"answered HTTP {status}")
        raise ArchiveFileError(
            f"{self.base_url}/{path} answered HTTP {status} {response.reason}: "
            f"{response.text[:120]!r}"
        )


class _Retryable(Exception):
    """A failed download worth another attempt (a bad checksum, a truncated zip, a 5xx)."""


def _unzipped(data: bytes) -> bytes:
    """The one CSV inside an archive zip; _Retryable when the zip is damaged."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            if len(names) != 1:
                raise _Retryable(f"holds {len(names)} files, expected one CSV")
            return archive.read(names[0])
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise _Retryable(f"is not a readable zip ({error})") from error


def _count_file(report: SeriesReport, fetched: Fetched) -> None:
    report.archive_files += 1
    report.archive_bytes += fetched.nbytes


# ------------------------------------------------------------------ calendar (UTC, epoch ms)


def today(now_ms: int) -> int:
    return now_ms - now_ms % DAY_MS


def _months(since_ms: int, until_ms: int) -> list[tuple[int, int]]:
    """The [start, end) of every calendar month that starts before `until_ms` and ends after
    `since_ms`, wholly before `until_ms`."""
    months, month = [], _month_floor(since_ms)
    while _next_month(month) <= until_ms:
        months.append((month, _next_month(month)))
        month = _next_month(month)
    return months


def _month_floor(ms: int) -> int:
    stamp = _timestamp(ms)
    return _ms(pd.Timestamp(year=stamp.year, month=stamp.month, day=1, tz="UTC"))


def _next_month(month_ms: int) -> int:
    return _ms(_timestamp(month_ms) + pd.offsets.MonthBegin(1))


def _year_month(ms: int) -> tuple[int, int]:
    stamp = _timestamp(ms)
    return stamp.year, stamp.month


def _ymd(ms: int) -> tuple[int, int, int]:
    stamp = _timestamp(ms)
    return stamp.year, stamp.month, stamp.day


def _timestamp(ms: int) -> pd.Timestamp:
    return pd.Timestamp(ms, unit="ms", tz="UTC")


def _ms(stamp: pd.Timestamp) -> int:
    return int(stamp.value // 1_000_000)


def _ms_or_none(iso: str | None) -> int | None:
    return None if not iso else _ms(pd.Timestamp(iso))


def _iso_or_none(ms: int | None) -> str | None:
    return None if ms is None else _timestamp(ms).isoformat()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:160] if text else type(error).__name__
