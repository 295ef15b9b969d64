"""Properties of compute_features on real candles: causal, scale-free, bounded, finite."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from tests.features.conftest import load_real
from trading_engine.features import FEATURE_NAMES, WARMUP_BARS, compute_features

PRODUCT_BRIEF_FEATURES = {
    "feat_atr", "feat_realized_vol_10", "feat_realized_vol_20", "feat_realized_vol_50",
    "feat_parkinson_vol_10", "feat_parkinson_vol_20", "feat_vol_ratio",
    "feat_rsi_7", "feat_rsi_14", "feat_rsi_21", "feat_roc_1", "feat_roc_5", "feat_roc_10",
    "feat_roc_20", "feat_macd", "feat_macd_signal", "feat_macd_hist", "feat_stoch_14",
    "feat_stoch_21", "feat_ema_5", "feat_ema_10", "feat_ema_20", "feat_ema_50", "feat_ema_100",
    "feat_dist_ema_5", "feat_dist_ema_10", "feat_dist_ema_20", "feat_dist_ema_50",
    "feat_dist_ema_100", "feat_ema_slope_20", "feat_ema_slope_50", "feat_adx", "feat_trend_score",
    "feat_vol_ratio_10", "feat_vol_ratio_20", "feat_vol_ratio_50", "feat_vwap_dist",
    "feat_obv_slope", "feat_mfv_sum_20", "feat_close_position", "feat_body_ratio",
    "feat_upper_shadow", "feat_lower_shadow", "feat_candle_dir", "feat_consecutive", "feat_gap",
}


def assert_same_features(actual: pd.DataFrame, expected: pd.DataFrame, rtol: float) -> None:
    """Same NaN positions; elsewhere |a - e| <= rtol * (|e| + 1e-4 * column std)."""
    a = actual.to_numpy(dtype=np.float64)
    e = expected.to_numpy(dtype=np.float64)
    assert list(actual.columns) == list(expected.columns)
    nan_mismatch = np.isnan(a) != np.isnan(e)
    assert not nan_mismatch.any(), f"NaN positions differ in {list(actual.columns[nan_mismatch.any(axis=0)])}"
    with warnings.catch_warnings():  # all-NaN columns of very short series
        warnings.simplefilter("ignore", RuntimeWarning)
        scale = np.abs(e) + 1e-4 * np.nan_to_num(np.nanstd(e, axis=0))
    bad = np.nan_to_num(np.abs(a - e) > rtol * scale).any(axis=0)
    assert not bad.any(), f"values differ in {list(actual.columns[bad])}"


def test_there_are_at_least_53_features_all_named_feat_and_float32(eth_5m):
    features = compute_features(eth_5m.iloc[:500])
    assert len(FEATURE_NAMES) >= 53 and len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert list(features.columns) == list(FEATURE_NAMES)
    assert all(name.startswith("feat_") for name in features.columns)
    assert PRODUCT_BRIEF_FEATURES <= set(features.columns)
    assert (features.dtypes == np.float32).all()
    assert features.index.equals(eth_5m.index[:500])


def test_features_are_invariant_to_truncation(eth_5m, btc_5m):
    """The value at t is the same whether or not bars after t exist: for many random k,
    features(candles[:k]) == features(candles)[:k] for every feature, with a reference (BTC)
    that always extends past k."""
    full = compute_features(eth_5m, btc_5m)
    rng = np.random.default_rng(20260101)
    cuts = [1, 2, 14, 15, 27, 34, 51, 100, 101, WARMUP_BARS, 8370, *rng.integers(2, len(eth_5m), 24)]
    for k in cuts:
        truncated = compute_features(eth_5m.iloc[:k], btc_5m)
        assert_same_features(truncated, full.iloc[:k], rtol=1e-9)


def test_features_are_scale_free(eth_5m, btc_5m):
    """Prices x 10 (and x 0.37) and volume x 3 leave every feature unchanged (float32 rounding)."""
    base = compute_features(eth_5m, btc_5m)
    for price_factor in (10.0, 0.37):
        scaled = eth_5m.copy()
        scaled[["open", "high", "low", "close"]] *= price_factor
        scaled["volume"] *= 3.0
        assert_same_features(compute_features(scaled, btc_5m), base, rtol=2e-5)


def test_no_feature_grows_with_the_price_level(shared_data_dir):
    """BTC 1h 2019-2026: the price rose about 10x; no feature's typical size (90th percentile of
    |x|) in the last tenth of the history exceeds 3x its size in the first tenth."""
    candles = load_real(shared_data_dir, "BTC_USDT_1h")
    features = compute_features(candles).iloc[WARMUP_BARS:]
    tenth = len(features) // 10
    assert candles["close"].iloc[-tenth:].median() > 8 * candles["close"].iloc[:tenth].median()
    early = features.iloc[:tenth].abs().quantile(0.9)
    late = features.iloc[-tenth:].abs().quantile(0.9)
    growth = (late + 1e-12) / (early + 1e-12)
    assert (growth < 3.0).all(), growth[growth >= 3.0].to_dict()


def _with_flat_dead_market(candles: pd.DataFrame, start: int, length: int) -> pd.DataFrame:
    """Bars [start, start + length) become flat zero-volume candles at the previous close, as
    the feed fills an exchange outage."""
    out = candles.copy()
    price = out["close"].iloc[start - 1] if start > 0 else out["open"].iloc[0]
    out.iloc[start : start + length, :4] = price
    out.iloc[start : start + length, 4] = 0.0
    return out


@pytest.mark.parametrize("start,length", [(0, 400), (3_000, 150), (5_000, 1)])
def test_flat_and_zero_volume_candles_give_finite_features_after_warmup(eth_5m, start, length):
    """A dead market (open = high = low = close, volume 0) longer than every window, at the
    very start or in the middle, divides no zero by zero into inf or NaN."""
    candles = _with_flat_dead_market(eth_5m.iloc[:6_000], start, length)
    features = compute_features(candles)
    values = features.iloc[WARMUP_BARS:].to_numpy()
    bad = ~np.isfinite(values).all(axis=0)
    assert not bad.any(), list(features.columns[bad])
    flat = features.iloc[max(start, WARMUP_BARS) + 60 : start + length]
    if len(flat):  # deep inside the dead stretch: the documented neutral values
        assert (flat["feat_realized_vol_20"] == 0).all()
        assert (flat["feat_stoch_14"] == 50).all() and (flat["feat_close_position"] == 0.5).all()
        assert (flat["feat_vol_ratio_20"] == 0).all() and (flat["feat_bb_position_20"] == 0.5).all()
        assert (flat["feat_vwap_dist"] == 0).all() and (flat["feat_mfv_sum_20"] == 0).all()


def test_a_missing_reference_bar_gives_zero_cross_asset_features_not_a_future_one(eth_5m, btc_5m):
    """Reference bars are matched by open time; a missing one is carried forward at most
    reference_fill_limit bars and never filled from a later bar."""
    candles = eth_5m.iloc[:2_000]
    holed = btc_5m.drop(btc_5m.index[1_000:1_010])
    exact = compute_features(candles, holed)
    assert (exact["feat_ref_ret_1"].iloc[1_000:1_011] == 0).all()
    assert (exact["feat_ref_ret_1"].iloc[1_011:1_020] != 0).any()
    carried = compute_features(candles, holed, reference_fill_limit=3)
    # bars 1000-1002 carry bar 999's close (return 0); 1003-1009 have no reference
    assert (carried["feat_ref_ret_1"].iloc[1_000:1_011] == 0).all()
    assert carried["feat_ref_ret_5"].iloc[1_002] == pytest.approx(
        np.log(btc_5m["close"].iloc[999] / btc_5m["close"].iloc[997]), rel=1e-5)
    unaffected = compute_features(candles, btc_5m)
    pd.testing.assert_frame_equal(exact.iloc[:1_000], unaffected.iloc[:1_000])


def test_the_reference_series_itself_uses_its_own_returns(btc_5m):
    candles = btc_5m.iloc[:1_000]
    own = compute_features(candles)
    pd.testing.assert_frame_equal(own, compute_features(candles, candles))
    log_return = np.log(candles["close"]).diff()
    np.testing.assert_allclose(own["feat_ref_ret_1"].iloc[1:], log_return.iloc[1:], rtol=1e-5)
    assert np.allclose(own["feat_ref_corr_50"].iloc[60:], 1.0, atol=1e-5)


def test_calendar_features_encode_the_open_time_in_utc(eth_5m):
    features = compute_features(eth_5m.iloc[:600])
    hours = eth_5m.index[:600].hour + eth_5m.index[:600].minute / 60
    np.testing.assert_allclose(features["feat_hour_sin"], np.sin(2 * np.pi * hours / 24), atol=1e-6)
    weekday = eth_5m.index[:600].day_of_week + hours / 24
    np.testing.assert_allclose(features["feat_weekday_cos"], np.cos(2 * np.pi * weekday / 7), atol=1e-6)


def test_unsorted_or_invalid_candles_are_refused(eth_5m):
    with pytest.raises(ValueError, match="sorted"):
        compute_features(eth_5m.iloc[:100].iloc[::-1])
    broken = eth_5m.iloc[:100].copy()
    broken.iloc[10, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        compute_features(broken)
