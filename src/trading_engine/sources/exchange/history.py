"""Paging through the exchange's history with our own loop.

ccxt's built-in `paginate` is not used: it starts from ccxt's own clock, silently drops a
malformed page and can leave holes. Here each page asks for `limit` candles (the exchange
module's default, 1000 on Binance) from the open time we expect next; the next request starts
one timeframe after the last open time received. Rows outside [since, stop) are dropped, duplicates are dropped (the first copy is
kept), and the pages come out sorted, so that consecutive pages never overlap.

When is an empty page believable? `stop` never exceeds `now - timeframe + 1`, so every request
starts at an open time whose candle has closed on the exchange's clock. Binance answers such a
request with the candles from `startTime` on, or, before a symbol's listing, with its first
candles; it answers `[]` only for a market that no longer trades, or when `endTime` (sent on the
last page only) falls before the listing. So for an active market an empty page (or one with
nothing at or after `since`) is a failure, retried like a network error
(`ExchangeClient.fetch_candles(expect_data=True)`), never taken for the end of history. A page
whose rows all open at or after `stop` means the exchange has nothing before `stop`: a gap that
reaches the end of the range, and the loop ends there. (One case stays ambiguous: an exchange
outage that covers the whole last page, from `since` to `end`; it fails after the retries, with
the data fetched so far committed.)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from trading_engine.data.schema import timeframe_to_milliseconds
from trading_engine.sources.exchange.client import ExchangeClient


def candle_pages(
    client: ExchangeClient,
    symbol: str,
    timeframe: str,
    since_ms: int,
    stop_ms: int,
    *,
    expect_data: bool = True,
    listed_ms: int | None = None,
    limit: int | None = None,
) -> Iterator[np.ndarray]:
    """Pages of candles with `since_ms <= open < stop_ms`, each a float64 array (n, 10) in the
    order of `data.schema.CANDLE_COLUMNS` (open time in ms, OHLCV, order flow), sorted and
    unique; no page overlaps another. `limit`: candles a request (None: the exchange's default).
    `expect_data=False` (a market that no longer trades) accepts an empty page as the end;
    so does a last page that ends before the market's listing (`listed_ms`)."""
    step = timeframe_to_milliseconds(timeframe)
    limit = limit or client.venue.CANDLES_PER_REQUEST
    while since_ms < stop_ms:
        # endTime only on the last page, so that the exchange does not send candles past stop.
        until = stop_ms - 1 if since_ms + limit * step > stop_ms else None
        before_listing = until is not None and listed_ms is not None and until < listed_ms
        rows = client.fetch_candles(
            symbol,
            timeframe,
            since_ms,
            until,
            limit,
            expect_data=expect_data and not before_listing,
        )
        rows = _unique_in_range(rows, since_ms, stop_ms)
        if not len(rows):
            return  # everything the exchange has from since_ms on opens at or after stop_ms
        yield rows
        since_ms = int(rows[-1, 0]) + step


def funding_rate_pages(
    client: ExchangeClient, symbol: str, since_ms: int, stop_ms: int
) -> Iterator[np.ndarray]:
    """Pages of funding settlements with `since_ms <= time < stop_ms`, each a float64 array
    (n, 2) of settlement time (ms) and rate, sorted and unique. The endpoint answers the
    settlements from `startTime` on; a short page is the last one."""
    while since_ms < stop_ms:
        rows = client.fetch_funding_rates(symbol, since_ms, stop_ms - 1)
        complete_page = len(rows) >= client.venue.FUNDING_RATES_PER_REQUEST
        rows = _unique_in_range(rows, since_ms, stop_ms)
        if not len(rows):
            return
        yield rows
        if not complete_page:
            return
        since_ms = int(rows[-1, 0]) + 1


def _unique_in_range(rows: np.ndarray, since_ms: int, stop_ms: int) -> np.ndarray:
    times = rows[:, 0]
    rows = rows[(times >= since_ms) & (times < stop_ms)]
    _, first = np.unique(rows[:, 0], return_index=True)  # sorted by time, first copy kept
    return rows[first]
