"""What the default pipeline earns on real Binance candles, before and after costs, beside the
baselines; and the same on those candles with their bars shuffled (no edge can exist there).

It copies the project into a work folder, points `ingestion.source: files` at the real candles of
../shared/data (never copied into the repository), runs `kedro run` (ingestion, features, the
demo-size training, evaluation) and prints a Markdown summary of backtest_metrics.json.

    .venv/bin/python bench/study_real_candles.py                      # the real candles
    .venv/bin/python bench/study_real_candles.py --shuffle            # bars in a random order
    .venv/bin/python bench/study_real_candles.py --params "training.model=tcn"

--shuffle draws one permutation of the bars and applies it to every symbol (so the assets stay
correlated bar by bar): each bar keeps its open, high, low and close relative to the previous
close, and its volume; the prices are then chained again from the first close. Any predictability
in time is destroyed; volatility and fat tails are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "binance_futures_5m"
PERIODS = ("out_of_sample", "holdout")
SYMBOLS = ("BTC", "ETH", "SOL")


def copy_project(destination: Path) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "pyproject.toml", destination / "pyproject.toml")
    shutil.copytree(ROOT / "conf", destination / "conf", ignore=shutil.ignore_patterns("local"))
    (destination / "conf" / "local").mkdir()
    (destination / "src").mkdir()
    for layer in sorted((ROOT / "data").glob("0*_*")):
        (destination / "data" / layer.name).mkdir(parents=True)
    return destination


def shuffled_candles(source: Path, destination: Path, seed: int) -> None:
    """Every symbol's bars in one shared random order, re-chained from the first close."""
    destination.mkdir(parents=True, exist_ok=True)
    frames = {path.name: pd.read_parquet(path) for path in sorted(source.glob("*.parquet"))}
    common = sorted(set.intersection(*(set(frame["timestamp"]) for frame in frames.values())))
    permutation = np.random.default_rng(seed).permutation(len(common) - 1)
    for name, frame in frames.items():
        frame = frame.set_index("timestamp").loc[common]
        close = frame["close"].to_numpy()
        relative = frame[["open", "high", "low", "close"]].to_numpy()[1:] / close[:-1, None]
        relative = relative[permutation]
        closes = close[0] * np.cumprod(relative[:, 3])
        previous = np.concatenate([[close[0]], closes[:-1]])
        prices = relative * previous[:, None]
        out = pd.DataFrame(prices, columns=["open", "high", "low", "close"], index=frame.index[1:])
        out["volume"] = frame["volume"].to_numpy()[1:][permutation]
        out.reset_index().to_parquet(destination / name)


def summary(metrics: dict) -> str:
    lines = ["| strategy | period | Sharpe after costs | Sharpe before costs | DSR | trades | turnover a day "
             "| mean hold (h) | gross a year | fees + slippage a year | funding a year |", "|" + " --- |" * 11]

    def row(name: str, period: str, entry: dict) -> str:
        per_year = entry.get("per_year") or {}
        cost = (per_year.get("fees") or 0) + (per_year.get("slippage") or 0)

        def number(value, spec=".2f"):
            return "n/a" if value is None else format(value, spec)

        return (f"| {name} | {period} | {number(entry.get('sharpe'))} | "
                f"{number(entry.get('before_costs', {}).get('sharpe'))} | {number(entry.get('deflated_sharpe'), '.3f')} | "
                f"{entry.get('n_trades')} | {number(entry.get('turnover_per_day'))} | "
                f"{number(entry.get('average_holding_hours'), '.1f')} | {number(per_year.get('gross_return'), '.1%')} | "
                f"{-cost:.1%} | {number(-(per_year.get('funding') or 0), '.1%')} |")

    for period in PERIODS:
        if period in metrics["portfolio"]:
            lines.append(row("**model**", period, metrics["portfolio"][period]))
        for name, baseline in metrics["baselines"].items():
            if "portfolio" in baseline and period in baseline["portfolio"]:
                lines.append(row(name, period, baseline["portfolio"][period]))
    chosen = metrics["trading_rule"]["chosen"]["model"]
    lines.append("")
    lines.append("Model's rule per fold: " + "; ".join(f"fold {c['fold']}: {c['description']}" for c in chosen))
    for period, comparison in metrics.get("comparison", {}).items():
        overall = comparison.get("all_baselines", {})
        lines.append(f"{period}: beats every baseline: {overall.get('model_beats')}, significantly: "
                     f"{overall.get('significant')}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", default="2025-01-01")
    parser.add_argument("--end", default="2026-02-19")
    parser.add_argument("--params", default="", help="more kedro --params, comma separated")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the run here (default: a temporary folder)")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no real candles at {args.data}: this study needs ../shared/data")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="real_candles_"))
    project = copy_project(work / "project")
    files = args.data
    if args.shuffle:
        files = work / "shuffled"
        shuffled_candles(args.data, files, args.seed)
    params = ["ingestion.source=files", f"ingestion.files_dir={files}", f"ingestion.start={args.start}",
              f"ingestion.end={args.end}", "ingestion.download.progress=false", "training.progress=false"]
    if args.params:
        params.append(args.params)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "kedro", "run", "--params", ",".join(params)], cwd=project,
                            env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"kedro run failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}")
    metrics = json.loads((project / "data" / "08_reporting" / "backtest_metrics.json").read_text())
    label = "shuffled bars" if args.shuffle else "real bars"
    print(f"## {label}: {args.data.name}, {args.start} to {args.end} ({seconds:.0f} s; outputs in {project})\n")
    print(summary(metrics))


if __name__ == "__main__":
    main()
