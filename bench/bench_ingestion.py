"""Ingestion benchmark: our exchange download against a plain ccxt loop, over a loopback Binance
server running in a process of its own (tests/sources/loopback/binance_rest.py).

(a) Throughput with throttling off: candles/s of `sync_candles` (parse, checks, atomic month
    commits) and of the whole raw layer (plus consolidation and validation), next to a plain
    `fetch_ohlcv` loop that keeps the rows in a list and writes one Parquet file at the end; and
    ccxt's own throttle, for scale.
(b) Throttled at Binance's real budget (2400 weight a minute, enforced by the server): the share
    of the budget used, and the projected time of the seed universe (BTC, ETH, SOL; 1m and 5m;
    2020-01-01 to now) against the real exchange.
(c) Peak memory (max RSS) of a full-history 1m download of one series, at two lengths, and of
    reading the consolidated series back.

Run: `.venv/bin/python bench/bench_ingestion.py` (about 5 minutes; `--quick` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import ccxt
import pandas as pd

from trading_engine.data import quality
from trading_engine.data.storage import AtomicParquetDataset, SeriesStore
from trading_engine.sources.exchange import (
    DownloadSettings,
    ExchangeClient,
    WeightBudget,
    sync_candles,
)

ROOT = Path(__file__).resolve().parents[1]
SERVER_SCRIPT = ROOT / "tests" / "sources" / "loopback" / "binance_rest.py"
START = "2020-01-01"
START_MS = 1_577_836_800_000

# Binance USDT-M perpetual listings (first candle) and the seed universe.
LISTED = {"BTC/USDT": "2019-09-08", "ETH/USDT": "2019-11-27", "SOL/USDT": "2020-09-14"}
KLINES_WEIGHT = {1000: 5, 499: 2}


class LoopbackServer:
    """binance_rest.py in a subprocess; `stats` after exit (the server's own counts)."""

    def __init__(
        self, candles: int, symbols: str = "BTCUSDT", weight_limit: int | None = None
    ) -> None:
        self.arguments = [
            sys.executable,
            str(SERVER_SCRIPT),
            "--candles",
            str(candles),
            "--symbols",
            symbols,
        ]
        if weight_limit is not None:
            self.arguments += ["--weight-limit", str(weight_limit), "--weight-window", "60"]
        self.stats: dict = {}

    def __enter__(self) -> str:
        self.process = subprocess.Popen(
            self.arguments, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        return self.process.stdout.readline().strip()

    def __exit__(self, *exc) -> None:
        self.process.stdin.close()
        line = self.process.stdout.readline()
        self.stats = json.loads(line) if line.strip() else {}
        self.process.wait(timeout=30)


def ours(url: str, candles: int) -> tuple[float, float]:
    """-> (candles/s of the download into the store, candles/s including consolidation and
    validation of the raw series)."""
    with tempfile.TemporaryDirectory() as folder:
        store = SeriesStore(Path(folder) / "store")
        client = ExchangeClient(api_url=url, budget=WeightBudget(limit=None))
        began = time.perf_counter()
        sync_candles(
            client,
            store,
            ["BTC/USDT"],
            ["1m"],
            START_MS,
            None,
            DownloadSettings(progress=False, max_workers=1),
        )
        downloaded = time.perf_counter()
        raw = store.read("BTC_USDT_1m")
        AtomicParquetDataset(filepath=str(Path(folder) / "raw" / "BTC_USDT_1m.parquet")).save(raw)
        clean, _, report = quality.validate_candles(raw, "1m")
        finished = time.perf_counter()
        assert len(clean) == candles == report["rows_clean"], (len(clean), candles)
    return candles / (downloaded - began), candles / (finished - began)


def plain_ccxt(url: str, enable_rate_limit: bool = False, max_pages: int | None = None) -> float:
    """The peer: a plain fetch_ohlcv loop (since = last open + 1 m), one Parquet file at the end."""
    exchange = ccxt.binanceusdm({"enableRateLimit": enable_rate_limit})
    for name, address in exchange.urls["api"].items():
        exchange.urls["api"][name] = url + urlparse(address).path
    exchange.session.trust_env = False
    exchange.load_markets()
    rows, since, pages = [], START_MS, 0
    began = time.perf_counter()
    while max_pages is None or pages < max_pages:
        page = exchange.fetch_ohlcv("BTC/USDT:USDT", "1m", since, 1000)
        pages += 1
        if not page:
            break
        rows.extend(page)
        since = page[-1][0] + 60_000
    frame = pd.DataFrame(rows, columns=["timestamp", "open", "high", "low", "close", "volume"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    with tempfile.TemporaryDirectory() as folder:
        frame.to_parquet(Path(folder) / "BTC_USDT_1m.parquet")
    return len(rows) / (time.perf_counter() - began)


def throttled(seconds: float, candles_per_request: int) -> dict:
    """Three series at the real budget for about `seconds`; the server enforces 2400 a minute."""
    weight = KLINES_WEIGHT[candles_per_request]
    pages_per_second = 2400 * 0.98 / 60 / weight
    per_series = int(seconds * pages_per_second / 3) * candles_per_request
    server = LoopbackServer(per_series, "BTCUSDT,ETHUSDT,SOLUSDT", weight_limit=2400)
    with server as url, tempfile.TemporaryDirectory() as folder:
        client = ExchangeClient(api_url=url)  # the default budget: 2400 a minute, paced at 98 %
        began = time.perf_counter()
        sync_candles(
            client, SeriesStore(folder), ["BTC/USDT", "ETH/USDT", "SOL/USDT"], ["1m"], START_MS, None,
            DownloadSettings(progress=False, max_workers=3, candles_per_request=candles_per_request),
        )  # fmt: skip
        elapsed = time.perf_counter() - began
    stats = server.stats
    share = (stats["klines_requests"] - 1) * weight / stats["klines_seconds"] / (2400 / 60)
    return {
        "share": share,
        "seconds": elapsed,
        **stats,
        "weight": weight,
        "limit": candles_per_request,
    }


def seed_universe(now: pd.Timestamp) -> dict[str, int]:
    counts = {}
    for symbol, listed in LISTED.items():
        first = max(pd.Timestamp(START, tz="UTC"), pd.Timestamp(listed, tz="UTC"))
        for timeframe, minutes in (("1m", 1), ("5m", 5)):
            counts[f"{symbol} {timeframe}"] = int((now - first) / pd.Timedelta(minutes=minutes))
    return counts


def projected_minutes(counts: dict[str, int], candles_per_request: int, share: float) -> float:
    weight = (
        sum(math.ceil(n / candles_per_request) for n in counts.values())
        * KLINES_WEIGHT[candles_per_request]
    )
    return weight / (2400 * share)


MEMORY_PROBE = """
import json, sys, tempfile, threading, time
from trading_engine.data.storage import SeriesStore
from trading_engine.sources.exchange import DownloadSettings, ExchangeClient, WeightBudget, sync_candles

def rss_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

peak, running = [0.0], [True]
def sample():
    while running[0]:
        peak[0] = max(peak[0], rss_mib())
        time.sleep(0.005)

store = SeriesStore(tempfile.mkdtemp())
client = ExchangeClient(api_url=sys.argv[1], budget=WeightBudget(limit=None))
baseline = rss_mib()
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
sync_candles(client, store, ["BTC/USDT"], ["1m"], 1577836800000, None, DownloadSettings(progress=False, max_workers=1))
downloaded = peak[0]
frame = store.read("BTC_USDT_1m")
running[0] = False
sampler.join()
print(json.dumps({"baseline": baseline, "downloaded": downloaded, "read": peak[0], "rows": len(frame)}))
"""


def memory(candles: int) -> dict:
    with LoopbackServer(candles) as url:
        began = time.perf_counter()
        output = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, url],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
        result = json.loads(output.strip().splitlines()[-1])
    result["seconds"] = time.perf_counter() - began
    assert result["rows"] == candles
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, short throttled runs")
    args = parser.parse_args()
    n_throughput = 50_000 if args.quick else 300_000
    memory_sizes = (100_000, 300_000) if args.quick else (500_000, 2_500_000)
    throttled_seconds = (15, 10) if args.quick else (65, 30)

    print(f"# Ingestion benchmark, {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"python {platform.python_version()}, ccxt {ccxt.__version__}\n")  # fmt: skip

    with LoopbackServer(n_throughput) as url:
        ours_download, ours_layer = ours(url, n_throughput)
        peer = plain_ccxt(url)
        peer_throttled = plain_ccxt(url, enable_rate_limit=True, max_pages=20)
    print(f"## (a) Throughput, throttling off, {n_throughput:,} 1m candles over loopback\n")
    print("| client | candles/s | ratio to plain ccxt loop |\n| --- | ---: | ---: |")
    print(
        f"| ours: sync_candles (parse, checks, atomic month commits) | {ours_download:,.0f} | {ours_download / peer:.2f} |"
    )
    print(
        f"| ours: + consolidation + validation (raw layer ready) | {ours_layer:,.0f} | {ours_layer / peer:.2f} |"
    )
    print(f"| plain ccxt fetch_ohlcv loop, one Parquet write at the end | {peer:,.0f} | 1.00 |")
    print(
        f"| plain ccxt loop with ccxt's own throttle (20 pages) | {peer_throttled:,.0f} | {peer_throttled / peer:.2f} |\n"
    )

    now = pd.Timestamp.now(tz="UTC")
    universe = seed_universe(now)
    total = sum(universe.values())
    print(
        "## (b) Throttled at the real budget (2400 weight/min, enforced by the server), 3 series\n"
    )
    print(
        f"Seed universe on {now:%Y-%m-%d}: {total:,} candles ("
        + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in universe.items())
        + ")\n"
    )
    print(
        "| candles a request (weight) | run s | requests | share of budget | max weight in a server minute | 429s | projected seed universe | projected 11 M candles |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for seconds, limit in zip(throttled_seconds, (1000, 499), strict=True):
        result = throttled(seconds, limit)
        minutes = projected_minutes(universe, limit, result["share"])
        eleven = 11_000_000 / limit * KLINES_WEIGHT[limit] / (2400 * result["share"])
        print(f"| {limit} ({result['weight']}) | {result['seconds']:.0f} | {result['klines_requests']} | {result['share']:.1%} | "
              f"{result['max_window_weight']} | {result['rejected_for_weight']} | {minutes:.1f} min | {eleven:.1f} min |")  # fmt: skip
    print(
        f"\nccxt's own throttle (rateLimit 50 ms x cost 5 per page): {60_000 / 250 * 5 / 2400:.0%} of the budget.\n"
    )

    print(
        "## (c) Peak memory of a full-history 1m download of one series (RSS sampled every 5 ms)\n"
    )
    print(
        "| candles | run s | RSS before the download MiB | peak during the download MiB "
        "| peak reading the series back MiB |\n| ---: | ---: | ---: | ---: | ---: |"
    )
    results = []
    for size in memory_sizes:
        result = memory(size)
        results.append(result)
        print(
            f"| {size:,} | {result['seconds']:.0f} | {result['baseline']:.0f} "
            f"| {result['downloaded']:.0f} | {result['read']:.0f} |"
        )
    small, large = results
    growth = (large["downloaded"] - small["downloaded"]) / (
        (memory_sizes[1] - memory_sizes[0]) / 1e6
    )
    read_cost = (large["read"] - large["baseline"]) / (memory_sizes[1] / 1e6)
    print(
        f"\nThe download's peak grows {growth:.1f} MiB per million candles (one chunk plus one "
        f"month in memory); reading a whole series back costs about {read_cost:.0f} MiB per million."
    )


if __name__ == "__main__":
    main()
