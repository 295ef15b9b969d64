"""Benchmark: our vectorised backtest against backtesting.py, side by side in one run.

1. Scale: a predictions table of 2,600,000 bars (4 series of 5-minute bars, 5 walk-forward test
   folds each) traded with the shared cost-aware rule (forecasts of a 60-bar return, about a third
   of them beating the round trip; minimum hold 60 bars) and costs, then every performance metric
   (portfolio and per series) and the significance (PSR, DSR, MinTRL): wall time per step, best
   of 3. The rule's path-dependent loop alone is also timed, compiled (numba) and as plain Python.
2. Peer: the same signals on one series of `--peer-bars` bars in backtesting.py (event-driven,
   a Python call per bar) and in our engine: time and bars per second, ratio.
3. Reference check: final equity of both on long-only signals (where the two bookkeepings agree:
   backtesting.py holds a number of units, our engine a fraction of equity, identical for a long
   at full size), with no costs and with a 0.05% commission per side; and the number of trades.

    .venv/bin/python bench/bench_backtest.py [--bars 2600000] [--peer-bars 20000]

"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
import warnings
from importlib.metadata import version

import numpy as np
import pandas as pd

from trading_engine.trading import CostModel, TradingRule
from trading_engine.trading.engine import simulate
from trading_engine.trading.metrics import performance_metrics, trade_table
from trading_engine.trading.portfolio import strategy_returns
from trading_engine.trading.rule import target_positions

SERIES = ("BTC_USDT_5m", "ETH_USDT_5m", "SOL_USDT_5m", "BNB_USDT_5m")
FOLDS = 5
HORIZON = 60
ROUND_TRIP = float(CostModel().round_trip_cost(np.ones(1), np.ones(1))[0])


def synthetic_market(bars: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2019-01-01", periods=bars, freq="5min", tz="UTC", name="timestamp")
    close = 100 * np.exp(np.cumsum(0.002 * rng.standard_normal(bars)))
    open_ = np.concatenate([[100.0], close[:-1]])
    funding = np.where((index.hour % 8 == 0) & (index.minute == 0), 1e-4, 0.0)
    return pd.DataFrame({"open": open_, "close": close, "funding_rate": funding}, index=index)


def synthetic_predictions(market: dict[str, pd.DataFrame], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for series, frame in market.items():
        n = len(frame)
        frames.append(pd.DataFrame({
            "timestamp": frame.index, "series": series, "fold": np.arange(n) * FOLDS // n, "segment": "test",
            "pred_return": rng.standard_normal(n) * ROUND_TRIP, "confidence": rng.random(n)}))
    return pd.concat(frames, ignore_index=True)


def timed(function, repeats: int = 3):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def our_pipeline(predictions, market, rule, costs):
    """Backtest + every metric + significance, as the evaluation does for one strategy."""
    times = {}
    start = time.perf_counter()
    bars = strategy_returns(predictions, market, rule, costs, HORIZON)
    times["backtest (align, rule, engine)"] = time.perf_counter() - start
    start = time.perf_counter()
    portfolio = performance_metrics(bars, n_trials=25)
    times["portfolio: every metric + PSR, DSR, MinTRL"] = time.perf_counter() - start
    start = time.perf_counter()
    per_series = {s: performance_metrics(rows, n_trials=25) for s, rows in bars.groupby("series", sort=False)}
    times["per series: the same"] = time.perf_counter() - start
    return times, (portfolio, per_series)


def python_rule_loop(forecast: np.ndarray, round_trip: float, holding: int) -> np.ndarray:
    """The rule's state machine (k 1, minimum hold, no confidence gate) as a plain Python loop:
    what the compiled kernel replaces."""
    positions = np.zeros(len(forecast))
    direction, age = 0.0, 0
    for t, value in enumerate(forecast.tolist()):
        if direction != 0.0:
            age += 1
        if direction == 0.0 or age >= holding:
            wanted = 1.0 if value >= round_trip else -1.0 if value <= -round_trip else 0.0
            if wanted != 0.0:
                direction, age = wanted, 0
            elif direction != 0.0 and direction * value < round_trip:
                direction, age = 0.0, 0
        positions[t] = direction
    return positions


def backtesting_py_run(frame: pd.DataFrame, signal: np.ndarray, commission: float):
    """Trade the signal (target position decided at a bar's close) in backtesting.py."""
    from backtesting import Backtest, Strategy

    class Signal(Strategy):
        def init(self):
            self.target = self.I(lambda: signal, name="target", plot=False)

        def next(self):
            target = self.target[-1]
            if target > 0 and not self.position.is_long:
                self.position.close()
                self.buy(size=0.9999)
            elif target < 0 and not self.position.is_short:
                self.position.close()
                self.sell(size=0.9999)
            elif target == 0 and self.position:
                self.position.close()

    prices = frame[["open", "close"]].to_numpy()
    data = pd.DataFrame({"Open": prices[:, 0], "High": prices.max(axis=1), "Low": prices.min(axis=1),
                         "Close": prices[:, 1], "Volume": 1.0}, index=frame.index.tz_localize(None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backtest = Backtest(data, Signal, cash=1e12, commission=commission, trade_on_close=False,
                            finalize_trades=True)
        return backtest.run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=2_600_000)
    parser.add_argument("--peer-bars", type=int, default=20_000)
    args = parser.parse_args()

    per_series = args.bars // len(SERIES)
    market = {s: synthetic_market(per_series, seed=i) for i, s in enumerate(SERIES)}
    predictions = synthetic_predictions(market, seed=99)
    rule, costs = TradingRule(confidence_threshold=0.3), CostModel()
    runs = [our_pipeline(predictions, market, rule, costs) for _ in range(3)]
    forecast = predictions["pred_return"].to_numpy()
    rule_seconds, _ = timed(lambda: target_positions(forecast, rule, ROUND_TRIP, HORIZON,
                                                     predictions["confidence"].to_numpy()))
    python_seconds, _ = timed(lambda: python_rule_loop(forecast, ROUND_TRIP, HORIZON), repeats=1)
    steps = {name: min(run[0][name] for run in runs) for name in runs[0][0]}
    total = min(sum(run[0].values()) for run in runs)
    portfolio = runs[-1][1][0]

    # Peer: one series, the same signals.
    frame = market[SERIES[0]].iloc[: args.peer_bars]
    rng = np.random.default_rng(5)
    signal = np.repeat(rng.choice([-1.0, 0.0, 1.0], args.peer_bars // 12 + 1), 12)[: args.peer_bars]
    signal[0] = 0.0  # backtesting.py calls next() from the second bar on: bar 0 cannot decide anything
    peer_seconds, _ = timed(lambda: backtesting_py_run(frame, signal, 0.0005), repeats=1)

    def ours_on_peer_bars():
        result = simulate(signal * 0.9999, frame["open"].to_numpy(), frame["close"].to_numpy(), costs,
                          frame["funding_rate"].to_numpy())
        bars = pd.DataFrame({"timestamp": frame.index, "series": SERIES[0],
                             **{k: getattr(result, k) for k in ("held_position", "gross_return", "fee_cost",
                                                                "slippage_cost", "funding_cost", "net_return",
                                                                "turnover")}})
        return performance_metrics(bars, n_trials=25)

    ours_seconds, _ = timed(ours_on_peer_bars)

    # Reference check on long-only signals.
    long_only = np.maximum(signal, 0.0)
    checks = []
    for label, fee in (("no costs", 0.0), ("0.05% per side", 0.0005)):
        stats = backtesting_py_run(frame, long_only, fee)
        theirs = stats["Equity Final [$]"] / 1e12
        result = simulate(long_only * 0.9999, frame["open"].to_numpy(), frame["close"].to_numpy(),
                          CostModel(taker_fee=fee, slippage_bps=0.0, charge_funding=False))
        ours = float(np.prod(1.0 + result.net_return))
        bars = pd.DataFrame({"timestamp": frame.index, "series": SERIES[0],
                             **{k: getattr(result, k) for k in ("held_position", "gross_return", "fee_cost",
                                                                "slippage_cost", "funding_cost", "net_return",
                                                                "turnover")}})
        checks.append((label, ours, theirs, len(trade_table(bars)), int(stats["# Trades"])))

    print(f"## Backtest benchmark ({dt.date.today().isoformat()})\n")
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
          f"backtesting {version('backtesting')}.\n")
    print(f"Command: `.venv/bin/python bench/bench_backtest.py --bars {args.bars} --peer-bars {args.peer_bars}`\n")
    print(f"### Scale: {len(predictions):,} bars ({len(SERIES)} series x {per_series:,}, {FOLDS} folds), best of 3\n")
    print("| step | seconds |\n| --- | --- |")
    for name, seconds in steps.items():
        print(f"| {name} | {seconds:.3f} |")
    print(f"| **total** | **{total:.3f}** |\n")
    print(f"Portfolio: {portfolio['n_trades']:,} trades, {portfolio['n_days']:,} days.\n")
    print(f"The rule's path loop alone on {len(forecast):,} bars: compiled (numba) {rule_seconds:.3f} s, "
          f"plain Python {python_seconds:.2f} s ({python_seconds / rule_seconds:,.0f}x).\n")
    print(f"### Peer: the same signals on {args.peer_bars:,} bars of one series\n")
    print("| engine | seconds | bars per second | ratio |\n| --- | --- | --- | --- |")
    print(f"| backtesting.py {version('backtesting')} (run + stats) | {peer_seconds:.3f} | "
          f"{args.peer_bars / peer_seconds:,.0f} | 1.0 |")
    print(f"| ours (engine + every metric) | {ours_seconds:.4f} | {args.peer_bars / ours_seconds:,.0f} | "
          f"{peer_seconds / ours_seconds:,.0f}x faster |")
    print(f"| ours at scale (2.6 M bars, all steps) | {total:.3f} | {len(predictions) / total:,.0f} | "
          f"{(len(predictions) / total) / (args.peer_bars / peer_seconds):,.0f}x the peer's bars/s |\n")
    print("### Reference check (long-only signals, final equity / initial)\n")
    print("| costs | ours | backtesting.py | relative difference | trades ours / theirs |\n| --- | --- | --- | --- | --- |")
    for label, ours, theirs, our_trades, their_trades in checks:
        print(f"| {label} | {ours:.6f} | {theirs:.6f} | {abs(ours / theirs - 1):.1e} | {our_trades} / {their_trades} |")


if __name__ == "__main__":
    main()
