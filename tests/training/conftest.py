"""Small model-input frames with a planted, persistent signal, built here so that the training tests
do not depend on the features pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.signal import lfilter

from trading_engine.training import FoldSettings, TrainingConfig

HORIZONS = (5, 15)


def make_model_input(
    n_series: int = 2,
    n_bars: int = 2000,
    signal: float = 0.3,
    seed: int = 0,
    timeframe: str = "1h",
    bar_volatility: float = 0.005,
) -> dict[str, pd.DataFrame]:
    """Model-input frames (docs/architecture.md) of `n_series` symbols.

    A hidden drift m_t (AR(1), half-life about 70 bars, unit variance) moves the next bar:
    log return r_{t+1} = bar_volatility * (signal * m_t + e_{t+1}). The features at t are a noisy
    reading of m_t and the last 1 and 5 returns, all known at t; signal=0 is a random walk.
    """
    rng = np.random.default_rng(seed)
    index = pd.date_range("2025-01-01", periods=n_bars, freq=pd.Timedelta(timeframe), tz="UTC", name="timestamp")
    frames = {}
    for position, base in enumerate(["BTC", "ETH", "SOL", "BNB", "XRP"][:n_series]):
        phi = 0.99
        drift = lfilter([np.sqrt(1 - phi**2)], [1.0, -phi], rng.standard_normal(n_bars))
        returns = np.zeros(n_bars)
        returns[1:] = bar_volatility * (signal * drift[:-1] + rng.standard_normal(n_bars - 1))
        close = 100.0 * (position + 1) * np.exp(np.cumsum(returns))
        open_ = np.concatenate([[close[0]], close[:-1]])
        frame = pd.DataFrame({
            "open": open_, "high": np.maximum(open_, close) * 1.001, "low": np.minimum(open_, close) * 0.999,
            "close": close, "volume": np.ones(n_bars), "funding_rate": np.zeros(n_bars),
            "feat_drift": drift + 0.3 * rng.standard_normal(n_bars),
            "feat_return_1": returns / bar_volatility,
            "feat_return_5": pd.Series(returns).rolling(5, min_periods=1).sum().to_numpy() / bar_volatility,
        }, index=index)
        for h in HORIZONS:
            future = pd.Series(close).shift(-h).to_numpy() / close - 1.0
            dead_zone = 0.25 * bar_volatility * np.sqrt(h)
            direction = np.where(np.abs(future) <= dead_zone, 0.0, np.sign(future))
            frame[f"target_dir_{h}"] = np.where(np.isnan(future), np.nan, direction)
            frame[f"target_ret_{h}"] = future
            frame[f"target_binary_{h}"] = np.where(np.isnan(future), np.nan, (future > 0).astype(float))
        frames[f"{base}_USDT_{timeframe}"] = frame
    return frames


def tiny_config(**changes) -> TrainingConfig:
    """A configuration that trains in about a second on a CPU."""
    base = dict(
        model="transformer", model_params={"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "dropout": 0.0},
        horizon=5, seq_len=8, batch_size=128, learning_rate=3e-3, weight_decay=0.0, max_epochs=3, patience=2,
        max_samples_per_epoch=1024, device="cpu", seed=7, progress=False,
        folds=FoldSettings(n_folds=2, validation_fraction=0.1, test_fraction=0.1, holdout_fraction=0.15),
    )
    base.update(changes)
    return TrainingConfig(**base)


@pytest.fixture(scope="session")
def planted_model_input() -> dict[str, pd.DataFrame]:
    return make_model_input()
