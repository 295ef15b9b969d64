"""Properties of compute_features on real candles: causal, scale-free, bounded, finite."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from tests.features.conftest import load_real
from trading_engine.data.schema import ORDER_FLOW_COLUMNS
from trading_engine.features import (
    FEATURE_NAMES,
    OHLCV_FEATURE_NAMES,
    ORDER_FLOW_FEATURE_NAMES,
    WARMUP_BARS,
    compute_features,
    feature_set,
    indicators,
)

FIVE_MINUTES = pd.Timedelta(minutes=5)

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
    assert len(OHLCV_FEATURE_NAMES) >= 53 and len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert list(features.columns) == list(OHLCV_FEATURE_NAMES)  # OHLCV candles: no order flow
    assert all(name.startswith("feat_") for name in FEATURE_NAMES)
    assert PRODUCT_BRIEF_FEATURES <= set(features.columns)
    assert (features.dtypes == np.float32).all()
    assert features.index.equals(eth_5m.index[:500])


def test_order_flow_and_funding_groups_come_with_their_data(archive_5m, funding_5m):
    candles = archive_5m["ETH"].iloc[:500]
    every = compute_features(candles, funding=funding_5m, timeframe=FIVE_MINUTES)
    assert list(every.columns) == list(FEATURE_NAMES)  # all groups, in the documented order
    assert list(compute_features(candles).columns) == [*OHLCV_FEATURE_NAMES, *ORDER_FLOW_FEATURE_NAMES]
    without = compute_features(candles, order_flow=False)
    assert list(without.columns) == list(OHLCV_FEATURE_NAMES)
    pd.testing.assert_frame_equal(without, every[list(OHLCV_FEATURE_NAMES)])  # groups independent
    no_flow = candles.assign(trade_count=np.nan)  # e.g. an OHLCV file: the columns are null
    assert list(compute_features(no_flow).columns) == list(OHLCV_FEATURE_NAMES)
    with pytest.raises(ValueError, match="order-flow features need"):
        compute_features(no_flow, order_flow=True)
    with pytest.raises(ValueError, match="need the timeframe"):
        compute_features(candles, funding=funding_5m)


def test_the_feature_table_is_the_same_on_one_thread_and_on_four(archive_5m, funding_5m, monkeypatch):
    candles = archive_5m["ETH"].iloc[:2000]
    monkeypatch.setattr(feature_set, "GROUP_THREADS", 4)
    threaded = compute_features(candles, archive_5m["BTC"], funding=funding_5m, timeframe=FIVE_MINUTES)
    monkeypatch.setattr(feature_set, "GROUP_THREADS", 1)
    alone = compute_features(candles, archive_5m["BTC"], funding=funding_5m, timeframe=FIVE_MINUTES)
    pd.testing.assert_frame_equal(threaded, alone, check_exact=True)


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


def test_order_flow_and_funding_features_are_invariant_to_truncation(archive_5m, funding_5m):
    """The same property for every group, on real candles with real order flow (2 months of
    ETH 5m, BTC as the reference) and settlements stamped a few ms after the hour: the funding
    table always holds the whole history, later settlements included."""
    eth, btc = archive_5m["ETH"], archive_5m["BTC"]

    def features(candles: pd.DataFrame) -> pd.DataFrame:
        return compute_features(candles, btc, funding=funding_5m, timeframe=FIVE_MINUTES)

    full = features(eth)
    rng = np.random.default_rng(20261130)
    cuts = [1, 2, 49, 50, 51, 95, 96, 97, WARMUP_BARS, 864, 865, *rng.integers(2, len(eth), 16)]
    for k in cuts:
        assert_same_features(features(eth.iloc[:k]), full.iloc[:k], rtol=1e-9)


def test_features_are_scale_free(eth_5m, btc_5m):
    """Prices x 10 (and x 0.37) and volume x 3 leave every feature unchanged (float32 rounding)."""
    base = compute_features(eth_5m, btc_5m)
    for price_factor in (10.0, 0.37):
        scaled = eth_5m.copy()
        scaled[["open", "high", "low", "close"]] *= price_factor
        scaled["volume"] *= 3.0
        assert_same_features(compute_features(scaled, btc_5m), base, rtol=2e-5)


def test_order_flow_features_are_scale_free(archive_5m, funding_5m):
    """Prices x 10 and base volumes x 3 (so quote volumes x 30, trades unchanged) leave every
    feature unchanged."""
    eth = archive_5m["ETH"]
    base = compute_features(eth, funding=funding_5m, timeframe=FIVE_MINUTES)
    scaled = eth.copy()
    scaled[["open", "high", "low", "close"]] *= 10.0
    scaled[["volume", "taker_buy_volume"]] *= 3.0
    scaled[["quote_volume", "taker_buy_quote_volume"]] *= 30.0
    assert_same_features(compute_features(scaled, funding=funding_5m, timeframe=FIVE_MINUTES), base,
                         rtol=2e-5)


def test_order_flow_features_follow_their_definitions(archive_5m):
    candles = archive_5m["BTC"].iloc[:3_000]
    f = compute_features(candles).astype(np.float64)
    volume, buy, trades = candles["volume"], candles["taker_buy_volume"], candles["trade_count"]
    share = buy / volume
    close = dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f["feat_taker_buy_share"], share, **close)
    np.testing.assert_allclose(f["feat_taker_buy_share_dev_50"], share - share.rolling(50).mean(), **close)
    for window in (5, 20, 50):
        expected = (2 * buy - volume).rolling(window).sum() / volume.rolling(window).sum()
        np.testing.assert_allclose(f[f"feat_volume_imbalance_{window}"], expected, **close)
    np.testing.assert_allclose(f["feat_trade_intensity_50"], trades / trades.rolling(50).mean(), **close)
    usual_size = volume.rolling(50).sum() / trades.rolling(50).sum()
    np.testing.assert_allclose(f["feat_trade_size_ratio_50"], volume / trades / usual_size, **close)
    assert (f[list(ORDER_FLOW_FEATURE_NAMES)].iloc[49:].abs() < 50).all().all()


def test_funding_features_use_only_settlements_before_the_bar_closes(archive_5m):
    candles = archive_5m["ETH"].iloc[: 288 * 5]  # five days of 5m bars
    start = candles.index[0]
    settled = pd.date_range(start, candles.index[-1], freq="8h") + pd.Timedelta(milliseconds=2)
    funding = pd.DataFrame({"timestamp": settled, "funding_rate": np.arange(len(settled)) * 1e-5 + 1e-4})
    f = compute_features(candles, funding=funding, timeframe=FIVE_MINUTES).astype(np.float64)
    rate = f["feat_funding_rate"]
    assert rate.iloc[0] == pytest.approx(1e-4)  # settled 2 ms after the first bar opened
    eight_hours = 96
    assert rate.iloc[eight_hours - 1] == pytest.approx(1e-4)  # the bar before the next settlement
    assert rate.iloc[eight_hours] == pytest.approx(1.1e-4)  # known at the close of that bar
    three_days = 3 * 288
    change = f["feat_funding_change_3d"]
    assert (change.iloc[:three_days] == rate.iloc[:three_days]).all()  # nothing known 3 days before
    np.testing.assert_allclose(change.iloc[three_days:], 9 * 1e-5, rtol=1e-5)  # 9 settlements later


def test_rolling_std_of_price_levels_stays_exact_over_a_million_bars():
    """TA-Lib's rolling standard deviation (population) against an exact two-pass computation,
    on a million 1m closes near 60,000 (pandas' online update drifted by 8e-5 there)."""
    rng = np.random.default_rng(3)
    close = 60_000 * np.exp(np.cumsum(rng.normal(0, 5e-4, 1_000_000)))
    std = indicators.rolling_std(close, 20, ddof=0)
    for t in (19, 431_000, 862_000, 999_999):
        exact = np.std(close[t - 19 : t + 1])
        assert std[t] == pytest.approx(exact, rel=1e-9)


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


@pytest.mark.parametrize("start,length", [(0, 400), (3_000, 150), (5_000, 1)])
def test_a_dead_market_gives_finite_neutral_order_flow_features(archive_5m, start, length):
    candles = _with_flat_dead_market(archive_5m["BTC"].iloc[:6_000], start, length)
    candles.iloc[start : start + length, candles.columns.get_indexer(ORDER_FLOW_COLUMNS)] = 0.0
    features = compute_features(candles)[list(ORDER_FLOW_FEATURE_NAMES)]
    assert np.isfinite(features.iloc[WARMUP_BARS:].to_numpy()).all()
    flat = features.iloc[max(start, WARMUP_BARS) + 60 : start + length]
    if len(flat):
        assert (flat["feat_taker_buy_share"] == 0.5).all() and (flat["feat_taker_buy_share_dev_50"] == 0).all()
        assert (flat["feat_volume_imbalance_20"] == 0).all() and (flat["feat_trade_intensity_50"] == 0).all()
        assert (flat["feat_trade_size_ratio_50"] == 1).all()


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
