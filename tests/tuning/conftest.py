"""A tiny model input built the way the project builds it (synthetic candles -> the features
pipeline's nodes), and tiny training / tuning parameters, for the tuning tests."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from kedro.config import OmegaConfigLoader

from trading_engine.data.schema import series_key
from trading_engine.pipelines.features.nodes import build_model_inputs, compute_feature_tables
from trading_engine.sources.synthetic import generate_candles, generate_funding_rates

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT")
TIMEFRAME = "1h"  # the validation segments span days, so the daily Sharpe has days to work with


def make_model_input(days: int = 100, signal_strength: float = 0.05, seed: int = 7) -> dict[str, pd.DataFrame]:
    start, end = pd.Timestamp("2025-01-01", tz="UTC"), pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=days)
    candles = generate_candles(SYMBOLS, TIMEFRAME, start, end, seed=seed, signal_strength=signal_strength)
    funding = generate_funding_rates(SYMBOLS, start, end, seed=seed)
    candle_parts = {series_key(symbol, TIMEFRAME): (lambda frame=frame: frame) for symbol, frame in candles.items()}
    funding_parts = {series_key(symbol, TIMEFRAME).rsplit("_", 1)[0]: (lambda frame=frame: frame)
                     for symbol, frame in funding.items()}
    params = project_parameters()["features"]
    params["targets"]["horizons"] = [5]  # a short purge keeps the tiny folds long enough
    tables = compute_feature_tables(candle_parts, params)
    inputs = build_model_inputs(tables, candle_parts, funding_parts, params)
    return {key: load() for key, load in inputs.items()}


def project_parameters(env: str = "base") -> dict[str, Any]:
    """The project's parameters of `env` (a fresh copy each call)."""
    return copy.deepcopy(_project_parameters(env))


@functools.cache
def _project_parameters(env: str) -> dict[str, Any]:
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env=env,
                               merge_strategy={"parameters": "soft"})
    return loader["parameters"]


# Overrides of params:training (and of the tuning section) that make a trial take well under a second.
TINY_TRAINING = {
    "timeframe": TIMEFRAME, "horizon": 5, "seq_len": 8, "batch_size": 128, "max_epochs": 1, "patience": 1,
    "max_samples_per_epoch": 512, "device": "cpu", "seed": 3, "progress": False,
    "folds": {"n_folds": 2, "validation_fraction": 0.1, "test_fraction": 0.1, "holdout_fraction": 0.15},
    "transformer": {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16, "dropout": 0.0},
}
TINY_SPACE = {
    "training": {
        "transformer": {"n_heads": {"type": "categorical", "choices": [1, 2]}},
        "learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
        "seq_len": {"type": "int", "low": 8, "high": 16, "step": 8},
        "loss_weights": {"regression": {"type": "float", "low": 0.1, "high": 1.0}},
    },
    "trading": {"rule": {"confidence_threshold": {"type": "float", "low": 0.0, "high": 0.5}}},
}


def tiny_training() -> dict[str, Any]:
    return _merge(project_parameters()["training"], copy.deepcopy(TINY_TRAINING))


def tiny_tuning(storage: str, **changes: Any) -> dict[str, Any]:
    tuning = project_parameters()["tuning"]
    tuning.update({"storage": storage, "study_name": "tiny", "n_trials": 3, "n_startup_trials": 2,
                   "trial_training": {}, "search_space": copy.deepcopy(TINY_SPACE)})
    tuning.update(changes)
    return tuning


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


@pytest.fixture(scope="session")
def tiny_model_input() -> dict[str, pd.DataFrame]:
    return make_model_input()


def write_yaml(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content, sort_keys=False))
