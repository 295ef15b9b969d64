"""Benchmark: our backtest against vectorbt, side by side in one run.

1. Scale: a predictions table of 2,600,000 bars (4 series of 5-minute bars, 5 walk-forward test
   folds each) traded with the shared cost-aware rule (forecasts of a 60-bar return, about a third
   of them beating the round trip; minimum hold 60 bars) and costs, then every performance metric
   (portfolio and per series) and the significance (PSR, DSR, MinTRL): wall time per step, best
   of 3. The rule's path-dependent loop alone is also timed, compiled (numba) and as plain Python.
2. Peer: vectorbt on the same orders (the rule's targets, each filled at the next open when it
   changes, held in units between fills) and the same bars: its `Portfolio.from_orders`, value,
   returns, Sharpe ratio and drawdown, per series: time and bars per second, ratio.
3. Reference check: equity of both on the same orders (the rule's targets at half size, so that
   vectorbt never lacks the cash for a fee), fees and slippage charged as a fee per side, no
   funding (vectorbt has none): the largest relative difference over every bar but the last
   (where ours closes the open position and pays its exit, vectorbt keeps it).

    .venv/bin/pip install -e ".[bench]" && .venv/bin/python bench/bench_backtest.py [--bars 2600000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from importlib.metadata import version

import numpy as np
import pandas as pd

from trading_engine.trading import CostModel, TradingRule
from trading_engine.trading.engine import simulate
from trading_engine.trading.metrics import performance_metrics
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


def vectorbt_run(frame: pd.DataFrame, held: np.ndarray, fee: float):
    """The same orders in vectorbt: at each bar whose held target changes, an order to that
    target percent of the value, at the bar's open; valued at each close."""
    import vectorbt as vbt

    size = np.full(len(frame), np.nan)
    change = np.concatenate([[held[0] != 0], held[1:] != held[:-1]])
    size[change] = held[change]
    # A plain index: with pandas 3's tz-aware DatetimeIndex vectorbt 1.2 is 40-400x slower (measured).
    close, price = (pd.Series(frame[name].to_numpy()) for name in ("close", "open"))
    return vbt.Portfolio.from_orders(close=close, price=price, size=size, size_type="targetpercent",
                                     fees=fee, init_cash=1.0, direction="both", freq="5min")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=2_600_000)
    args = parser.parse_args()

    per_series = args.bars // len(SERIES)
    market = {s: synthetic_market(per_series, seed=i) for i, s in enumerate(SERIES)}
    predictions = synthetic_predictions(market, seed=99)
    rule, costs = TradingRule(confidence_threshold=0.3), CostModel()
    runs = [our_pipeline(predictions, market, rule, costs) for _ in range(3)]
    steps = {name: min(run[0][name] for run in runs) for name in runs[0][0]}
    total = min(sum(run[0].values()) for run in runs)
    portfolio = runs[-1][1][0]
    forecast = predictions["pred_return"].to_numpy()
    rule_seconds, _ = timed(lambda: target_positions(forecast, rule, ROUND_TRIP, HORIZON,
                                                     predictions["confidence"].to_numpy()))
    python_seconds, _ = timed(lambda: python_rule_loop(forecast, ROUND_TRIP, HORIZON), repeats=1)

    # The peer: every series as one block in vectorbt, with the rule's targets (held from the next bar).
    fee = costs.taker_fee + costs.slippage_bps * 1e-4
    held = {}
    for series in market:
        rows = predictions.loc[predictions["series"] == series]
        targets = target_positions(rows["pred_return"].to_numpy(), rule, ROUND_TRIP, HORIZON,
                                   rows["confidence"].to_numpy())
        # Half the rule's size: at a full notional plus its fee vectorbt lacks the cash and trims orders.
        held[series] = 0.5 * np.concatenate([[0.0], targets[:-1]])

    def peer():
        results = {}
        for series, frame in market.items():
            portfolio_ = vectorbt_run(frame, held[series], fee)
            results[series] = (portfolio_.value().to_numpy(), portfolio_.sharpe_ratio(), portfolio_.max_drawdown())
        return results

    peer()  # numba compiles vectorbt's kernels on the first call
    peer_seconds, peer_results = timed(peer)

    def ours_per_series():
        results = {}
        for series, frame in market.items():
            bars = simulate(np.append(held[series][1:], 0.0), frame["open"].to_numpy(), frame["close"].to_numpy(),
                            CostModel(taker_fee=fee, slippage_bps=0.0, charge_funding=False))
            results[series] = np.cumprod(1.0 + bars.net_return)
        return results

    ours_seconds, ours_results = timed(ours_per_series)
    differences = [np.max(np.abs(ours_results[s][:-1] / peer_results[s][0][:-1] - 1.0)) for s in market]

    print(f"## Backtest benchmark ({dt.date.today().isoformat()})\n")
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
          f"vectorbt {version('vectorbt')}. Load average at the start: {os.getloadavg()[0]:.1f}.\n")
    print(f"Command: `.venv/bin/python bench/bench_backtest.py --bars {args.bars}`\n")
    print(f"### Scale: {len(predictions):,} bars ({len(SERIES)} series x {per_series:,}, {FOLDS} folds), best of 3\n")
    print("| step | seconds |\n| --- | --- |")
    for name, seconds in steps.items():
        print(f"| {name} | {seconds:.3f} |")
    print(f"| **total** | **{total:.3f}** |\n")
    print(f"Portfolio: {portfolio['n_trades']:,} trades, {portfolio['n_days']:,} days.\n")
    print(f"The rule's path loop alone on {len(forecast):,} bars: compiled (numba) {rule_seconds:.3f} s, "
          f"plain Python {python_seconds:.2f} s ({python_seconds / rule_seconds:,.0f}x).\n")
    print(f"### Peer: the same orders on the same {args.bars:,} bars, one block per series, best of 3\n")
    print("| engine | seconds | bars per second | ratio |\n| --- | --- | --- | --- |")
    print(f"| vectorbt {version('vectorbt')} (from_orders, value, Sharpe, drawdown) | {peer_seconds:.3f} | "
          f"{args.bars / peer_seconds:,.0f} | 1.0 |")
    print(f"| ours: engine only | {ours_seconds:.3f} | {args.bars / ours_seconds:,.0f} | "
          f"{peer_seconds / ours_seconds:.1f}x faster |")
    print(f"| ours: align, rule, engine and every metric (the table above) | {total:.3f} | "
          f"{args.bars / total:,.0f} | {peer_seconds / total:.2f}x |\n")
    print("### Reference check: equity against vectorbt on the same orders\n")
    print(f"Largest relative difference of the equity over every bar but the last, per series: "
          f"{', '.join(f'{d:.1e}' for d in differences)}.")


if __name__ == "__main__":
    main()
