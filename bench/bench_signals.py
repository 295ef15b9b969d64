"""Signals benchmark: one signals run for the three demo symbols, from the bar's close to the
ledger rows, with a warm store, against computing the features on the whole history; its memory
as the stored history grows; and the trailing window that makes live features equal the whole
history's.

(a) A loopback Binance server (tests/sources/loopback) serves 5m candles of BTC, ETH and SOL (the
    real ones of ../shared/data, 119,724 each, when present; else a synthetic year); a store is
    warmed over REST up to the previous bar. Then, bar after bar, the server's clock moves a
    second past the next close and one signals run is timed (a warm process: imports excluded):
    the REST sync (markets, clock, the new candle and funding of each series), the trailing
    window (lead + seq_len bars), validation, features, the demo model (transformer d_model 32,
    2 layers, seq_len 32, 62 features), the shared rule, the SQLite ledger's commit. Also the same
    run through a Kedro session, as `python -m trading_engine signals --every 5m` runs it.
(b) The peer: the features of the whole history of the three series (what a run would cost if
    it recomputed them).
(c) Memory: the peak of Python and numpy allocations (tracemalloc) of one run with 1, 4 and 13
    months stored, against the whole-history features.
(d) The lead: float32 feature values of a trailing window that differ from the whole history's,
    for windows of 300 (the warm-up) to 2,500 bars.

Run: `.venv/bin/python bench/bench_signals.py` (about 3 minutes; `--quick` for a smoke run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the loopback server lives in tests/

from kedro.framework.session import KedroSession  # noqa: E402
from kedro.framework.startup import bootstrap_project  # noqa: E402
from kedro.io.core import Version  # noqa: E402

from tests.conftest import make_test_project  # noqa: E402
from tests.sources.loopback.binance_rest import (  # noqa: E402
    BinanceFuturesServer,
    add_order_flow,
    market_id,
)
from trading_engine.data.schema import series_key  # noqa: E402
from trading_engine.data.storage import SeriesStore  # noqa: E402
from trading_engine.features import OHLCV_FEATURE_NAMES  # noqa: E402
from trading_engine.features.scaling import RobustScaler  # noqa: E402
from trading_engine.live.deployment import DeployedModelDataset, build_artifact  # noqa: E402
from trading_engine.live.ledger import Ledger, sqlite_url  # noqa: E402
from trading_engine.live.signals import ExchangeFeed, SignalSettings, run_signals  # noqa: E402
from trading_engine.live.window import FeatureRecipe  # noqa: E402
from trading_engine.models import build_model  # noqa: E402
from trading_engine.sources import Window  # noqa: E402
from trading_engine.sources.synthetic import generate_candles, generate_funding_rates  # noqa: E402
from trading_engine.trading import CostModel, TradingRule  # noqa: E402
from trading_engine.training import FoldModel  # noqa: E402

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")
SHARED = ROOT.parent / "shared" / "data" / "binance_futures_5m"
BAR = pd.Timedelta("5min")
RECIPE = FeatureRecipe(reference_symbol="BTC/USDT:USDT", order_flow=False, funding=False, warmup_bars=300)
DEMO_MODEL = {"d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64, "dropout": 0.1}
SEQ_LEN = 32
SECOND = pd.Timedelta(seconds=1)


def history(quick: bool) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], str]:
    """Series key -> candles; funding key -> settlements; where they come from."""
    if SHARED.is_dir() and not quick:
        candles = {series_key(s, "5m"): add_order_flow(pd.read_parquet(SHARED / f"{s.split('/')[0]}_USDT_5m.parquet"), i)
                   for i, s in enumerate(SYMBOLS)}
        source = "real Binance 5m candles (../shared/data)"
    else:
        end = pd.Timestamp("2025-01-01", tz="UTC") + (20_000 if quick else 119_724) * BAR
        frames = generate_candles(list(SYMBOLS), "5m", "2025-01-01", end, seed=3, signal_strength=0.25)
        candles = {series_key(s, "5m"): frame for s, frame in frames.items()}
        source = "synthetic 5m candles"
    first = min(frame["timestamp"].iloc[0] for frame in candles.values())
    last = max(frame["timestamp"].iloc[-1] for frame in candles.values())
    funding = {key.rsplit("_", 1)[0]: frame for key, frame in
               ((series_key(s, "5m"), f) for s, f in generate_funding_rates(list(SYMBOLS), first, last, seed=3).items())}
    return candles, funding, source


def demo_model() -> FoldModel:
    """The demo's transformer with random weights (a forward pass costs the same as a trained one)."""
    names = list(OHLCV_FEATURE_NAMES)
    model = build_model("transformer", len(names), SEQ_LEN, DEMO_MODEL).eval()
    scaler = RobustScaler(np.zeros(len(names), np.float32), np.ones(len(names), np.float32), 5.0)
    return FoldModel(model, "transformer", scaler, 0.003, names, SEQ_LEN, 0)


def deploy(folder: Path) -> None:
    model = demo_model()
    artifact = build_artifact(model.to_checkpoint(), series=sorted(series_key(s, "5m") for s in SYMBOLS),
                              timeframe="5m", horizon=15, rule=TradingRule(), costs=CostModel(), features=RECIPE,
                              data_range={}, evaluation={}, training={})
    DeployedModelDataset(filepath=str(folder / "deployed_model.pt"), pointer=str(folder / "deployed.json"),
                         version=Version(None, None)).save(artifact)


def load_deployed(folder: Path):
    return DeployedModelDataset(filepath=str(folder / "deployed_model.pt"), pointer=str(folder / "deployed.json"),
                                version=Version(None, None)).load()


def set_clock(server: BinanceFuturesServer, moment: pd.Timestamp) -> None:
    server.now_ms = int(moment.value // 1_000_000)


def feed_of(server: BinanceFuturesServer) -> ExchangeFeed:
    return ExchangeFeed.from_params({"api_url": server.url, "rate_limit": {"enabled": False},
                                     "download": {"max_workers": 3}})


def warm(folder: Path, server: BinanceFuturesServer, start: pd.Timestamp) -> tuple[SeriesStore, SeriesStore]:
    store, funding = SeriesStore(folder / "candles"), SeriesStore(folder / "funding")
    feed = feed_of(server)
    feed.source.sync(store, list(SYMBOLS), ["5m"], Window(start))
    feed.source.sync_funding(funding, list(SYMBOLS), Window(start))
    return store, funding


def timed_runs(server, stores, deployed, ledger, bars: list[pd.Timestamp]) -> list[float]:
    seconds = []
    for bar in bars:
        set_clock(server, bar + BAR + SECOND)
        began = time.perf_counter()
        report = run_signals(feed_of(server), *stores, deployed, ledger, SignalSettings())
        seconds.append(time.perf_counter() - began)
        assert report["written"] == 3, report
    return seconds


def kedro_runs(folder: Path, server, start: pd.Timestamp, bars: list[pd.Timestamp]) -> list[float]:
    """The same runs through a Kedro session (as the --every service runs them)."""
    project = make_test_project(folder, {
        "ingestion": {"source": "exchange", "api_url": server.url, "symbols": list(SYMBOLS), "timeframes": ["5m"],
                      "start": start.isoformat(), "end": None, "rate_limit": {"enabled": False},
                      "download": {"progress": False}}})
    set_clock(server, bars[0])
    warm(folder / "data" / "raw" / "store", server, start)
    deploy(folder / "data" / "models")
    bootstrap_project(project)
    seconds = []
    for bar in bars:
        set_clock(server, bar + BAR + SECOND)
        began = time.perf_counter()
        with KedroSession.create(project_path=project, env="test") as session:
            session.run(pipeline_names=["signals"])
        seconds.append(time.perf_counter() - began)
    return seconds


def timed(function) -> float:
    began = time.perf_counter()
    function()
    return time.perf_counter() - began


def peak_mb(function) -> tuple[float, object]:
    tracemalloc.start()
    result = function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 1e6, result


def whole_history(candles: dict[str, pd.DataFrame]):
    indexed = {key: frame.set_index("timestamp") for key, frame in candles.items()}
    return RECIPE.model_input(sorted(indexed), indexed, {}, "5m")


def lead_measurement(candles: dict[str, pd.DataFrame], quick: bool) -> list[tuple[int, int, int]]:
    """(window bars, float32 feature values that differ from the whole history's, values compared)
    at the last row of trailing windows ending at 40 bars spread over the history."""
    indexed = {key: frame.set_index("timestamp") for key, frame in candles.items()}
    n = min(len(frame) for frame in indexed.values())
    whole = {key: RECIPE.feature_table(key, indexed, None, "5m").to_numpy() for key in indexed}
    ends = np.linspace(3000, n, 10 if quick else 40).astype(int)
    rows = []
    for window in (300, 600, 1000, 1500, 2000, 2500):
        differing = compared = 0
        for end in ends:
            part = {key: frame.iloc[end - window:end] for key, frame in indexed.items()}
            for key in indexed:
                last = RECIPE.feature_table(key, part, None, "5m").to_numpy()[-1]
                differing += int((last != whole[key][end - 1]).sum())
                compared += last.size
        rows.append((window, differing, compared))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run on less data")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    candles, funding, source = history(args.quick)
    n = min(len(frame) for frame in candles.values())
    times = pd.DatetimeIndex(candles[series_key(SYMBOLS[0], "5m")]["timestamp"])
    bars = list(times[n - args.runs - 1: n - 1])
    server = BinanceFuturesServer({(market_id(k.rsplit("_", 1)[0]), "5m"): f for k, f in candles.items()},
                                  {market_id(k): f for k, f in funding.items()}).start()
    results: dict = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            deploy(folder / "models")
            deployed = load_deployed(folder / "models")
            months = {1: times[n - 1] - pd.Timedelta(days=31), 4: times[n - 1] - pd.Timedelta(days=122),
                      13: times[0]}
            peaks = {}
            for span, start in sorted(months.items()):
                set_clock(server, bars[0])
                print(f"warming a store of {span} months over REST ...", file=sys.stderr)
                stores = warm(folder / f"store_{span}", server, start)
                ledger = Ledger(sqlite_url(folder / f"ledger_{span}.db"))
                seconds = timed_runs(server, stores, deployed, ledger, bars[:-1])
                set_clock(server, bars[-1] + BAR + SECOND)
                peaks[span] = peak_mb(lambda stores=stores, ledger=ledger: run_signals(
                    feed_of(server), *stores, deployed, ledger, SignalSettings()))[0]
                results[span] = seconds
            print("timing through Kedro sessions ...", file=sys.stderr)
            kedro_seconds = kedro_runs(folder / "kedro", server, months[1], bars[:-1])
    finally:
        server.stop()
    began = time.perf_counter()
    whole_peak, _ = peak_mb(lambda: whole_history(candles))
    whole_features_s = time.perf_counter() - began
    window_bars = SignalSettings().lead_bars + SEQ_LEN
    trailing = {key: frame.iloc[n - window_bars:n] for key, frame in candles.items()}
    window_features_s = statistics.median(timed(lambda: whole_history(trailing)) for _ in range(5))
    lead = lead_measurement(candles, args.quick)

    run_median = statistics.median(results[13])
    print(f"\n{dt.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{load:.2f} at start, {os.getloadavg()[0]:.2f} at the end; {source}, {n:,} bars per series; "
          f"`.venv/bin/python bench/bench_signals.py{' --quick' if args.quick else ''}`\n")
    print("(a) One signals run, three series, warm store, from the bar's close (+1 s) to the ledger rows:\n")
    print("| path | median (s) | max (s) |\n| --- | ---: | ---: |")
    print(f"| `run_signals` (13 months stored) | {run_median:.2f} | {max(results[13]):.2f} |")
    print(f"| Kedro session, `signals` pipeline (as `--every 5m` runs it) | {statistics.median(kedro_seconds):.2f} | "
          f"{max(kedro_seconds):.2f} |")
    print("\n(b) Against the whole history (three series):\n")
    print("| work | seconds | vs the trailing window |\n| --- | ---: | ---: |")
    print(f"| features of the trailing window ({window_bars:,} bars each, one run's features step) | "
          f"{window_features_s:.3f} | 1x |")
    print(f"| features of the whole history ({n:,} bars each) | {whole_features_s:.2f} | "
          f"{whole_features_s / window_features_s:.0f}x |")
    print(f"| one whole signals run (sync, window, model, rule, ledger) | {run_median:.2f} | |")
    print("\n(c) Peak Python and numpy allocations (tracemalloc):\n")
    print("| stored history | one signals run (MB) | median run (s) |\n| --- | ---: | ---: |")
    for span in sorted(peaks):
        print(f"| {span} months | {peaks[span]:.1f} | {statistics.median(results[span]):.2f} |")
    print(f"| whole-history features ({n:,} bars each) | {whole_peak:.1f} | |")
    print("\n(d) Float32 feature values of a trailing window's last row that differ from the whole history's:\n")
    print("| window (bars) | differing | compared |\n| ---: | ---: | ---: |")
    for window, differing, compared in lead:
        print(f"| {window:,} | {differing:,} | {compared:,} |")


if __name__ == "__main__":
    main()
