"""A loopback HTTP server that speaks the part of Binance's USDT-M futures REST API that ingestion
uses, with the exchange's semantics, its request-weight accounting and injectable faults.

Endpoints (GET): `/fapi/v1/exchangeInfo`, `/fapi/v1/time`, `/fapi/v1/klines`,
`/fapi/v1/fundingRate`. Klines follow Binance: rows whose open time is in [startTime, endTime],
the first `limit` of them from `startTime`, or the latest `limit` without it; `limit` defaults to
500, at most 1500; each row is 12 fields with prices, volumes and the order flow as strings. Only candles that have opened by
the server's clock (`now_ms`) are served, and the last one is still forming when
`now_ms < open + timeframe`. Every response carries `X-MBX-USED-WEIGHT-1M`; past the weight limit
of the current window the server answers 429 with `Retry-After`, as Binance does.

Faults: `server.inject(Fault(...))` queues a fault for the next request whose path contains
`Fault.path` (after `Fault.after` such requests went through); kinds are listed in `FAULT_KINDS`.

Run as a script (for the benchmark) to serve random-walk candles in a process of its own:
`python tests/sources/loopback/binance_rest.py --candles 2500000 --timeframe 1m`; it prints its URL on
the first line and stops when its standard input closes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd

from tests.sources.loopback.server import LoopbackServer

OHLCV = ("open", "high", "low", "close", "volume")
ORDER_FLOW = ("quote_volume", "trade_count", "taker_buy_volume", "taker_buy_quote_volume")
INTERVALS_MS = {
    "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
    "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
    "12h": 43_200_000, "1d": 86_400_000, "3d": 259_200_000, "1w": 604_800_000,
}  # fmt: skip
FAULT_KINDS = (
    "status",  # an HTTP error: `status`, `body`, `headers` (e.g. 429 with Retry-After, 418, 500, 503)
    "delay",  # answer normally after sleeping `seconds` (beyond the client's timeout)
    "drop",  # close the connection without an answer
    "malformed_json",  # 200 with a truncated JSON body
    "html",  # 200 with an HTML page
    "empty",  # 200 with [] although candles exist
    "duplicate",  # the right page, each row twice, plus rows from before startTime
)


@dataclass
class Fault:
    kind: str
    path: str = "klines"
    status: int = 500
    body: str = "Internal Server Error"
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    after: int = 0  # let this many matching requests through first

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {FAULT_KINDS}")


def _weight_of_klines(limit: int) -> int:
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def _to_ms(timestamps) -> np.ndarray:
    return pd.DatetimeIndex(timestamps).as_unit("ms").asi8.astype("int64")


class _Series:
    """One (market, interval) of candles as columns, rows rendered on demand (12 fields, with the
    order flow of the candles, or made up by `add_order_flow` when they have none)."""

    def __init__(self, candles: pd.DataFrame, interval_ms: int) -> None:
        if not set(ORDER_FLOW).issubset(candles.columns):
            candles = add_order_flow(candles)
        self.open_ms = _to_ms(candles["timestamp"])
        self.columns = [candles[c].to_numpy("float64") for c in (*OHLCV, *ORDER_FLOW)]
        self.interval_ms = interval_ms

    def rows_json(self, first: int, last: int) -> str:
        o, h, l, c, v, q, n, b, bq = (column[first:last].tolist() for column in self.columns)  # noqa: E741
        times = self.open_ms[first:last].tolist()
        step = self.interval_ms - 1
        return (
            "["
            + ",".join(
                f'[{t},"{a!r}","{hi!r}","{lo!r}","{cl!r}","{vo!r}",{t + step},"{qv!r}",{int(nt)},'
                f'"{bv!r}","{bqv!r}","0"]'
                for t, a, hi, lo, cl, vo, qv, nt, bv, bqv in zip(
                    times, o, h, l, c, v, q, n, b, bq, strict=True
                )
            )
            + "]"
        )


def add_order_flow(candles: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The candles with plausible order-flow fields (for candles that have none, like the shared
    OHLCV files): the taker-buy share follows the bar's return, trades of about 0.05 base units,
    quote volumes at the bar's mean price; decimals that survive a round trip through text."""
    rng = np.random.default_rng(seed)
    volume = candles["volume"].to_numpy("float64")
    body = np.log(candles["close"].to_numpy("float64") / candles["open"].to_numpy("float64"))
    scale = np.std(body) or 1.0
    share = np.clip(0.5 + 0.15 * np.tanh(body / scale) + rng.normal(0.0, 0.05, len(volume)), 0, 1)
    price = candles[["open", "high", "low", "close"]].to_numpy("float64").mean(axis=1)
    buy = np.minimum(np.round(volume * share, 3), volume)
    quote = np.round(volume * price, 4)
    return candles.assign(
        quote_volume=quote,
        trade_count=np.maximum(np.round(volume / 0.05), 1.0) * (volume > 0),
        taker_buy_volume=buy,
        taker_buy_quote_volume=np.minimum(np.round(buy * price, 4), quote),
    )


class _Handler(BaseHTTPRequestHandler):
    exchange: BinanceFuturesServer  # set on the subclass made by `start`
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else every keep-alive answer stalls ~40 ms

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(
        self, status: int, body: str, content_type: str = "application/json", headers=()
    ) -> None:
        payload = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in dict(headers).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server = self.exchange
        parsed = urlparse(self.path)
        query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        path = parsed.path
        with server._lock:
            server.requests.append((path, query))
            server.arrivals.append((time.monotonic(), path))
        if server.latency_s:
            time.sleep(server.latency_s)
        used, retry_after = server._charge(server.weight(path, query))
        weight_header = {"X-MBX-USED-WEIGHT-1M": str(used)}
        if retry_after is not None:
            body = json.dumps(
                {"code": -1003, "msg": "Too many requests; current limit is exceeded."}
            )
            headers = {**weight_header, "Retry-After": str(max(1, math.ceil(retry_after)))}
            return self._send(429, body, headers=headers)
        fault = server._take_fault(path)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(2)  # SHUT_RDWR: the client sees the connection die
            return
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
        if fault is not None and fault.kind == "status":
            content_type = "application/json" if fault.body.startswith("{") else "text/plain"
            return self._send(
                fault.status, fault.body, content_type, {**weight_header, **fault.headers}
            )
        if fault is not None and fault.kind == "malformed_json":
            return self._send(200, '[[1577836800000,"7172.1","71', headers=weight_header)
        if fault is not None and fault.kind == "html":
            page = "<html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>"
            return self._send(200, page, "text/html", weight_header)
        if fault is not None and fault.kind == "empty":
            return self._send(200, "[]", headers=weight_header)
        status, body, headers = server.answer(path, query)
        if fault is not None and fault.kind == "duplicate" and status == 200:
            body = _duplicated(server, query, body)
        self._send(status, body, headers={**weight_header, **headers})


class BinanceFuturesServer(LoopbackServer):
    """Serve `candles[(market_id, interval)]` and `funding[market_id]` on 127.0.0.1 (port 0).

    `now_ms` is the server's clock (default: every served candle closed). `weight_limit` and
    `weight_window_s` emulate `X-MBX-USED-WEIGHT-1M` (2400 a minute on Binance; None = no limit).
    `latency_s` delays every answer, like a distant exchange."""

    handler = _Handler
    handler_attribute = "exchange"

    def __init__(
        self,
        candles: Mapping[tuple[str, str], pd.DataFrame],
        funding: Mapping[str, pd.DataFrame] | None = None,
        *,
        now_ms: int | None = None,
        weight_limit: int | None = None,
        weight_window_s: float = 60.0,
        latency_s: float = 0.0,
    ) -> None:
        self.series = {key: _Series(frame, INTERVALS_MS[key[1]]) for key, frame in candles.items()}
        self.funding = {
            market: (_to_ms(frame["timestamp"]), frame["funding_rate"].to_numpy("float64"))
            for market, frame in (funding or {}).items()
        }
        self.markets = sorted({market for market, _ in self.series} | set(self.funding))
        if now_ms is None:
            ends = [s.open_ms[-1] + s.interval_ms for s in self.series.values() if len(s.open_ms)]
            now_ms = max(ends, default=int(time.time() * 1000))
        self.now_ms = int(now_ms)
        self.weight_limit = weight_limit
        self.weight_window_s = weight_window_s
        self.latency_s = latency_s
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.arrivals: list[tuple[float, str]] = []  # (time.monotonic(), path) of each request
        self.weight_by_window: Counter[int] = Counter()
        self.rejected_for_weight = 0
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- test controls

    def count(self, path_part: str) -> int:
        with self._lock:
            return sum(path_part in path for path, _ in self.requests)

    def request_times(self, path_part: str) -> list[float]:
        with self._lock:
            return [moment for moment, path in self.arrivals if path_part in path]

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.arrivals.clear()

    # ---------------------------------------------------------------- request handling

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.path in path:
                    if fault.after > 0:
                        fault.after -= 1
                        return None
                    del self._faults[index]
                    return fault
        return None

    def _charge(self, weight: int) -> tuple[int, float | None]:
        """Add a request's weight; -> (used weight in this window, Retry-After if over the limit)."""
        now = time.time()
        window = int(now // self.weight_window_s)
        with self._lock:
            self.weight_by_window[window] += weight
            used = self.weight_by_window[window]
            if self.weight_limit is not None and used > self.weight_limit:
                self.rejected_for_weight += 1
                return used, (window + 1) * self.weight_window_s - now
        return used, None

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, str, dict[str, str]]:
        """-> (status, JSON body, extra headers) for a healthy exchange."""
        if path == "/fapi/v1/time":
            return 200, json.dumps({"serverTime": self.now_ms}), {}
        if path == "/fapi/v1/exchangeInfo":
            return 200, json.dumps(self._exchange_info()), {}
        if path == "/fapi/v1/klines":
            return self._klines(query)
        if path == "/fapi/v1/fundingRate":
            return self._funding(query)
        return 404, json.dumps({"code": -1, "msg": f"unknown endpoint {path}"}), {}

    def weight(self, path: str, query: dict[str, str]) -> int:
        if path == "/fapi/v1/klines":
            return _weight_of_klines(int(query.get("limit", 500)))
        return 1

    def _exchange_info(self) -> dict:
        symbols = [
            {
                "symbol": market,
                "pair": market,
                "contractType": "PERPETUAL",
                "status": "TRADING",
                "baseAsset": market.removesuffix("USDT"),
                "quoteAsset": "USDT",
                "marginAsset": "USDT",
                "pricePrecision": 2,
                "quantityPrecision": 3,
                "baseAssetPrecision": 8,
                "quotePrecision": 8,
                "onboardDate": 1569398400000,
                "deliveryDate": 4133404800000,
                "filters": [],
                "orderTypes": ["LIMIT", "MARKET"],
                "timeInForce": ["GTC"],
            }
            for market in self.markets
        ]
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms,
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 2400,
                }
            ],
            "exchangeFilters": [],
            "assets": [],
            "symbols": symbols,
        }

    @staticmethod
    def _error(code: int, message: str) -> tuple[int, str, dict[str, str]]:
        return 400, json.dumps({"code": code, "msg": message}), {}

    def _klines(self, query: dict[str, str]) -> tuple[int, str, dict[str, str]]:
        market, interval = query.get("symbol", ""), query.get("interval", "")
        if market not in self.markets:
            return self._error(-1121, "Invalid symbol.")
        if interval not in INTERVALS_MS:
            return self._error(-1120, "Invalid interval.")
        limit = int(query.get("limit", 500))
        if not 1 <= limit <= 1500:
            return self._error(-1130, "Data sent for parameter 'limit' is not valid.")
        series = self.series.get((market, interval))
        if series is None:
            return 200, "[]", {}
        # Binance serves nothing that has not opened yet.
        end = min(int(query.get("endTime", self.now_ms)), self.now_ms)
        stop = int(np.searchsorted(series.open_ms, end, side="right"))
        if "startTime" in query:
            first = int(np.searchsorted(series.open_ms, int(query["startTime"]), side="left"))
            last = min(stop, first + limit)
        else:
            last = stop
            first = max(0, last - limit)
        return 200, series.rows_json(first, max(first, last)), {}

    def _funding(self, query: dict[str, str]) -> tuple[int, str, dict[str, str]]:
        market = query.get("symbol", "")
        if market not in self.markets:
            return self._error(-1121, "Invalid symbol.")
        limit = min(int(query.get("limit", 100)), 1000)
        times, rates = self.funding.get(market, (np.empty(0, "int64"), np.empty(0)))
        end = min(int(query.get("endTime", self.now_ms)), self.now_ms)
        stop = int(np.searchsorted(times, end, side="right"))
        if "startTime" in query:
            first = int(np.searchsorted(times, int(query["startTime"]), side="left"))
            last = min(stop, first + limit)
        else:
            last = stop
            first = max(0, last - limit)
        rows = [
            {"symbol": market, "fundingTime": int(t), "fundingRate": f"{r:.8f}", "markPrice": "1.0"}
            for t, r in zip(times[first:last].tolist(), rates[first:last].tolist(), strict=True)
        ]
        return 200, json.dumps(rows), {}


def _duplicated(server: BinanceFuturesServer, query: dict[str, str], body: str) -> str:
    """The page with every row twice and the three candles before startTime prepended."""
    rows = json.loads(body)
    series = server.series.get((query.get("symbol", ""), query.get("interval", "")))
    earlier: list = []
    if series is not None and "startTime" in query:
        first = int(np.searchsorted(series.open_ms, int(query["startTime"]), side="left"))
        earlier = json.loads(series.rows_json(max(0, first - 3), first))
    doubled = [row for row in rows for _ in range(2)]
    return json.dumps(earlier + doubled)


def random_walk_candles(
    count: int, timeframe: str, start: str = "2020-01-01", seed: int = 1
) -> pd.DataFrame:
    """Cheap consistent candles (a random walk in prices with two decimals, with order flow)
    for load tests."""
    rng = np.random.default_rng(seed)
    close = np.round(10_000.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, count))), 2)
    open_ = np.concatenate([[10_000.0], close[:-1]])
    spread = np.round(np.abs(rng.normal(0.0, 5.0, (2, count))), 2)
    times = pd.date_range(
        start, periods=count, freq=pd.Timedelta(milliseconds=INTERVALS_MS[timeframe]), tz="UTC"
    )
    candles = pd.DataFrame(
        {
            "timestamp": times,
            "open": open_,
            "high": np.maximum(open_, close) + spread[0],
            "low": np.minimum(open_, close) - spread[1],
            "close": close,
            "volume": np.round(rng.lognormal(3.0, 1.0, count), 3),
        }
    )
    return add_order_flow(candles, seed)


def market_id(symbol: str) -> str:
    """'BTC/USDT:USDT' or 'BTC_USDT' -> 'BTCUSDT'."""
    return symbol.replace("_", "/").split(":")[0].replace("/", "")


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=100_000, help="candles per symbol")
    parser.add_argument("--timeframe", default="1m")
    parser.add_argument("--symbols", default="BTCUSDT", help="comma-separated market ids")
    parser.add_argument("--weight-limit", type=int, default=None)
    parser.add_argument("--weight-window", type=float, default=60.0)
    args = parser.parse_args(list(argv) if argv is not None else None)
    candles = {
        (symbol, args.timeframe): random_walk_candles(args.candles, args.timeframe, seed=seed)
        for seed, symbol in enumerate(args.symbols.split(","))
    }
    with BinanceFuturesServer(
        candles, weight_limit=args.weight_limit, weight_window_s=args.weight_window
    ) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # serve until the parent closes our standard input
        arrivals = server.request_times("klines")
        print(json.dumps({
            "klines_requests": len(arrivals),
            "klines_seconds": arrivals[-1] - arrivals[0] if arrivals else 0.0,
            "rejected_for_weight": server.rejected_for_weight,
            "max_window_weight": max(server.weight_by_window.values(), default=0),
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
