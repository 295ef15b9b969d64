"""The ccxt client: one exchange connection with market lookup, retries and the weight budget.

`ExchangeClient` wraps a real ccxt exchange (binanceusdm by default) and adds what ccxt leaves
to its caller. What is the exchange's own (endpoints, page caps, weights, the klines layout) is
in the exchange's module (`VENUES`: `binance.py`).

* `api_url`: every `urls['api'][*]` is rewritten to `api_url + path`, so that a loopback server
  receives every request (tests, benchmarks) and nothing leaves the machine; proxies from the
  environment are ignored. Binance's error table is chosen by URL prefix, so local URLs are
  mapped back to the exchange's own prefix to get the same exceptions.
* Market lookup: an unknown symbol (`BadSymbol`) or timeframe (`UnknownTimeframeError`) fails at
  once, listing what the exchange has.
* Retries: ccxt's `OperationFailed` family ("may succeed if retried": `NetworkError`,
  `DDoSProtection` (HTTP 429/418), `RateLimitExceeded`, `ExchangeNotAvailable`,
  `RequestTimeout`) and malformed answers are retried with exponential backoff and jitter;
  a 429/418 `Retry-After` pauses every thread that shares the budget for that long.
* An exchange that was never reached (a DNS failure, a refused or timed-out connection before
  any answer) is not retried for minutes: after `RetryPolicy.unreached_attempts` quick attempts
  the client raises `HostUnreachableError` naming the host. Once the exchange has answered
  (any HTTP status), connection failures get the full retries, as a stumbling exchange needs.
* Malformed answers: on a 200 answer that is not JSON (garbage, an HTML page) ccxt returns `[]`
  or rows of None without raising. The client keeps ccxt's parsed JSON (`last_json_response`,
  None when the body did not parse) and checks every row, so such a page raises
  `MalformedResponseError` (retried) and is never stored. An empty JSON list `[]` is a valid
  answer; whether it is plausible is the pager's call (see `history.py`).
* Candles keep all of a kline's fields (order flow included): they are fetched from the raw
  klines endpoint through ccxt's implicit API, which ccxt throttles and error-maps like its
  unified methods.
* Weight: ccxt's own throttle is replaced by `WeightBudget.acquire(cost)`, where `cost` is the
  endpoint's weight from ccxt's table of Binance's weights (klines 1000 = 5, exchangeInfo 1,
  time 1, fundingRate 1), and each answer's used-weight header is fed back.
"""

from __future__ import annotations

import difflib
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

import ccxt
import numpy as np
import requests

from trading_engine.data.schema import normalise_symbol, timeframe_to_milliseconds
from trading_engine.sources.exchange import binance
from trading_engine.sources.exchange.budget import WeightBudget

logger = logging.getLogger(__name__)

T = TypeVar("T")
# The exchanges whose specifics have a module: ccxt id -> module (see binance.py).
VENUES = {binance.EXCHANGE_ID: binance}


class MalformedResponseError(ccxt.NetworkError):
    """A 200 answer that is not what the endpoint returns (garbage, HTML, rows of None); retried."""


class UnknownTimeframeError(ValueError):
    """The exchange has no such candle timeframe."""


class RetriesExhaustedError(RuntimeError):
    """A request kept failing; the data committed so far is kept and a re-run resumes."""


class HostUnreachableError(ConnectionError):
    """A host that never answered: no DNS name, a refused or timed-out connection."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits a uniform draw in [d/2, d] with
    d = min(backoff_max_s, backoff_base_s * 2**(n-1)); a Retry-After longer than the draw wins.
    A Retry-After beyond `max_retry_after_s` (a long ban) fails at once with a clear error.
    A host that has never answered gets `unreached_attempts` attempts, `unreached_delay_s`
    apart (a connection that timed out, none more): it fails in seconds, not minutes."""

    max_attempts: int = 8
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 900.0
    unreached_attempts: int = 3
    unreached_delay_s: float = 1.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (attempt - 1))
        return rng.uniform(ceiling / 2.0, ceiling)


@dataclass
class Reachability:
    """Whether a host has answered at least once (shared by the clones of a client)."""

    host: str
    hint: str  # the setting that names the host, for the message
    reached: bool = False

    def failure(
        self, error: BaseException, attempt: int, retry: RetryPolicy, began: float
    ) -> str | None:
        """Why the connection failed, when the host has never answered (None otherwise);
        HostUnreachableError once it has failed `retry.unreached_attempts` times or timed out
        connecting."""
        reason = None if self.reached else connection_failure(error)
        if reason is not None and (
            attempt >= retry.unreached_attempts or reason == "connect timeout"
        ):
            seconds = time.monotonic() - began
            raise HostUnreachableError(
                f"cannot reach {self.host} ({reason}; {attempt} attempt{'s' if attempt > 1 else ''} "
                f"in {seconds:.1f} s): it never answered. Check the network connection, a proxy "
                f"or firewall, and {self.hint}. Nothing was changed."
            ) from None
        return reason


def connection_failure(error: BaseException) -> str | None:
    """Why a connection could not be made ('connection refused', 'name or service not known',
    'connect timeout', ...), from the chain of causes of `error`; None when the failure is not
    a failed connection (an HTTP error, a read timeout on an open connection, a bad answer)."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, requests.exceptions.ConnectTimeout):
            return "connect timeout"
        if isinstance(cause, requests.exceptions.ConnectionError) and not isinstance(
            cause, requests.exceptions.ReadTimeout | requests.exceptions.ChunkedEncodingError
        ):
            text = str(cause)
            match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
            if match:
                return match.group(1).strip().rstrip(".").lower()
            if "Connection aborted" in text or "RemoteDisconnected" in text:
                return None  # the host answered the connection, then dropped it
            return text.splitlines()[0][:120]
        cause = cause.__cause__ or cause.__context__
    return None


@dataclass
class RequestStats:
    requests: int = 0
    retries: int = 0


class ExchangeClient:
    """One ccxt exchange instance (not thread-safe; `clone()` one per thread, sharing the
    markets, the clock offset and the budget)."""

    def __init__(
        self,
        exchange_id: str = "binanceusdm",
        api_url: str | None = None,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        budget: WeightBudget | None = None,
        seed: int | None = None,
    ) -> None:
        if exchange_id not in VENUES:
            raise ValueError(
                f"ingestion supports the exchanges {', '.join(VENUES)}, not {exchange_id!r}; "
                "another exchange needs a module like sources/exchange/binance.py"
            )
        self.exchange_id = exchange_id
        self.venue = VENUES[exchange_id]
        self.api_url = api_url.rstrip("/") if api_url else None
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.budget = budget or WeightBudget()
        self.stats = RequestStats()
        self._rng = random.Random(seed)
        self._clock_offset_ms = 0
        self.exchange = self._connect()
        self.reachability = Reachability(
            self.host, "ingestion.api_url (null: the exchange's own address)"
        )

    @property
    def host(self) -> str:
        """The host every request goes to (the api_url's, else the exchange's)."""
        url = self.api_url or next(iter(self.exchange.urls["api"].values()))
        return urlparse(url).netloc or url

    # ------------------------------------------------------------------ connection

    def _connect(self) -> ccxt.Exchange:
        exchange = getattr(ccxt, self.exchange_id)(
            {
                "timeout": int(self.timeout_s * 1000),
                "enableRateLimit": True,  # ccxt then calls throttle(cost) before each request
                "enableLastJsonResponse": True,
                "enableLastResponseHeaders": True,
            }
        )
        exchange.throttle = self._throttle  # our budget instead of ccxt's half-budget sleep
        if self.api_url:
            original_prefixes = {}
            for name, url in list(exchange.urls["api"].items()):
                parsed = urlparse(url)
                exchange.urls["api"][name] = self.api_url + parsed.path
                original_prefixes[self.api_url + parsed.path] = (
                    f"{parsed.scheme}://{parsed.netloc}{parsed.path}"
                )
            exchange.session.trust_env = False  # no proxy from the environment for a local URL
            by_url = exchange.get_exceptions_by_url

            def exceptions_as_on_the_exchange(url: str | None, exact_or_broad: str) -> dict:
                for local, remote in original_prefixes.items():
                    if url and url.startswith(local):
                        return by_url(remote + url[len(local) :], exact_or_broad)
                return by_url(url, exact_or_broad)

            exchange.get_exceptions_by_url = exceptions_as_on_the_exchange
        return exchange

    def clone(self) -> ExchangeClient:
        """Another connection for another thread: same markets, clock offset and budget."""
        twin = ExchangeClient(
            self.exchange_id,
            self.api_url,
            timeout_s=self.timeout_s,
            retry=self.retry,
            budget=self.budget,
            seed=self._rng.randrange(2**32),
        )
        if self.exchange.markets:
            twin.exchange.set_markets(self.exchange.markets, self.exchange.currencies)
        twin._clock_offset_ms = self._clock_offset_ms
        twin.reachability = self.reachability
        return twin

    def _throttle(self, cost: float | None = None) -> None:
        self.budget.acquire(1.0 if cost is None else float(cost))

    # ------------------------------------------------------------------ retries

    def call(self, what: str, request: Callable[[], Any], parse: Callable[[Any], T]) -> T:
        """`parse(request())` with retries: `request` is one ccxt call, `parse` turns its answer
        into the result or raises MalformedResponseError on an answer that must not be used
        (retried too). `what` names the request in messages."""
        attempt = 0
        began = time.monotonic()
        while True:
            attempt += 1
            self.exchange.last_json_response = None
            self.exchange.last_response_headers = None
            self.stats.requests += 1
            try:
                answer = request()
                self.reachability.reached = True
                result = parse(answer)
                self._observe_headers()
                return result
            except ccxt.OperationFailed as error:
                if self.exchange.last_response_headers is not None:
                    self.reachability.reached = True  # an HTTP answer, even an error
                self._observe_headers()
                reason = self.reachability.failure(error, attempt, self.retry, began)
                retry_after = self._retry_after(error)
                if retry_after is not None and retry_after > self.retry.max_retry_after_s:
                    raise RetriesExhaustedError(
                        f"{what}: the exchange asks to wait {retry_after:.0f} s (Retry-After; HTTP 418 "
                        f"means the IP is banned), more than max_retry_after_s = "
                        f"{self.retry.max_retry_after_s:.0f}: {error}"
                    ) from error
                if attempt >= self.retry.max_attempts:
                    raise RetriesExhaustedError(
                        f"{what} failed {attempt} times; the last error: {type(error).__name__}: {error}. "
                        "Everything committed so far is kept; run again to resume."
                    ) from error
                delay = (
                    self.retry.unreached_delay_s
                    if reason is not None
                    else self.retry.delay(attempt, self._rng)
                )
                if retry_after is not None:
                    self.budget.pause(retry_after)  # every thread waits, not only this one
                    delay = max(delay, retry_after)
                logger.warning(
                    "%s: %s (%s); retry %d of %d in %.2f s",
                    what,
                    type(error).__name__,
                    reason or _short(error),
                    attempt,
                    (self.retry.unreached_attempts if reason else self.retry.max_attempts) - 1,
                    delay,
                )
                self.stats.retries += 1
                time.sleep(delay)

    def _retry_after(self, error: Exception) -> float | None:
        if not isinstance(error, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
            return None
        value = (self.exchange.last_response_headers or {}).get("Retry-After")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    def _observe_headers(self) -> None:
        used = (self.exchange.last_response_headers or {}).get(self.venue.USED_WEIGHT_HEADER)
        if used is not None:
            try:
                self.budget.observe_used_weight(int(used))
            except ValueError:
                pass

    # ------------------------------------------------------------------ markets and clock

    def load(self) -> None:
        """Load the markets and measure the exchange's clock (two requests, retried)."""

        def markets_loaded(markets: dict) -> dict:
            if not markets:  # ccxt returns {} on a garbage exchangeInfo
                raise MalformedResponseError("exchangeInfo gave no markets")
            return markets

        self.call("load markets", lambda: self.exchange.load_markets(reload=True), markets_loaded)
        self.sync_clock()

    def sync_clock(self) -> None:
        def is_time(value: Any) -> int:
            if not isinstance(value, int):
                raise MalformedResponseError(f"server time is {value!r}")
            return value

        before = time.time()
        server_ms = self.call("fetch server time", self.exchange.fetch_time, is_time)
        local_ms = int((before + time.time()) / 2 * 1000)
        self._clock_offset_ms = server_ms - local_ms

    def now_ms(self) -> int:
        """The exchange's clock (local clock + the offset measured by `sync_clock`)."""
        return int(time.time() * 1000) + self._clock_offset_ms

    def market(self, symbol: str) -> dict:
        """The ccxt market of a symbol ('BTC/USDT', 'BTC/USDT:USDT'); BadSymbol listing the
        exchange's perpetuals when unknown."""
        wanted = normalise_symbol(symbol)
        markets = self.exchange.markets or {}
        if wanted in markets:
            return markets[wanted]
        available = sorted(s for s, m in markets.items() if m.get("swap") or m.get("linear"))
        close = difflib.get_close_matches(wanted, available, n=5)
        raise ccxt.BadSymbol(
            f"{self.exchange_id} has no market {symbol!r} (looked for {wanted!r})"
            + (f"; close matches: {', '.join(close)}" if close else "")
            + f"; available ({len(available)}): {', '.join(available)}"
        )

    def check_timeframe(self, timeframe: str) -> None:
        timeframes = self.exchange.timeframes or {}
        supported = [tf for tf in timeframes if _parseable(tf)]
        if timeframe not in timeframes or not _parseable(timeframe):
            raise UnknownTimeframeError(
                f"{self.exchange_id} has no timeframe {timeframe!r}; available: {', '.join(supported)}"
            )

    # ------------------------------------------------------------------ data

    def fetch_candles(
        self,
        symbol: str,
        timeframe: str,
        since_ms: int,
        until_ms: int | None = None,
        limit: int | None = None,
        expect_data: bool = True,
    ) -> np.ndarray:
        """One page of raw klines from `since_ms` (open time) -> float64 array (n, 10) in the
        order of `data.schema.CANDLE_COLUMNS` (open time in ms, OHLCV, then the order-flow
        fields), as the exchange sent them. With `expect_data`, a page without a candle at or
        after `since_ms` counts as malformed and is retried (see `history.py`)."""
        market = self.market(symbol)
        request = self.venue.klines_request(
            market["id"],
            self.exchange.timeframes[timeframe],
            since_ms,
            until_ms,
            limit or self.venue.CANDLES_PER_REQUEST,
        )

        def parsed(rows: Any) -> np.ndarray:
            self._check_json_list("klines")
            try:
                array = self.venue.klines_to_candles(rows)
            except ValueError as error:
                raise MalformedResponseError(str(error)) from error
            if expect_data and not (array[:, 0] >= since_ms).any():
                raise MalformedResponseError(
                    "klines gave no candle at or after startTime although closed candles should exist"
                )
            return array

        return self.call(
            f"{symbol} {timeframe} klines from {_iso(since_ms)}",
            lambda: self.venue.fetch_klines(self.exchange, request),
            parsed,
        )

    def fetch_funding_rates(
        self,
        symbol: str,
        since_ms: int,
        until_ms: int | None = None,
        limit: int | None = None,
    ) -> np.ndarray:
        """One page of funding settlements from `since_ms` -> float64 array (n, 2): settlement
        time in ms, rate. An empty page is a valid answer (no settlement since)."""
        params = {} if until_ms is None else {"until": int(until_ms)}

        def parsed(rows: list) -> np.ndarray:
            self._check_json_list("fundingRate")
            pairs = [[row.get("timestamp"), row.get("fundingRate")] for row in rows]
            return _finite_rows(pairs, 2, "fundingRate")

        return self.call(
            f"{symbol} funding rates from {_iso(since_ms)}",
            lambda: self.exchange.fetch_funding_rate_history(
                symbol, int(since_ms), limit or self.venue.FUNDING_RATES_PER_REQUEST, params
            ),
            parsed,
        )

    def _check_json_list(self, endpoint: str) -> None:
        """ccxt turns a body that is not JSON into [] or rows of None; its parsed JSON tells."""
        if not isinstance(self.exchange.last_json_response, list):
            raise MalformedResponseError(
                f"{endpoint} answer is not a JSON list: {_snippet(self.exchange.last_http_response)}"
            )


def _finite_rows(rows: list, width: int, endpoint: str) -> np.ndarray:
    """Rows of `width` finite numbers -> float64 array (n, width); MalformedResponseError else."""
    if not isinstance(rows, list):
        raise MalformedResponseError(f"{endpoint} gave {type(rows).__name__}, not rows")
    if not rows:
        return np.empty((0, width))
    try:
        array = np.asarray(rows, dtype="float64")
    except (TypeError, ValueError) as error:
        raise MalformedResponseError(
            f"{endpoint} rows do not parse as numbers ({error})"
        ) from error
    if array.ndim != 2 or array.shape[1] != width or not np.isfinite(array).all():
        raise MalformedResponseError(f"{endpoint} rows are not {width} finite numbers each")
    return array


def _parseable(timeframe: str) -> bool:
    try:
        timeframe_to_milliseconds(timeframe)
    except ValueError:
        return False
    return True


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000))


def _short(error: Exception) -> str:
    text = str(error)
    return text if len(text) <= 160 else text[:157] + "..."


def _snippet(body: Any) -> str:
    text = repr(body)
    return text if len(text) <= 80 else text[:77] + "..."
