"""Benchmark: our feature code against the `ta` package, side by side in one run.

1. The indicators both compute, on the same 1,000,000 synthetic 1m candles: time in `ta` and in
   `trading_engine.features.indicators`, with the ratio (and a check that the values agree).
2. The full feature set + targets for 1,000,000 and 2,600,000 candles: wall time (best of 3,
   and the first, cold call) and peak memory, measured in a fresh subprocess per size
   (peak resident set size of the whole process, and the tracemalloc peak of the computation).

    .venv/bin/python bench/bench_features.py [--rows 1000000] [--large-rows 2600000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from importlib.metadata import version

import numpy as np
import pandas as pd

from trading_engine.data.schema import to_indexed
from trading_engine.features import compute_features, compute_targets
from trading_engine.features import indicators as ind
from trading_engine.sources.synthetic import generate_candles

START = pd.Timestamp("2021-01-01", tz="UTC")


def synthetic_candles(rows: int) -> pd.DataFrame:
    end = START + pd.Timedelta(minutes=rows)
    return to_indexed(generate_candles(["BTC/USDT"], "1m", START, end, seed=7)["BTC/USDT:USDT"])


def timed(function, repeats: int = 1):
    """(best seconds over `repeats`, last result)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def indicator_pairs(c: pd.DataFrame):
    """(name, ta call, our call, our value -> ta's value) for the indicators both libraries have."""
    import ta

    hi, lo, cl, vo = c["high"], c["low"], c["close"], c["volume"]
    H, L, C, V = (c[k].to_numpy() for k in ("high", "low", "close", "volume"))

    def macd_ta():
        m = ta.trend.MACD(cl, 26, 12, 9)
        return np.column_stack([m.macd(), m.macd_signal(), m.macd_diff()])

    def stoch_ta(window):
        s = ta.momentum.StochasticOscillator(hi, lo, cl, window, 3)
        return np.column_stack([s.stoch(), s.stoch_signal()])

    def stoch_ours(window):
        k = ind.stochastic_k(H, L, C, window)
        return np.column_stack([k, ind.rolling_mean(k, 3)])

    def adx_ta():
        a = ta.trend.ADXIndicator(hi, lo, cl, 14)
        return a.adx().to_numpy()

    def obv_window_ta():  # the OBV change over 20 bars, per unit of volume (our feat_obv_slope)
        obv = ta.volume.on_balance_volume(cl, vo)
        return (obv.diff(20) / vo.rolling(20).sum()).to_numpy()

    pairs = [
        *((f"RSI {w}", lambda w=w: ta.momentum.rsi(cl, w), lambda w=w: ind.rsi(C, w)) for w in (7, 14, 21)),
        ("ROC 1/5/10/20", lambda: np.column_stack([ta.momentum.roc(cl, w) / 100 for w in (1, 5, 10, 20)]),
         lambda: np.column_stack([ind.rate_of_change(C, w) for w in (1, 5, 10, 20)])),
        ("MACD 12/26/9", macd_ta, lambda: np.column_stack(ind.macd(C, 12, 26, 9))),
        *((f"Stochastic {w} (%K, %D)", lambda w=w: stoch_ta(w), lambda w=w: stoch_ours(w)) for w in (14, 21)),
        ("EMA 5/10/20/50/100", lambda: np.column_stack([ta.trend.ema_indicator(cl, s) for s in (5, 10, 20, 50, 100)]),
         lambda: np.column_stack([ind.ema(C, s) for s in (5, 10, 20, 50, 100)])),
        ("ADX 14", adx_ta, lambda: ind.adx(H, L, C, 14)[0]),
        ("ATR 14", lambda: ta.volatility.average_true_range(hi, lo, cl, 14), lambda: ind.atr(H, L, C, 14)),
        ("OBV (20-bar slope)", obv_window_ta,
         lambda: ind.safe_divide(ind.rolling_sum(ind.on_balance_volume_flow(C, V), 20), ind.rolling_sum(V, 20), 0.0)),
        ("VWAP 20", lambda: ta.volume.volume_weighted_average_price(hi, lo, cl, vo, 20),
         lambda: ind.volume_weighted_average_price(H, L, C, V, 20)),
        ("CMF 20", lambda: ta.volume.chaikin_money_flow(hi, lo, cl, vo, 20),
         lambda: ind.chaikin_money_flow(H, L, C, V, 20)),
    ]
    return pairs


def compare_with_ta(c: pd.DataFrame) -> list[dict]:
    rows = []
    for name, ta_call, our_call in indicator_pairs(c):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ta_seconds, ta_value = timed(ta_call)
        our_seconds, our_value = timed(our_call, repeats=3)
        a = np.asarray(ta_value, dtype=np.float64).reshape(len(c), -1)[1_000:]
        b = np.asarray(our_value, dtype=np.float64).reshape(len(c), -1)[1_000:]
        both = np.isfinite(a) & np.isfinite(b)
        max_rel = float(np.max(np.abs(a - b)[both] / (np.abs(a[both]) + 1e-12)))
        rows.append({"indicator": name, "ta_s": ta_seconds, "ours_s": our_seconds, "max_rel_diff": max_rel})
        print(f"  {name:26s} ta {ta_seconds:8.3f} s   ours {our_seconds:7.4f} s", file=sys.stderr)
    return rows


def measure_full(candles_path: str) -> dict:
    """In this (fresh) process: full features + targets on the candles stored at `candles_path`;
    wall time and peak memory (the process's peak RSS includes Python, the libraries and the
    candles themselves)."""
    candles = pd.read_parquet(candles_path)
    reference = candles  # the series itself as the cross-asset reference (as for BTC)

    def run() -> None:  # both tables alive together, as in the pipeline; none kept after
        features = compute_features(candles, reference)
        targets = compute_targets(candles)
        del features, targets

    def peak_rss() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    rss_before = peak_rss()
    first, _ = timed(run)
    best, _ = timed(run, repeats=3)
    rss_peak = peak_rss()  # read before tracemalloc, whose own bookkeeping takes memory
    tracemalloc.start()
    run()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"rows": len(candles), "first_s": first, "best_s": best, "rss_before_bytes": rss_before,
            "rss_peak_bytes": rss_peak, "tracemalloc_peak_bytes": traced_peak}


def full_in_subprocess(rows: int, folder: str) -> dict:
    path = os.path.join(folder, f"candles_{rows}.parquet")
    synthetic_candles(rows).to_parquet(path)
    output = subprocess.run([sys.executable, __file__, "--measure-full", path],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--large-rows", type=int, default=2_600_000)
    parser.add_argument("--measure-full", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_full:
        print(json.dumps(measure_full(args.measure_full)))
        return

    print(f"generating {args.rows:,} synthetic 1m candles ...", file=sys.stderr)
    candles = synthetic_candles(args.rows)
    load = os.getloadavg()[0]
    indicator_rows = compare_with_ta(candles)
    del candles
    with tempfile.TemporaryDirectory() as folder:
        full = [full_in_subprocess(n, folder) for n in (args.rows, args.large_rows)]

    print(f"\n{dt.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load:.2f} at start; python {platform.python_version()}, ta {version('ta')}, "
          f"numpy {np.__version__}, pandas {pd.__version__}")
    print(f"`.venv/bin/python bench/bench_features.py --rows {args.rows} --large-rows {args.large_rows}`\n")
    print(f"Indicators on {args.rows:,} synthetic 1m candles (ours: best of 3; ta: one run):\n")
    print("| indicator | ta (s) | ours (s) | speed-up | max rel. diff after 1,000 bars |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in indicator_rows:
        print(f"| {r['indicator']} | {r['ta_s']:.3f} | {r['ours_s']:.4f} | {r['ta_s'] / r['ours_s']:,.0f}x | {r['max_rel_diff']:.1e} |")
    ta_total = sum(r["ta_s"] for r in indicator_rows)
    ours_total = sum(r["ours_s"] for r in indicator_rows)
    print(f"| **all of them** | **{ta_total:.2f}** | **{ours_total:.3f}** | **{ta_total / ours_total:,.0f}x** | |")
    print("\nOBV: ta counts an unchanged close as an up bar, we (Granville) as no change, hence the "
          "difference; every other row computes the same quantity.")
    print("\nFull feature set (62 features, with the cross-asset ones) + targets (4 horizons), "
          "one fresh process per size:\n")
    print("| candles | first call (s) | best of 3 (s) | process RSS with candles loaded (MB) "
          "| peak RSS of the process (MB) | tracemalloc peak of one call (MB) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in full:
        print(f"| {r['rows']:,} | {r['first_s']:.2f} | {r['best_s']:.2f} | {r['rss_before_bytes'] / 2**20:,.0f} | "
              f"{r['rss_peak_bytes'] / 2**20:,.0f} | {r['tracemalloc_peak_bytes'] / 2**20:,.0f} |")


if __name__ == "__main__":
    main()
