"""Benchmark: our feature code against its peers, side by side in one run.

1. The indicators both compute, on the same 1,000,000 synthetic 1m candles: time in the `ta`
   package and in `trading_engine.features.indicators`, with the ratio (and a check that the
   values agree).
2. The primitives on TA-Lib against the pandas / scipy versions they replaced (rolling windows,
   `lfilter` recursions), same data, with the largest difference: what moved to TA-Lib and why.
3. The full feature set (71 features: OHLCV, order flow, funding) + targets for 1,000,000 and
   2,600,000 candles: wall time (best of 3, and the first, cold call), the time per feature
   group, and peak memory, each size in a fresh subprocess (peak resident set size of the whole
   process, and the tracemalloc peak of the computation).
4. The memory of the features pipeline (feature table, then model input) on 2,600,000 candles,
   stage by stage, in a fresh subprocess (RSS sampled every 2 ms).
5. With `--against COMMIT`: the full set + targets of that commit's code (read with `git show`)
   against today's, alternating in rounds in one process, on 1,000,000 candles.

    .venv/bin/python bench/bench_features.py [--rows 1000000] [--large-rows 2600000] [--against 060e928]
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
import threading
import time
import tracemalloc
import warnings
from importlib.metadata import version

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.signal import lfilter

from trading_engine.data.schema import to_indexed
from trading_engine.features import build_model_input, compute_features, compute_targets
from trading_engine.features import feature_set as fs
from trading_engine.features import indicators as ind
from trading_engine.sources.synthetic import generate_candles, generate_funding_rates

START = pd.Timestamp("2021-01-01", tz="UTC")


MINUTE = pd.Timedelta(minutes=1)
# As the catalog saves and loads feature_tables and model_input (conf/base/catalog.yml).
SAVE_ARGS = {"use_dictionary": False}
FEATURE_TABLE_LOAD_ARGS = {"to_pandas_kwargs": {"self_destruct": True, "split_blocks": True}}


def synthetic_candles(rows: int) -> pd.DataFrame:
    end = START + pd.Timedelta(minutes=rows)
    return to_indexed(generate_candles(["BTC/USDT"], "1m", START, end, seed=7)["BTC/USDT:USDT"])


def synthetic_funding(rows: int) -> pd.DataFrame:
    return generate_funding_rates(["BTC/USDT"], START, START + rows * MINUTE, seed=7)["BTC/USDT:USDT"]


def previous_primitives(c: pd.DataFrame):
    """(name, the pandas / scipy version we had, the TA-Lib-based one we have)."""
    C, L, V = (c[k].to_numpy() for k in ("close", "low", "volume"))
    r = np.diff(np.log(C), prepend=np.nan)

    def pandas_rolling(x, window, method, **options):
        return getattr(pd.Series(x, copy=False).rolling(window, min_periods=window), method)(**options).to_numpy()

    def lfilter_ema(x, span):
        alpha = 2.0 / (span + 1.0)
        y, _ = lfilter([alpha], [1.0, alpha - 1.0], x[1:], zi=[(1.0 - alpha) * x[0]])
        return np.concatenate([[x[0]], y])

    return [
        ("rolling sum 20 (volume)", lambda: pandas_rolling(V, 20, "sum"), lambda: ind.rolling_sum(V, 20)),
        ("rolling mean 20 (volume)", lambda: pandas_rolling(V, 20, "mean"), lambda: ind.rolling_mean(V, 20)),
        ("rolling std 20 (log returns)", lambda: pandas_rolling(r, 20, "std"), lambda: ind.rolling_std(r, 20)),
        ("rolling std 20 (price levels)", lambda: pandas_rolling(C, 20, "std", ddof=0),
         lambda: ind.rolling_std(C, 20, ddof=0)),
        ("rolling min 14", lambda: pandas_rolling(L, 14, "min"), lambda: ind.rolling_min(L, 14)),
        ("EMA 20 (lfilter / TA-Lib)", lambda: lfilter_ema(C, 20), lambda: ind.ema(C, 20)),
        ("rolling correlation 50", lambda: pd.Series(r).rolling(50).corr(pd.Series(np.roll(r, 1))).to_numpy(),
         lambda: ind.rolling_correlation(r, np.roll(r, 1), 50)),
    ]


def compare_primitives(c: pd.DataFrame) -> list[dict]:
    rows = []
    for name, previous, ours in previous_primitives(c):
        previous_seconds, a = timed(previous, repeats=3)
        our_seconds, b = timed(ours, repeats=3)
        both = np.isfinite(a) & np.isfinite(b)
        both[:1_000] = False  # after the EMA seeds have been forgotten
        max_rel = float(np.max(np.abs(a - b)[both] / (np.abs(b[both]) + 1e-300)))
        rows.append({"primitive": name, "previous_s": previous_seconds, "ours_s": our_seconds,
                     "max_rel_diff": max_rel})
    return rows


def exact_std_errors(c: pd.DataFrame) -> dict:
    """Relative error of the rolling std of price levels at bar 862,000 (or the last), pandas'
    online update and TA-Lib's, against an exact two-pass computation."""
    close = c["close"].to_numpy()
    t = min(862_000, len(close) - 1)
    exact = np.std(close[t - 19 : t + 1])
    pandas_value = pd.Series(close).rolling(20).std(ddof=0).to_numpy()[t]
    return {"bar": t, "pandas": abs(pandas_value / exact - 1),
            "talib": abs(ind.rolling_std(close, 20, ddof=0)[t] / exact - 1)}


def group_profile(candles: pd.DataFrame, funding: pd.DataFrame) -> dict[str, float]:
    """Seconds per feature group (best of 3), as compute_features runs them."""
    def once() -> dict[str, float]:
        c = fs._validated_ohlcv(candles, True)
        names = fs.feature_names()
        f = fs._FeatureWriter(np.empty((len(candles), len(names)), dtype=np.float32, order="F"), names)
        times, began = {}, time.perf_counter()
        log_return = np.diff(np.log(c["close"]), prepend=np.nan)
        atr = ind.atr(c["high"], c["low"], c["close"], fs.ATR_WINDOW)
        times["returns, ATR"] = time.perf_counter() - began
        steps = [("volatility", lambda: fs._volatility(f, c, log_return, atr)),
                 ("momentum", lambda: fs._momentum(f, c)), ("trend", lambda: fs._trend(f, c, atr)),
                 ("volume", lambda: fs._volume(f, c)),
                 ("microstructure", lambda: fs._microstructure(f, c, log_return)),
                 ("calendar", lambda: fs._calendar(f, candles.index)),
                 ("cross-asset", lambda: fs._cross_asset(f, log_return, np.log(c["close"]))),
                 ("order flow", lambda: fs._order_flow(f, c)),
                 ("funding", lambda: fs._funding(f, candles.index, funding, MINUTE)),
                 ("targets", lambda: compute_targets(candles))]
        for name, step in steps:
            began = time.perf_counter()
            step()
            times[name] = time.perf_counter() - began
        return times

    runs = [once() for _ in range(3)]
    return {name: min(run[name] for run in runs) for name in runs[0]}


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
    funding = synthetic_funding(len(candles))

    def run() -> None:  # both tables alive together, as in the pipeline; none kept after
        features = compute_features(candles, reference, funding=funding, timeframe=MINUTE)
        targets = compute_targets(candles)
        assert features.shape[1] == len(fs.FEATURE_NAMES)
        del features, targets

    def peak_rss() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    rss_before = peak_rss()
    first, _ = timed(run)
    best, _ = timed(run, repeats=3)
    rss_peak = peak_rss()  # read before tracemalloc, whose own bookkeeping takes memory
    groups = group_profile(candles, funding)
    tracemalloc.start()
    run()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"rows": len(candles), "first_s": first, "best_s": best, "rss_before_bytes": rss_before,
            "rss_peak_bytes": rss_peak, "tracemalloc_peak_bytes": traced_peak, "groups_s": groups}


def full_in_subprocess(rows: int, folder: str) -> dict:
    path = os.path.join(folder, f"candles_{rows}.parquet")
    synthetic_candles(rows).to_parquet(path)
    output = subprocess.run([sys.executable, __file__, "--measure-full", path],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def measure_pipeline_memory(candles_path: str, folder: str) -> dict:
    """In this (fresh) process: the features pipeline's work for one series, stage by stage,
    as its nodes do it (the feature table saved to Parquet, read back for the model input);
    RSS sampled every 2 ms, the peak of each stage above the RSS before the first."""
    def rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    peak, running = [0], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)

    threading.Thread(target=sample, daemon=True).start()
    stages, start_rss = [], rss()

    def stage(name: str, work):
        peak[0] = rss()
        began = time.perf_counter()
        result = work()
        stages.append({"stage": name, "seconds": time.perf_counter() - began,
                       "peak_mib": (peak[0] - start_rss) / 2**20, "after_mib": (rss() - start_rss) / 2**20})
        return result

    table_path = os.path.join(folder, "feature_table.parquet")
    candles = stage("read the candles", lambda: to_indexed(pd.read_parquet(candles_path)))
    funding = synthetic_funding(len(candles))
    features = stage("features (71, float32)", lambda: compute_features(
        candles, None, funding=funding, timeframe=MINUTE))
    targets = stage("targets (4 horizons)", lambda: compute_targets(candles))
    table = stage("feature table = features + targets", lambda: pd.concat([features, targets], axis=1))
    features = targets = None  # freed, as when the node's callable returns
    stage("save the feature table (Parquet)", lambda: table.to_parquet(table_path, **SAVE_ARGS))
    table = candles = None
    candles = stage("read the candles again", lambda: to_indexed(pd.read_parquet(candles_path)))
    table = stage("read the feature table", lambda: pd.read_parquet(table_path, **FEATURE_TABLE_LOAD_ARGS))
    stage("release Arrow's decoding buffers", pa.default_memory_pool().release_unused)
    model_input = stage("build the model input", lambda: build_model_input(
        candles, table, funding, warmup_bars=fs.WARMUP_BARS, timeframe=MINUTE))
    table = candles = None
    stage("save the model input (Parquet)",
          lambda: model_input.to_parquet(os.path.join(folder, "mi.parquet"), **SAVE_ARGS))
    running[0] = False
    return {"rows": len(model_input), "start_mib": start_rss / 2**20, "stages": stages,
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def pipeline_memory_in_subprocess(rows: int, folder: str) -> dict:
    path = os.path.join(folder, f"candles_{rows}.parquet")
    if not os.path.exists(path):
        synthetic_candles(rows).reset_index().to_parquet(path)
    output = subprocess.run([sys.executable, __file__, "--pipeline-memory", path, "--folder", folder],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def against_commit(commit: str, rows: int, rounds: int = 5) -> dict[str, float]:
    """Best seconds of the full set + targets: `commit`'s code (features/indicators.py,
    feature_set.py, targets.py from `git show`) against today's, in alternating rounds."""
    import importlib.util

    folder = tempfile.mkdtemp()
    modules = {}
    for name in ("indicators", "feature_set", "targets"):
        source = subprocess.run(["git", "show", f"{commit}:src/trading_engine/features/{name}.py"],
                                check=True, capture_output=True, text=True, cwd=os.path.dirname(__file__)).stdout
        source = source.replace("from trading_engine.features import indicators as ind", "import previous_indicators as ind")
        path = os.path.join(folder, f"previous_{name}.py")
        with open(path, "w") as handle:
            handle.write(source)
    sys.path.insert(0, folder)
    for name in ("indicators", "feature_set", "targets"):
        spec = importlib.util.spec_from_file_location(f"previous_{name}", os.path.join(folder, f"previous_{name}.py"))
        modules[name] = importlib.util.module_from_spec(spec)
        sys.modules[f"previous_{name}"] = modules[name]
        spec.loader.exec_module(modules[name])
    candles = synthetic_candles(rows)
    funding = synthetic_funding(rows)
    runs = {
        f"{commit}: its {len(modules['feature_set'].FEATURE_NAMES)} features + targets": lambda: (
            modules["feature_set"].compute_features(candles, candles), modules["targets"].compute_targets(candles)),
        f"today: the same {len(fs.OHLCV_FEATURE_NAMES)} features + targets": lambda: (
            compute_features(candles, candles, order_flow=False), compute_targets(candles)),
        f"today: all {len(fs.FEATURE_NAMES)} features + targets": lambda: (
            compute_features(candles, candles, funding=funding, timeframe=MINUTE), compute_targets(candles)),
    }
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            best[name] = min(best[name], timed(run)[0])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--large-rows", type=int, default=2_600_000)
    parser.add_argument("--measure-full", help=argparse.SUPPRESS)
    parser.add_argument("--pipeline-memory", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--against", help="a commit whose feature code to time against today's")
    args = parser.parse_args()
    if args.against:
        load = os.getloadavg()[0]
        best = against_commit(args.against, args.rows)
        print(f"\n{dt.date.today()}, load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at the end; "
              f"{args.rows:,} candles, best of 5 alternating rounds:\n")
        print("| code | seconds |\n| --- | ---: |")
        for name, seconds in best.items():
            print(f"| {name} | {seconds:.3f} |")
        return
    if args.measure_full:
        print(json.dumps(measure_full(args.measure_full)))
        return
    if args.pipeline_memory:
        print(json.dumps(measure_pipeline_memory(args.pipeline_memory, args.folder)))
        return

    print(f"generating {args.rows:,} synthetic 1m candles ...", file=sys.stderr)
    candles = synthetic_candles(args.rows)
    load = os.getloadavg()[0]
    indicator_rows = compare_with_ta(candles)
    primitive_rows = compare_primitives(candles)
    std_errors = exact_std_errors(candles)
    del candles
    with tempfile.TemporaryDirectory() as folder:
        full = [full_in_subprocess(n, folder) for n in (args.rows, args.large_rows)]
        memory = pipeline_memory_in_subprocess(args.large_rows, folder)
    load_after = os.getloadavg()[0]

    print(f"\n{dt.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load:.2f} at start, {load_after:.2f} at the end; python {platform.python_version()}, "
          f"ta {version('ta')}, TA-Lib {version('TA-Lib')}, numpy {np.__version__}, pandas {pd.__version__}")
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
    print("\nPrimitives, the pandas / scipy versions we had against TA-Lib's (best of 3 each):\n")
    print("| primitive | pandas / scipy (s) | TA-Lib + exact flat windows (s) | speed-up | max rel. diff after 1,000 bars |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in primitive_rows:
        print(f"| {r['primitive']} | {r['previous_s']:.4f} | {r['ours_s']:.4f} | "
              f"{r['previous_s'] / r['ours_s']:.1f}x | {r['max_rel_diff']:.1e} |")
    print(f"\nRolling std (20) of price levels at bar {std_errors['bar']:,} against an exact two-pass "
          f"computation: pandas {std_errors['pandas']:.1e}, TA-Lib {std_errors['talib']:.1e} relative error.")
    print(f"\nFull feature set ({len(fs.FEATURE_NAMES)} features: OHLCV, order flow, funding) + targets "
          "(4 horizons), one fresh process per size:\n")
    print("| candles | first call (s) | best of 3 (s) | process RSS with candles loaded (MB) "
          "| peak RSS of the process (MB) | tracemalloc peak of one call (MB) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in full:
        print(f"| {r['rows']:,} | {r['first_s']:.2f} | {r['best_s']:.2f} | {r['rss_before_bytes'] / 2**20:,.0f} | "
              f"{r['rss_peak_bytes'] / 2**20:,.0f} | {r['tracemalloc_peak_bytes'] / 2**20:,.0f} |")
    print(f"\nSeconds per group on {full[0]['rows']:,} candles (best of 3):\n")
    print("| group | " + " | ".join(full[0]["groups_s"]) + " |")
    print("| --- |" + " ---: |" * len(full[0]["groups_s"]))
    print("| s | " + " | ".join(f"{v:.3f}" for v in full[0]["groups_s"].values()) + " |")
    print(f"\nFeatures pipeline memory, one series of {args.large_rows:,} 1m candles (MiB above the "
          f"{memory['start_mib']:.0f} MiB of the process before; the process's max RSS "
          f"{memory['max_rss_mib']:,.0f} MiB):\n")
    print("| stage | seconds | peak during (MiB) | held after (MiB) |")
    print("| --- | ---: | ---: | ---: |")
    for r in memory["stages"]:
        print(f"| {r['stage']} | {r['seconds']:.2f} | {r['peak_mib']:,.0f} | {r['after_mib']:,.0f} |")


if __name__ == "__main__":
    main()
