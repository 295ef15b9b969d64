"""compute_targets: future log returns, their sign, and the volatility-scaled dead zone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trading_engine.features import compute_targets, target_columns

HORIZONS = (5, 15, 30, 60)


@pytest.fixture(scope="module")
def candles(eth_5m) -> pd.DataFrame:
    return eth_5m.iloc[:5_000]


def test_last_h_rows_have_no_target_and_the_others_all_have_one(candles):
    targets = compute_targets(candles, HORIZONS, volatility_window=100)
    assert list(targets.columns) == target_columns(HORIZONS)
    assert targets.index.equals(candles.index)
    for h in HORIZONS:
        for kind in ("dir", "ret", "binary"):
            column = targets[f"target_{kind}_{h}"]
            assert column.iloc[-h:].isna().all()
            assert column.iloc[100 : -h].notna().all()
        assert targets[f"target_ret_{h}"].iloc[: -h].notna().all()


def test_target_return_is_the_log_return_from_close_t_to_close_t_plus_h(candles):
    targets = compute_targets(candles, HORIZONS)
    close = candles["close"].to_numpy()
    for h in HORIZONS:
        expected = np.log(close[h:] / close[:-h])
        np.testing.assert_allclose(targets[f"target_ret_{h}"].to_numpy()[:-h], expected, rtol=1e-12, atol=1e-15)
        binary = targets[f"target_binary_{h}"].to_numpy()[:-h]
        assert set(np.unique(binary)) <= {0.0, 1.0}
        np.testing.assert_array_equal(binary, (expected > 0).astype(float))


@pytest.mark.parametrize("k,min_threshold", [(0.5, 0.0), (1.0, 0.0), (0.5, 0.004)])
def test_direction_is_zero_inside_the_volatility_scaled_dead_zone(candles, k, min_threshold):
    """target_dir_h = 0 iff |ret| <= max(k * sigma_t * sqrt(h), min_threshold), sigma_t the
    std of the 100 one-bar log returns ending at t; else the sign of the return."""
    targets = compute_targets(candles, HORIZONS, dead_zone_k=k, volatility_window=100,
                              min_threshold=min_threshold)
    sigma = np.log(candles["close"]).diff().rolling(100).std()
    for h in HORIZONS:
        ret = targets[f"target_ret_{h}"]
        threshold = np.maximum(k * sigma * np.sqrt(h), min_threshold)
        defined = ret.notna() & sigma.notna()
        expected = np.where(ret.abs() > threshold, np.sign(ret), 0.0)[defined]
        np.testing.assert_array_equal(targets[f"target_dir_{h}"][defined], expected)
        assert targets[f"target_dir_{h}"][~defined].isna().all()
        shares = targets[f"target_dir_{h}"][defined].value_counts(normalize=True)
        assert set(shares.index) == {-1.0, 0.0, 1.0} and shares.min() > 0.05


def test_dead_zone_uses_only_volatility_known_at_t(candles):
    """Cutting the candles at k changes no target whose horizon ends before k."""
    full = compute_targets(candles, HORIZONS)
    for k in (150, 777, 3_001):
        cut = compute_targets(candles.iloc[:k], HORIZONS)
        for h in HORIZONS:
            columns = target_columns([h])
            pd.testing.assert_frame_equal(cut[columns].iloc[: k - h], full[columns].iloc[: k - h])


def test_a_series_shorter_than_the_horizon_has_no_target_at_all(candles):
    targets = compute_targets(candles.iloc[:4], (5,))
    assert targets.isna().all().all()


def test_invalid_parameters_are_refused(candles):
    with pytest.raises(ValueError):
        compute_targets(candles, (0, 5))
    with pytest.raises(ValueError):
        compute_targets(candles, (5,), dead_zone_k=-1)
