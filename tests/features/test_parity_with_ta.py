"""Our features equal the `ta` package's indicators on real candles after the warm-up, up to
the normalisation documented in docs/features.md (float32: relative error ~6e-8)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from tests.features.conftest import load_real
from trading_engine.features import compute_features

ta = pytest.importorskip("ta")

SKIP = 1_000  # bars after which seeding differences (ta's RSI) have vanished
RTOL = 1e-6


@pytest.fixture(scope="module")
def sol(shared_data_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    candles = load_real(shared_data_dir, "SOL_USDT_5m", 6_000)
    return candles, compute_features(candles)


def assert_matches(ours: pd.Series, reference: pd.Series, mask: pd.Series | None = None) -> None:
    o = np.asarray(ours, dtype=np.float64)[SKIP:]
    r = np.asarray(reference, dtype=np.float64)[SKIP:]
    if mask is not None:
        o, r = o[np.asarray(mask)[SKIP:]], r[np.asarray(mask)[SKIP:]]
    assert len(o) > 1_000 and np.isfinite(r).all()
    np.testing.assert_allclose(o, r, rtol=RTOL, atol=RTOL * np.abs(r).mean())


def test_rsi_roc_stochastic_and_cci_match_ta(sol):
    c, f = sol
    for window in (7, 14, 21):
        assert_matches(f[f"feat_rsi_{window}"], ta.momentum.rsi(c.close, window))
    for window in (1, 5, 10, 20):
        assert_matches(f[f"feat_roc_{window}"], ta.momentum.roc(c.close, window) / 100)
    for window in (14, 21):
        assert_matches(f[f"feat_stoch_{window}"], ta.momentum.stoch(c.high, c.low, c.close, window))
    assert_matches(f["feat_stoch_d_14"], ta.momentum.stoch_signal(c.high, c.low, c.close, 14, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_matches(f["feat_cci_20"], ta.trend.cci(c.high, c.low, c.close, 20))


def test_atr_adx_and_directional_index_match_ta_wilder_smoothing(sol):
    c, f = sol
    true_atr = ta.volatility.average_true_range(c.high, c.low, c.close, 14)
    assert_matches(f["feat_atr"] * c.close, true_atr)
    assert_matches(f["feat_adx"], ta.trend.adx(c.high, c.low, c.close, 14))
    adx = ta.trend.ADXIndicator(c.high, c.low, c.close, 14)
    plus, minus = adx.adx_pos(), adx.adx_neg()
    # ta leaves its last +DI/-DI at 0 (a loop bound), so the last bar is not compared
    assert_matches(f["feat_adx_di"].iloc[:-1], ((plus - minus) / (plus + minus)).iloc[:-1])


def test_macd_and_emas_match_ta_after_normalisation(sol):
    c, f = sol
    macd = ta.trend.MACD(c.close, 26, 12, 9)
    assert_matches(f["feat_macd"] * c.close, macd.macd())
    assert_matches(f["feat_macd_signal"] * c.close, macd.macd_signal())
    assert_matches(f["feat_macd_hist"] * c.close, macd.macd_diff())
    atr = ta.volatility.average_true_range(c.high, c.low, c.close, 14)
    for span in (5, 10, 20, 50, 100):
        ema = ta.trend.ema_indicator(c.close, span)
        assert_matches(f[f"feat_dist_ema_{span}"], c.close / ema - 1)
        assert_matches(f[f"feat_ema_{span}"], (c.close - ema) / atr)
        if span in (20, 50):
            assert_matches(f[f"feat_ema_slope_{span}"], (ema - ema.shift(5)) / (5 * atr))


def test_bollinger_matches_ta(sol):
    c, f = sol
    bands = ta.volatility.BollingerBands(c.close, 20, 2)
    assert_matches(f["feat_bb_position_20"], bands.bollinger_pband())
    assert_matches(f["feat_bb_width_20"], bands.bollinger_wband() / 100)


def test_volume_features_match_ta_obv_cmf_vwap_and_mfi(sol):
    c, f = sol
    volume_20 = c.volume.rolling(20).sum()
    # ta counts an unchanged close as an up bar, Granville (and we) as no change: compare the
    # windows without an unchanged close
    no_unchanged_close = c.close.diff().eq(0).astype(int).rolling(20).sum().eq(0)
    obv = ta.volume.on_balance_volume(c.close, c.volume)
    assert_matches(f["feat_obv_slope"], obv.diff(20) / volume_20, no_unchanged_close)
    assert_matches(f["feat_mfv_sum_20"], ta.volume.chaikin_money_flow(c.high, c.low, c.close, c.volume, 20))
    vwap = ta.volume.volume_weighted_average_price(c.high, c.low, c.close, c.volume, 20)
    assert_matches(f["feat_vwap_dist"], c.close / vwap - 1)
    # ta compares typical prices exactly, so rounding noise of (h + l + c) / 3 on equal sums
    # counts as a move there; compare the windows without such a near-tie
    typical = (c.high + c.low + c.close) / 3
    change = typical.diff()
    near_tie = (change != 0) & (change.abs() <= 1e-12 * typical)
    clean = near_tie.astype(int).rolling(14).sum().eq(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_matches(f["feat_mfi_14"], ta.volume.money_flow_index(c.high, c.low, c.close, c.volume, 14), clean)
