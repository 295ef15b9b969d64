"""A loopback HTTP server with the layout of Binance's public archive (data.binance.vision), built
from candle tables (real or synthetic), with injectable faults.

Files, each beside its `.CHECKSUM` (`<sha256>  <file name>`):

* `/data/futures/um/monthly/klines/{SYMBOL}/{interval}/{SYMBOL}-{interval}-{YYYY}-{MM}.zip`
* `/data/futures/um/daily/klines/{SYMBOL}/{interval}/{SYMBOL}-{interval}-{YYYY}-{MM}-{DD}.zip`
* `/data/futures/um/monthly/fundingRate/{SYMBOL}/{SYMBOL}-fundingRate-{YYYY}-{MM}.zip`

A zip holds one CSV of 12 kline fields per row (or `calc_time,funding_interval_hours,
last_funding_rate`), rendered from the candles (order flow included) when first asked for.
Publication: a file exists when its period has ended by `published_until` (a monthly file at
the end of its month, a daily file at the end of its day) and the series has rows in it; else
404, as on Binance. `header(period)` and `time_unit(period)` choose, per file, whether it has a
header row (older files have none) and whether times are in ms or us.

Faults (`inject(ArchiveFault(...))`), for the next zip request whose path contains `path` (after
`after` such requests went through; a checksum request only if `path` names one): `checksum_mismatch` (a zip whose bytes differ from its
checksum), `truncated` (the first half of the zip), `status` (an HTTP error, e.g. 503), `drop`
(the connection closes without an answer). `unpublish(part)` makes matching files 404.

Run as a script (for the benchmark) to serve random-walk candles in a process of its own, with
the REST server of the same candles: `python tests/sources/loopback/binance_archive.py --months
12 --symbols BTCUSDT,ETHUSDT,SOLUSDT`; it prints the archive URL and the REST URL on its first
two lines and stops when its standard input closes.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

import numpy as np
import pandas as pd

from tests.sources.loopback.binance_rest import (
    INTERVALS_MS,
    ORDER_FLOW,
    BinanceFuturesServer,
    add_order_flow,
    random_walk_candles,
)
from tests.sources.loopback.server import LoopbackServer

FAULT_KINDS = ("checksum_mismatch", "truncated", "status", "drop")
KLINE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
    "taker_buy_quote_volume,ignore"
)
FUNDING_HEADER = "calc_time,funding_interval_hours,last_funding_rate"
_KLINES = re.compile(
    r"^/data/futures/um/(?P<kind>monthly|daily)/klines/(?P<market>[A-Z0-9]+)/(?P<interval>\w+)/"
    r"(?P=market)-(?P=interval)-(?P<year>\d{4})-(?P<month>\d{2})(?:-(?P<day>\d{2}))?\.zip"
    r"(?P<checksum>\.CHECKSUM)?$"
)
_FUNDING = re.compile(
    r"^/data/futures/um/monthly/fundingRate/(?P<market>[A-Z0-9]+)/(?P=market)-fundingRate-"
    r"(?P<year>\d{4})-(?P<month>\d{2})\.zip(?P<checksum>\.CHECKSUM)?$"
)


@dataclass
class ArchiveFault:
    kind: str
    path: str = ".zip"
    status: int = 503
    after: int = 0  # let this many matching requests through first

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {FAULT_KINDS}")


@dataclass(frozen=True)
class Period:
    """The period a file covers: [start, end) in UTC."""

    start: pd.Timestamp
    end: pd.Timestamp


class _Handler(BaseHTTPRequestHandler):
    archive: BinanceArchiveServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/zip") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        archive, path = self.archive, self.path.split("?", 1)[0]
        with archive._lock:
            archive.requests.append(path)
        if archive.latency_s:
            time.sleep(archive.latency_s)
        fault = archive._take_fault(path)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault is not None and fault.kind == "status":
            return self._send(fault.status, b"Service Unavailable", "text/plain")
        checksum = path.endswith(".CHECKSUM")
        answer = archive.file(path.removesuffix(".CHECKSUM"))
        if answer is None:
            body = b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code></Error>"
            return self._send(404, body, "application/xml")
        data, checksum_text = answer
        if checksum:
            return self._send(200, checksum_text.encode(), "text/plain")
        if fault is not None and fault.kind == "checksum_mismatch":
            data = data[:-40] + bytes(40)  # same length, other bytes
        if fault is not None and fault.kind == "truncated":
            data = data[: len(data) // 2]
        self._send(200, data)


class BinanceArchiveServer(LoopbackServer):
    """Serve `candles[(market_id, interval)]` and `funding[market_id]` as Binance's archive."""

    handler = _Handler
    handler_attribute = "archive"

    def __init__(
        self,
        candles: Mapping[tuple[str, str], pd.DataFrame],
        funding: Mapping[str, pd.DataFrame] | None = None,
        *,
        published_until=None,
        header: Callable[[Period], bool] | bool = True,
        time_unit: Callable[[Period], str] | str = "ms",
        latency_s: float = 0.0,
    ) -> None:
        self.latency_s = latency_s
        self.candles = {
            key: _with_order_flow(frame).set_index("timestamp", drop=False)
            for key, frame in candles.items()
        }
        self.funding = {m: f.set_index("timestamp", drop=False) for m, f in (funding or {}).items()}
        ends = [frame.index[-1] for frame in self.candles.values() if len(frame)]
        self.published_until = (
            _utc(published_until)
            if published_until is not None
            else max(ends).ceil("D") + pd.Timedelta(days=1)
            if ends
            else pd.Timestamp.now(tz="UTC")
        )
        self.header = header if callable(header) else (lambda period, value=header: value)
        self.time_unit = time_unit if callable(time_unit) else (lambda period, value=time_unit: value)
        self.requests: list[str] = []
        self._unpublished: list[str] = []
        self._faults: deque[ArchiveFault] = deque()
        self._files: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- test controls

    def unpublish(self, path_part: str) -> None:
        with self._lock:
            self._unpublished.append(path_part)

    def publish_until(self, moment) -> None:
        with self._lock:
            self.published_until = _utc(moment)

    def count(self, path_part: str) -> int:
        with self._lock:
            return sum(path_part in path for path in self.requests)

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()

    def prebuild(self) -> int:
        """Build every monthly kline file now (for the benchmark); -> bytes of the zips."""
        total = 0
        for (market, interval), frame in self.candles.items():
            for month in pd.date_range(frame.index[0].floor("D").replace(day=1), frame.index[-1], freq="MS"):
                path = f"/data/futures/um/monthly/klines/{market}/{interval}/{market}-{interval}-{month:%Y-%m}.zip"
                answer = self.file(path)
                total += len(answer[0]) if answer else 0
        return total

    # ---------------------------------------------------------------- files

    def file(self, path: str) -> tuple[bytes, str] | None:
        """(zip bytes, checksum text) of a published file, or None (404)."""
        with self._lock:
            if path in self._files:
                return self._files[path]
            if any(part in path for part in self._unpublished):
                return None
        built = self._build(path)
        if built is not None:
            with self._lock:
                self._files[path] = built
        return built

    def _build(self, path: str) -> tuple[bytes, str] | None:
        if match := _KLINES.match(path):
            period = _period(match)
            frame = self.candles.get((match["market"], match["interval"]))
            if frame is None or period.end > self.published_until:
                return None
            rows = frame.loc[period.start : period.end - pd.Timedelta(microseconds=1)]
            if rows.empty:
                return None
            text = _klines_csv(rows, INTERVALS_MS[match["interval"]], self.header(period), self.time_unit(period))
        elif match := _FUNDING.match(path):
            period = _period(match)
            frame = self.funding.get(match["market"])
            if frame is None or period.end > self.published_until:
                return None
            rows = frame.loc[period.start : period.end - pd.Timedelta(microseconds=1)]
            if rows.empty:
                return None
            text = _funding_csv(rows)
        else:
            return None
        name = path.rsplit("/", 1)[-1]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(name.removesuffix(".zip") + ".csv", text)
        data = buffer.getvalue()
        return data, f"{hashlib.sha256(data).hexdigest()}  {name}\n"

    def _take_fault(self, path: str) -> ArchiveFault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                # a fault hits the zip itself unless it names a checksum file
                if fault.path in path and (path.endswith(".zip") or "CHECKSUM" in fault.path):
                    if fault.after > 0:
                        fault.after -= 1
                        return None
                    del self._faults[index]
                    return fault
        return None


def _utc(moment) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _period(match: re.Match) -> Period:
    year, month = int(match["year"]), int(match["month"])
    day = match.groupdict().get("day")
    if day:
        start = pd.Timestamp(year=year, month=month, day=int(day), tz="UTC")
        return Period(start, start + pd.Timedelta(days=1))
    start = pd.Timestamp(year=year, month=month, day=1, tz="UTC")
    return Period(start, start + pd.offsets.MonthBegin(1))


def _with_order_flow(frame: pd.DataFrame) -> pd.DataFrame:
    return frame if set(ORDER_FLOW).issubset(frame.columns) else add_order_flow(frame)


def _klines_csv(rows: pd.DataFrame, interval_ms: int, header: bool, unit: str) -> str:
    open_ms = pd.DatetimeIndex(rows["timestamp"]).as_unit("ms").asi8
    scale = 1000 if unit == "us" else 1
    table = pd.DataFrame(
        {
            "open_time": open_ms * scale,
            **{c: rows[c].to_numpy("float64") for c in ("open", "high", "low", "close", "volume")},
            "close_time": (open_ms + interval_ms - 1) * scale,
            "quote_volume": rows["quote_volume"].to_numpy("float64"),
            "count": rows["trade_count"].to_numpy("float64").astype("int64"),
            "taker_buy_volume": rows["taker_buy_volume"].to_numpy("float64"),
            "taker_buy_quote_volume": rows["taker_buy_quote_volume"].to_numpy("float64"),
            "ignore": np.zeros(len(rows), dtype="int64"),
        }
    )
    text = table.to_csv(index=False, header=False, lineterminator="\n")
    return (KLINE_HEADER + "\n" + text) if header else text


def _funding_csv(rows: pd.DataFrame) -> str:
    table = pd.DataFrame(
        {
            "calc_time": pd.DatetimeIndex(rows["timestamp"]).as_unit("ms").asi8,
            "funding_interval_hours": 8,
            "last_funding_rate": rows["funding_rate"].to_numpy("float64"),
        }
    )
    return FUNDING_HEADER + "\n" + table.to_csv(index=False, header=False, lineterminator="\n")


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=12, help="months of candles per symbol")
    parser.add_argument("--start", default="2023-01-01")
    parser.add_argument("--timeframe", default="1m")
    parser.add_argument("--symbols", default="BTCUSDT", help="comma-separated market ids")
    args = parser.parse_args(list(argv) if argv is not None else None)
    start = pd.Timestamp(args.start, tz="UTC")
    end = start + pd.DateOffset(months=args.months)
    count = int((end - start) / pd.Timedelta(milliseconds=INTERVALS_MS[args.timeframe]))
    candles = {
        (symbol, args.timeframe): random_walk_candles(count, args.timeframe, args.start, seed=seed)
        for seed, symbol in enumerate(args.symbols.split(","))
    }
    archive = BinanceArchiveServer(candles, published_until=end)
    zipped = archive.prebuild()
    with archive, BinanceFuturesServer(candles) as rest:
        print(archive.url, flush=True)
        print(rest.url, flush=True)
        print(json.dumps({"candles": count * len(candles), "zip_bytes": zipped}), flush=True)
        sys.stdin.read()  # serve until the parent closes our standard input
        print(json.dumps({"archive_requests": len(archive.requests)}), flush=True)


if __name__ == "__main__":
    main()
