"""Constructed inputs of the evaluation, following the contracts of docs/architecture.md."""

from __future__ import annotations

import numpy as np
import pandas as pd

HORIZON = 3


def market_frame(n_bars: int, seed: int, start: str = "2024-01-01", freq: str = "5min",
                 drift: float = 0.0, volatility: float = 0.002) -> pd.DataFrame:
    """A model-input-like frame: random-walk prices, open = previous close, funding settled every
    8 hours, two features (one of them the sign of the next h-bar return plus noise), targets."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, periods=n_bars, freq=freq, tz="UTC", name="timestamp")
    log_close = np.log(100.0) + np.cumsum(drift + volatility * rng.standard_normal(n_bars))
    close = np.exp(log_close)
    open_ = np.concatenate([[close[0]], close[:-1]])
    future = np.full(n_bars, np.nan)
    future[:-HORIZON] = log_close[HORIZON:] - log_close[:-HORIZON]
    funding = np.where((index.hour % 8 == 0) & (index.minute == 0), 1e-4, 0.0)
    frame = pd.DataFrame({
        "feat_noise": rng.standard_normal(n_bars).astype(np.float32),
        "feat_hint": (np.nan_to_num(np.sign(future)) + rng.standard_normal(n_bars)).astype(np.float32),
        f"target_dir_{HORIZON}": np.sign(future),
        f"target_ret_{HORIZON}": future,
        f"target_binary_{HORIZON}": np.where(np.isnan(future), np.nan, (future > 0).astype(float)),
        "open": open_, "high": np.maximum(open_, close), "low": np.minimum(open_, close), "close": close,
        "volume": 1.0, "funding_rate": funding,
    }, index=index)
    return frame


def fold_layout(index: pd.DatetimeIndex, n_folds: int = 2, train: int = 400, validation: int = 150,
                test: int = 150, holdout: int = 150, purge: int = 5) -> dict:
    """A FoldLayout.to_dict()-shaped layout on `index`: expanding train, then per fold purge,
    validation, purge, test; the tests tile; the holdout is last."""
    folds, position = [], train
    for k in range(n_folds):
        val_start = position + purge
        test_start = val_start + validation + purge
        folds.append({"fold": k,
                      "train": {"start": index[0].isoformat(), "end": index[position - 1].isoformat(), "bars": position},
                      "validation": {"start": index[val_start].isoformat(),
                                     "end": index[val_start + validation - 1].isoformat(), "bars": validation},
                      "test": {"start": index[test_start].isoformat(),
                               "end": index[test_start + test - 1].isoformat(), "bars": test}})
        position = test_start + test - validation - purge  # the next fold's validation ends one purge before its test
    holdout_start = len(index) - holdout
    return {"purge_bars": purge, "folds": folds,
            "holdout": {"start": index[holdout_start].isoformat(), "end": index[-1].isoformat(), "bars": holdout}}


def predictions_for(series: str, frame: pd.DataFrame, layout: dict, quality: float, seed: int) -> pd.DataFrame:
    """Predictions on every validation / test / holdout bar of `layout`. With probability
    `quality` the call is the realised direction, otherwise random; the confidence is higher on
    right calls."""
    rng = np.random.default_rng(seed)
    blocks = []
    segments = [(f["fold"], name, f[name]) for f in layout["folds"] for name in ("validation", "test")]
    segments.append((layout["folds"][-1]["fold"], "holdout", layout["holdout"]))
    for fold, name, bounds in segments:
        rows = frame.loc[pd.Timestamp(bounds["start"]):pd.Timestamp(bounds["end"])]
        n = len(rows)
        realised = np.nan_to_num(np.sign(rows[f"target_ret_{HORIZON}"].to_numpy()))
        right = rng.random(n) < quality
        call = np.where(right, realised, rng.choice([-1.0, 1.0], n))
        up = np.where(call > 0, 0.6, 0.2)
        down = np.where(call < 0, 0.6, 0.2)
        confidence = np.clip(np.where(call == realised, 0.7, 0.4) + 0.1 * rng.standard_normal(n), 0, 1)
        blocks.append(pd.DataFrame({
            "timestamp": rows.index, "series": series, "symbol": series.rsplit("_", 1)[0].replace("_", "/"),
            "timeframe": series.rsplit("_", 1)[1], "fold": fold, "segment": name,
            "prob_down": down, "prob_flat": 1 - up - down, "prob_up": up,
            # Above the default round trip (0.12 %), so that the cost-aware rule trades the calls.
            "pred_return": call * 0.003 + 0.0001 * rng.standard_normal(n), "confidence": confidence}))
    return pd.concat(blocks, ignore_index=True)


def evaluation_inputs(n_bars: int = 1500, quality: float = 0.6, series=("BTC_USDT_5m", "ETH_USDT_5m")):
    """(predictions, market, training_summary) for two 5-minute series on a common time axis."""
    market = {name: market_frame(n_bars, seed=i) for i, name in enumerate(series)}
    layout = fold_layout(market[series[0]].index)
    predictions = pd.concat([predictions_for(name, market[name], layout, quality, seed=10 + i)
                             for i, name in enumerate(series)], ignore_index=True)
    summary = {"horizon": HORIZON, "fold_layouts": {"5m": layout},
               "folds": [{"fold": fold["fold"], "best_epoch": 2, "epochs_run": 4} for fold in layout["folds"]]}
    return predictions, market, summary
