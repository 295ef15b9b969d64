"""Tuning throughput and what pruning saves, in one run.

The demo search (conf/base/parameters_tuning.yml, unchanged: its trial sizes, search space, seed
and number of trials) on the demo's model input (synthetic candles of conf/base ingestion ->
the features pipeline's nodes), run twice through the pipeline's node on fresh SQLite storages:
- the peer: no pruning (`tuning.pruner.type: none`), every trial trains every fold;
- ours: the configured pruner (median), a trial reports its validation Sharpe after each fold.

Fold evaluations are counted from the studies (one intermediate value per trained fold).

Run: .venv/bin/python bench/bench_tuning.py [--trials N] [--folds K]. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import logging
import platform
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd
import torch
from kedro.config import OmegaConfigLoader

from trading_engine.data.schema import series_key
from trading_engine.pipelines.features.nodes import build_model_inputs, compute_feature_tables
from trading_engine.pipelines.tuning.nodes import run_tuning_study
from trading_engine.sources.synthetic import generate_candles, generate_funding_rates

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def demo_parameters() -> dict:
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base",
                               merge_strategy={"parameters": "soft"})
    return loader["parameters"]


def demo_model_input(params: dict) -> dict[str, pd.DataFrame]:
    """The demo's model input: what `kedro run` (ingestion + features) builds in the base env."""
    ingestion = params["ingestion"]
    start, end = pd.Timestamp(ingestion["start"], tz="UTC"), pd.Timestamp(ingestion["end"], tz="UTC")
    synthetic = ingestion["synthetic"]
    candles, funding = {}, {}
    for timeframe in ingestion["timeframes"]:
        generated = generate_candles(ingestion["symbols"], timeframe, start, end, seed=synthetic["seed"],
                                     signal_strength=synthetic["signal_strength"])
        candles.update({series_key(symbol, timeframe): frame for symbol, frame in generated.items()})
    for symbol, frame in generate_funding_rates(ingestion["symbols"], start, end, seed=synthetic["seed"]).items():
        funding[series_key(symbol, "1m").rsplit("_", 1)[0]] = frame
    candle_parts = {key: (lambda frame=frame: frame) for key, frame in candles.items()}
    funding_parts = {key: (lambda frame=frame: frame) for key, frame in funding.items()}
    tables = compute_feature_tables(candle_parts, params["features"])
    return {key: load() for key, load in build_model_inputs(tables, candle_parts, funding_parts,
                                                            params["features"]).items()}


def run(params: dict, model_input: dict[str, pd.DataFrame], pruner: str, n_trials: int, folder: Path) -> dict:
    tuning = {**params["tuning"], "storage": f"sqlite:///{folder / f'{pruner}.db'}", "study_name": f"bench_{pruner}",
              "n_trials": n_trials, "pruner": {**params["tuning"]["pruner"], "type": pruner}}
    partitions = {key: (lambda frame=frame: frame) for key, frame in model_input.items()}
    started = time.perf_counter()
    trials, summary = run_tuning_study(partitions, params["training"], params["trading"], tuning)
    seconds = time.perf_counter() - started
    return {"pruner": pruner, "seconds": seconds, "trials": len(trials),
            "pruned": summary["states"].get("PRUNED", 0), "failed": summary["states"].get("FAIL", 0),
            "fold_evaluations": summary["fold_evaluations"],
            "best": summary["best_trial"]["value"] if summary["best_trial"] else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=None, help="trials per study (default: tuning.n_trials)")
    parser.add_argument("--folds", type=int, default=None, help="folds per trial (default: tuning.trial_training)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    params = demo_parameters()
    n_trials = args.trials or params["tuning"]["n_trials"]
    if args.folds:
        params["tuning"]["trial_training"]["folds"] = {"n_folds": args.folds}
    started = time.perf_counter()
    model_input = demo_model_input(params)
    rows = sum(len(frame) for frame in model_input.values())
    print(f"model input: {len(model_input)} series, {rows} rows, built in {time.perf_counter() - started:.1f} s; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{params['training'].get('num_threads') or torch.get_num_threads()} training threads, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}\n")
    with tempfile.TemporaryDirectory() as folder:
        results = [run(params, model_input, pruner, n_trials, Path(folder))
                   for pruner in ("none", params["tuning"]["pruner"]["type"])]
    peer, ours = results
    print("| search | trials | pruned | fold evaluations | seconds | trials per hour | best mean validation Sharpe |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for result in results:
        print(f"| pruner {result['pruner']} | {result['trials']} | {result['pruned']} | {result['fold_evaluations']} "
              f"| {result['seconds']:.1f} | {3600 * result['trials'] / result['seconds']:.0f} | {result['best']:.3f} |")
    saved = 1 - ours["fold_evaluations"] / peer["fold_evaluations"]
    print(f"\nfold evaluations saved by pruning: {saved:.0%} ({peer['fold_evaluations']} -> "
          f"{ours['fold_evaluations']}); wall time ratio {ours['seconds'] / peer['seconds']:.2f}x")


if __name__ == "__main__":
    main()
