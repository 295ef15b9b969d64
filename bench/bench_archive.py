"""Archive benchmark: the archive source (download, verify, parse, store) against the REST path,
in one run, over loopback servers in a process of their own
(tests/sources/loopback/binance_archive.py: real zipped CSVs with checksums, and the REST API of
the same candles).

(a) Throughput: a year of 1m candles for three symbols (1,576,800 candles, 36 monthly zips)
    through `ArchiveSource.sync` into a fresh store, against `ExchangeSource.sync` (REST pages,
    throttling off) on a month of the same candles; candles/s and the ratio.
(b) Projection of the seed universe (BTC, ETH, SOL; 1m and 5m; 2020-01-01 to now: 12.6 M
    candles) from (a)'s rate and the size of Binance's real zips, at a few bandwidths.
(c) Peak memory (max RSS) of the archive sync of one symbol, 6, 12 and 24 months, each in
    a process of its own: flat in the number of months.

Run: `.venv/bin/python bench/bench_archive.py` (about 3 minutes; `--months 3` for a smoke run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import pandas as pd

from trading_engine.data.storage import SeriesStore
from trading_engine.sources import Window
from trading_engine.sources.archive import ArchiveSettings, ArchiveSource
from trading_engine.sources.exchange import (
    DownloadSettings,
    ExchangeClient,
    ExchangeSource,
    WeightBudget,
)

ROOT = Path(__file__).resolve().parents[1]
SERVER_SCRIPT = ROOT / "tests" / "sources" / "loopback" / "binance_archive.py"
SHARED_CSV = ROOT.parent / "shared" / "data" / "binance_archive_csv" / "BTCUSDT-5m-2024-11.csv"
START = "2023-01-01"
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
SEED_UNIVERSE_CANDLES = 12_600_000  # docs/benchmarks.md, "Ingestion" (b)
SEED_UNIVERSE_REST_MINUTES = 26.3  # the weight budget's floor at 1000 candles a request


class LoopbackServers:
    """binance_archive.py in a subprocess: (archive URL, REST URL)."""

    def __init__(self, months: int, symbols: str) -> None:
        self.arguments = [sys.executable, str(SERVER_SCRIPT), "--months", str(months),
                          "--start", START, "--symbols", symbols]  # fmt: skip

    def __enter__(self) -> tuple[str, str, dict]:
        self.process = subprocess.Popen(
            self.arguments, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        archive, rest = self.process.stdout.readline().strip(), self.process.stdout.readline().strip()
        return archive, rest, json.loads(self.process.stdout.readline())

    def __exit__(self, *exc) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def client(rest_url: str) -> ExchangeClient:
    return ExchangeClient(api_url=rest_url, budget=WeightBudget(limit=None))


def archive_sync(archive_url: str, rest_url: str, symbols, months: int, folder: Path) -> dict:
    window = Window(pd.Timestamp(START, tz="UTC"), pd.Timestamp(START, tz="UTC") + pd.DateOffset(months=months))
    source = ArchiveSource(
        client(rest_url), ArchiveSettings(base_url=archive_url, max_connections=8),
        DownloadSettings(progress=False, max_workers=3),
    )  # fmt: skip
    store = SeriesStore(folder)
    began = time.perf_counter()
    reports = source.sync(store, list(symbols), ["1m"], window)
    seconds = time.perf_counter() - began
    candles = sum(r["added"] for r in reports.values())
    zipped = sum(r["archive_bytes"] for r in reports.values())
    assert all(r["rest_candles"] == 0 for r in reports.values())
    return {"candles": candles, "seconds": seconds, "zip_bytes": zipped,
            "files": sum(r["archive_files"] for r in reports.values())}  # fmt: skip


def rest_sync(rest_url: str, folder: Path, days: int = 30) -> dict:
    start = pd.Timestamp(START, tz="UTC")
    window = Window(start, start + pd.Timedelta(days=days))
    source = ExchangeSource(client(rest_url), DownloadSettings(progress=False, max_workers=1))
    began = time.perf_counter()
    reports = source.sync(SeriesStore(folder), ["BTC/USDT"], ["1m"], window)
    seconds = time.perf_counter() - began
    return {"candles": sum(r["added"] for r in reports.values()), "seconds": seconds}


def real_zip_bytes_per_candle() -> float | None:
    """Bytes a candle takes in a real Binance archive zip (the shared monthly 5m CSV, zipped)."""
    if not SHARED_CSV.is_file():
        return None
    data = SHARED_CSV.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(SHARED_CSV.name, data)
    rows = data.count(b"\n") - 1
    return len(buffer.getvalue()) / rows


def memory_run(months: int) -> dict:
    """In a fresh process: one symbol's archive sync of `months` months, peak RSS sampled."""
    output = subprocess.run([sys.executable, __file__, "--measure-memory", str(months)],
                            check=True, capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout  # fmt: skip
    return json.loads(output.strip().splitlines()[-1])


def measure_memory(months: int) -> dict:
    def rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    with LoopbackServers(months, "BTCUSDT") as (archive_url, rest_url, _), \
            tempfile.TemporaryDirectory() as folder:  # fmt: skip
        before, peak, running = rss(), [0], [True]

        def sample() -> None:
            while running[0]:
                peak[0] = max(peak[0], rss())
                time.sleep(0.005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result = archive_sync(archive_url, rest_url, ["BTC/USDT"], months, Path(folder))
        running[0] = False
        sampler.join()
    return {"months": months, "candles": result["candles"], "seconds": result["seconds"],
            "rss_before_bytes": before, "rss_peak_bytes": peak[0],
            "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--measure-memory", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_memory:
        print(json.dumps(measure_memory(args.measure_memory)))
        return

    load = os.getloadavg()
    symbols = ",".join(s.replace("/", "") for s in SYMBOLS)
    print(f"building {args.months} months of 1m zips for {symbols} ...", file=sys.stderr)
    with LoopbackServers(args.months, symbols) as (archive_url, rest_url, served), \
            tempfile.TemporaryDirectory() as folder:  # fmt: skip
        archive = archive_sync(archive_url, rest_url, SYMBOLS, args.months, Path(folder) / "archive")
        rest = rest_sync(rest_url, Path(folder) / "rest")
    assert archive["candles"] == served["candles"], (archive, served)
    memory = [memory_run(m) for m in (6, args.months, 2 * args.months)] if args.months >= 12 else []

    archive_rate = archive["candles"] / archive["seconds"]
    rest_rate = rest["candles"] / rest["seconds"]
    bytes_per_candle_loopback = archive["zip_bytes"] / archive["candles"]
    bytes_per_candle = real_zip_bytes_per_candle() or bytes_per_candle_loopback
    print(f"\n{dt.date.today()}, {platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{load[0]:.2f} at start; python {platform.python_version()}")
    print("`.venv/bin/python bench/bench_archive.py`\n")
    print("| path | candles | seconds | candles/s | ratio to REST |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| archive: {archive['files']} monthly zips, 8 connections (download, verify, parse, store) "
          f"| {archive['candles']:,} | {archive['seconds']:.2f} | {archive_rate:,.0f} | {archive_rate / rest_rate:.1f}x |")
    print(f"| REST, unthrottled (ccxt raw klines, 1000 a page) | {rest['candles']:,} | "
          f"{rest['seconds']:.2f} | {rest_rate:,.0f} | 1.0x |")
    print(f"\nzip bytes per candle: {bytes_per_candle_loopback:.1f} (loopback, random walk), "
          f"{bytes_per_candle:.1f} (a real Binance monthly file)")
    ours = SEED_UNIVERSE_CANDLES / archive_rate
    print(f"\nSeed universe ({SEED_UNIVERSE_CANDLES / 1e6:.1f} M candles): our own time {ours:.0f} s; "
          f"REST at the weight budget {SEED_UNIVERSE_REST_MINUTES} min.")
    print("| bandwidth | download | projected (download and our work overlap) |")
    print("| ---: | ---: | ---: |")
    for mbit in (50, 200, 1000):
        download = SEED_UNIVERSE_CANDLES * bytes_per_candle * 8 / (mbit * 1e6)
        print(f"| {mbit} Mbit/s | {download:.0f} s | {max(download, ours):.0f} s |")
    if memory:
        print("\n| months of 1m (one symbol) | candles | seconds | RSS before (MiB) | peak RSS (MiB) |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for m in memory:
            print(f"| {m['months']} | {m['candles']:,} | {m['seconds']:.1f} | "
                  f"{m['rss_before_bytes'] / 2**20:.0f} | {m['rss_peak_bytes'] / 2**20:.0f} |")


if __name__ == "__main__":
    main()
