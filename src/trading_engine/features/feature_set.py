"""The feature set: causal, scale-free features of one candle series (see docs/features.md).

`compute_features(candles, reference=None, funding=None)` returns one float32 column per
feature, named `feat_*`, on the candles' index: the 62 OHLCV features, the 7 order-flow features
when the candles carry order flow (`data.schema.ORDER_FLOW_COLUMNS`), and the 2 funding features
when funding settlements are given. Everything is computed in float64; each feature is cast into
the float32 table as soon as it is computed (half the memory; float32 keeps 7 significant
digits, far more than any of these features carries).
A feature is NaN only while its own lookback is not yet filled; after that it is finite, also on
flat candles (open = high = low = close) and zero-volume candles.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import pandas as pd

from trading_engine.data.schema import ORDER_FLOW_COLUMNS, PRICE_COLUMNS, has_order_flow
from trading_engine.features import indicators as ind

EMA_SPANS = (5, 10, 20, 50, 100)
ATR_WINDOW = 14
#: Bars a model-input row needs behind it: three times the longest EMA span (the seed's weight
#: has fallen to e^-6 by then), which is also more than every finite lookback (see docs).
WARMUP_BARS = 3 * max(EMA_SPANS)
IMBALANCE_WINDOWS = (5, 20, 50)
ORDER_FLOW_WINDOW = 50  # the trailing level of the share, the trade count and the trade size
FUNDING_CHANGE = pd.Timedelta(days=3)
#: Feature groups computed at once: one per core, at most 4 (the groups are 8-10 and uneven).
GROUP_THREADS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))

OHLCV_FEATURE_NAMES: tuple[str, ...] = (
    # volatility
    "feat_atr", "feat_realized_vol_10", "feat_realized_vol_20", "feat_realized_vol_50",
    "feat_parkinson_vol_10", "feat_parkinson_vol_20", "feat_vol_ratio",
    # momentum
    "feat_rsi_7", "feat_rsi_14", "feat_rsi_21",
    "feat_roc_1", "feat_roc_5", "feat_roc_10", "feat_roc_20",
    "feat_macd", "feat_macd_signal", "feat_macd_hist",
    "feat_stoch_14", "feat_stoch_21", "feat_stoch_d_14",
    "feat_cci_20", "feat_mfi_14",
    # trend
    *(f"feat_ema_{span}" for span in EMA_SPANS),
    *(f"feat_dist_ema_{span}" for span in EMA_SPANS),
    "feat_ema_slope_20", "feat_ema_slope_50", "feat_adx", "feat_adx_di", "feat_trend_score",
    "feat_bb_position_20", "feat_bb_width_20",
    # volume
    "feat_vol_ratio_10", "feat_vol_ratio_20", "feat_vol_ratio_50",
    "feat_vwap_dist", "feat_obv_slope", "feat_mfv_sum_20",
    # microstructure
    "feat_close_position", "feat_body_ratio", "feat_upper_shadow", "feat_lower_shadow",
    "feat_candle_dir", "feat_consecutive", "feat_gap",
    "feat_ret_lag_1", "feat_ret_lag_2", "feat_ret_lag_3",
    # calendar (of the bar's open time, UTC)
    "feat_hour_sin", "feat_hour_cos", "feat_weekday_sin", "feat_weekday_cos",
    # cross-asset (the reference series, e.g. BTC, aligned causally)
    "feat_ref_ret_1", "feat_ref_ret_5", "feat_ref_corr_50",
)
#: Need the order-flow columns (data.schema.ORDER_FLOW_COLUMNS).
ORDER_FLOW_FEATURE_NAMES: tuple[str, ...] = (
    "feat_taker_buy_share", "feat_taker_buy_share_dev_50",
    *(f"feat_volume_imbalance_{window}" for window in IMBALANCE_WINDOWS),
    "feat_trade_intensity_50", "feat_trade_size_ratio_50",
)
#: Need the funding settlements.
FUNDING_FEATURE_NAMES: tuple[str, ...] = ("feat_funding_rate", "feat_funding_change_3d")
#: Every feature, in column order.
FEATURE_NAMES: tuple[str, ...] = (
    *OHLCV_FEATURE_NAMES, *ORDER_FLOW_FEATURE_NAMES, *FUNDING_FEATURE_NAMES,
)


def feature_names(order_flow: bool = True, funding: bool = True) -> tuple[str, ...]:
    """The feature columns, in order, with or without the groups that need more than OHLCV."""
    return (
        *OHLCV_FEATURE_NAMES,
        *(ORDER_FLOW_FEATURE_NAMES if order_flow else ()),
        *(FUNDING_FEATURE_NAMES if funding else ()),
    )


_SECONDS_PER_DAY = 86_400
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


def _validated_ohlcv(candles: pd.DataFrame, order_flow: bool) -> dict[str, np.ndarray]:
    if not isinstance(candles.index, pd.DatetimeIndex):
        raise TypeError("candles must be indexed by a DatetimeIndex (see data.schema.to_indexed)")
    missing = [c for c in (*PRICE_COLUMNS, "volume") if c not in candles.columns]
    if missing:
        raise ValueError(f"candles lack the columns {missing}")
    if not candles.index.is_monotonic_increasing or not candles.index.is_unique:
        raise ValueError("candle timestamps must be unique and sorted")
    columns = (*PRICE_COLUMNS, "volume", *(ORDER_FLOW_COLUMNS if order_flow else ()))
    arrays = {c: candles[c].to_numpy(dtype=np.float64) for c in columns}
    for column in PRICE_COLUMNS:  # NaN fails both comparisons
        if not (arrays[column] > 0).all() or not (arrays[column] < np.inf).all():
            raise ValueError(f"candle prices must be finite and positive ({column})")
    for column in columns[4:]:
        if not (arrays[column] >= 0).all() or not (arrays[column] < np.inf).all():
            raise ValueError(f"candle {column} must be finite and >= 0")
    return arrays


class _FeatureWriter:
    """Writes each feature into its column of the float32 table as soon as it is computed, so
    that no float64 copy of the whole feature set is ever held."""

    def __init__(self, table: np.ndarray, names: tuple[str, ...]) -> None:
        self.table = table
        self.names = names
        self._column = {name: j for j, name in enumerate(names)}
        self.written: set[str] = set()

    def __setitem__(self, name: str, values: np.ndarray) -> None:
        self.table[:, self._column[name]] = values
        self.written.add(name)

    def check_complete(self) -> None:
        if len(self.written) != len(self.names):
            raise AssertionError(f"features not computed: {sorted(set(self.names) - self.written)}")


def _run_length(direction: np.ndarray) -> np.ndarray:
    """Signed count of consecutive bars with the same non-zero direction, ending at t."""
    n = direction.shape[0]
    position = np.arange(n)
    starts = np.ones(n, dtype=bool)
    starts[1:] = direction[1:] != direction[:-1]
    run_start = np.maximum.accumulate(np.where(starts, position, 0))
    return direction * (position - run_start + 1)


def _seconds_since_epoch(index: pd.DatetimeIndex) -> np.ndarray:
    if index.tz is None:
        index = index.tz_localize("UTC")
    return index.as_unit("s").asi8


def _aligned_reference_log_close(index: pd.DatetimeIndex, reference: pd.DataFrame,
                                 fill_limit: int) -> np.ndarray:
    """log close of the reference bar with the same open time as each of our bars; a missing
    reference bar takes the last earlier one for at most `fill_limit` bars, else NaN."""
    ref_close = reference["close"]
    if not isinstance(ref_close.index, pd.DatetimeIndex):
        raise TypeError("the reference must be indexed by a DatetimeIndex")
    ref_close = ref_close[~ref_close.index.duplicated(keep="last")].sort_index()
    if (index.tz is None) != (ref_close.index.tz is None):
        raise ValueError("candles and reference must both be tz-aware (UTC) or both naive")
    aligned = ref_close.reindex(index, method="ffill", limit=fill_limit) if fill_limit > 0 \
        else ref_close.reindex(index)
    return np.log(aligned.to_numpy(dtype=np.float64))


def compute_features(candles: pd.DataFrame, reference: pd.DataFrame | None = None, *,
                     reference_fill_limit: int = 0, funding: pd.DataFrame | None = None,
                     timeframe: pd.Timedelta | None = None,
                     order_flow: bool | None = None) -> pd.DataFrame:
    """The feature table of one series.

    candles: indexed by a sorted UTC DatetimeIndex, float columns open, high, low, close, volume
        (and the order-flow columns, for the order-flow features).
    reference: candles of the cross-asset reference (e.g. BTC, same timeframe), or None to use
        the series itself (so BTC's cross-asset features are its own returns, a correlation of 1).
        Only reference bars with open time <= t are used at t.
    reference_fill_limit: how many bars a missing reference bar may be carried forward; beyond
        that the cross-asset features are 0 (no information).
    funding: the perpetual's funding settlements (`timestamp`, `funding_rate`), for the funding
        features; None leaves them out. Only settlements before a bar's close are used, so the
        funding features need the `timeframe` (the bar's length).
    order_flow: compute the order-flow features (True: the candles must have them; False: leave
        them out; None: when the candles have them on every row).
    Returns one float32 column per name in `feature_names(order_flow, funding is not None)`,
    same index as the candles.
    """
    if order_flow is None:
        order_flow = has_order_flow(candles)
    elif order_flow and not has_order_flow(candles):
        raise ValueError(f"the order-flow features need {', '.join(ORDER_FLOW_COLUMNS)} on every row")
    if funding is not None and timeframe is None:
        raise ValueError("the funding features need the timeframe: a settlement is known at a bar's close")
    c = _validated_ohlcv(candles, order_flow)
    n = c["close"].shape[0]
    names = feature_names(order_flow, funding is not None)
    table = np.empty((n, len(names)), dtype=np.float32, order="F")
    f = _FeatureWriter(table, names)  # f[name] = float64 values: cast into the float32 table at once
    log_close = np.log(c["close"])
    log_return = np.diff(log_close, prepend=np.nan)
    average_true_range = ind.atr(c["high"], c["low"], c["close"], ATR_WINDOW)

    if reference is None:
        ref_log_close = log_close
    else:
        ref_log_close = _aligned_reference_log_close(candles.index, reference, reference_fill_limit)
    # One function per group, so that each group's intermediate arrays are freed on return; the
    # groups write disjoint columns and run on GROUP_THREADS threads (TA-Lib and numpy release
    # the GIL), the slowest first.
    groups: list[Callable[[], None]] = [
        partial(_momentum, f, c), partial(_trend, f, c, average_true_range),
        *([partial(_order_flow, f, c)] if order_flow else []),
        partial(_volume, f, c), partial(_volatility, f, c, log_return, average_true_range),
        partial(_cross_asset, f, log_return, ref_log_close), partial(_microstructure, f, c, log_return),
        partial(_calendar, f, candles.index),
        *([partial(_funding, f, candles.index, funding, pd.Timedelta(timeframe))] if funding is not None else []),
    ]
    with ThreadPoolExecutor(max_workers=GROUP_THREADS) as pool:
        for running in [pool.submit(group) for group in groups]:
            running.result()
    f.check_complete()
    return pd.DataFrame(table, index=candles.index, columns=list(names), copy=False)


Candles = dict[str, np.ndarray]


def _volatility(f: _FeatureWriter, c: Candles, log_return: np.ndarray, atr: np.ndarray) -> None:
    f["feat_atr"] = atr / c["close"]
    realized = {w: ind.rolling_std(log_return, w) for w in (10, 20, 50)}
    for window, vol in realized.items():
        f[f"feat_realized_vol_{window}"] = vol
    log_range_sq = np.log(c["high"] / c["low"]) ** 2
    for window in (10, 20):
        f[f"feat_parkinson_vol_{window}"] = np.sqrt(
            ind.rolling_mean(log_range_sq, window) / (4.0 * np.log(2.0)))
    f["feat_vol_ratio"] = ind.safe_divide(realized[10], realized[50], 1.0)


def _momentum(f: _FeatureWriter, c: Candles) -> None:
    high, low, close, volume = c["high"], c["low"], c["close"], c["volume"]
    for window in (7, 14, 21):
        f[f"feat_rsi_{window}"] = ind.rsi(close, window)
    for window in (1, 5, 10, 20):
        f[f"feat_roc_{window}"] = ind.rate_of_change(close, window)
    macd_line, macd_signal, macd_hist = ind.macd(close, 12, 26, 9)
    f["feat_macd"] = macd_line / close
    f["feat_macd_signal"] = macd_signal / close
    f["feat_macd_hist"] = macd_hist / close
    stoch_14 = ind.stochastic_k(high, low, close, 14)
    f["feat_stoch_14"] = stoch_14
    f["feat_stoch_21"] = ind.stochastic_k(high, low, close, 21)
    f["feat_stoch_d_14"] = ind.rolling_mean(stoch_14, 3)
    f["feat_cci_20"] = ind.commodity_channel_index(high, low, close, 20)
    f["feat_mfi_14"] = ind.money_flow_index(high, low, close, volume, 14)


def _trend(f: _FeatureWriter, c: Candles, atr: np.ndarray) -> None:
    high, low, close = c["high"], c["low"], c["close"]
    emas = {span: ind.ema(close, span) for span in EMA_SPANS}
    for span, average in emas.items():
        f[f"feat_ema_{span}"] = ind.safe_divide(close - average, atr, 0.0)
    for span, average in emas.items():
        f[f"feat_dist_ema_{span}"] = close / average - 1.0
    for span in (20, 50):
        f[f"feat_ema_slope_{span}"] = ind.safe_divide(
            emas[span] - ind.shift(emas[span], 5), 5.0 * atr, 0.0)
    f["feat_trend_score"] = (np.sign(close - emas[10]) + np.sign(emas[10] - emas[20])
                             + np.sign(emas[20] - emas[50]) + np.sign(emas[50] - emas[100])) / 4.0
    del emas
    adx, plus_di, minus_di = ind.adx(high, low, close, ATR_WINDOW)
    f["feat_adx"] = adx
    f["feat_adx_di"] = ind.safe_divide(plus_di - minus_di, plus_di + minus_di, 0.0)
    f["feat_bb_position_20"], f["feat_bb_width_20"] = ind.bollinger(close, 20, 2.0)


def _volume(f: _FeatureWriter, c: Candles) -> None:
    high, low, close, volume = c["high"], c["low"], c["close"], c["volume"]
    for window in (10, 20, 50):
        # a flat window's residue does not matter here: its volume (numerator) is 0 too
        mean_volume = ind.rolling_mean(volume, window, exact_when_constant=False)
        f[f"feat_vol_ratio_{window}"] = ind.safe_divide(volume, mean_volume, 0.0)
    f["feat_vwap_dist"] = close / ind.volume_weighted_average_price(high, low, close, volume, 20) - 1.0
    volume_20 = ind.rolling_sum(volume, 20)
    f["feat_obv_slope"] = ind.safe_divide(
        ind.rolling_sum(ind.on_balance_volume_flow(close, volume), 20), volume_20, 0.0)
    f["feat_mfv_sum_20"] = ind.chaikin_money_flow(high, low, close, volume, 20)


def _microstructure(f: _FeatureWriter, c: Candles, log_return: np.ndarray) -> None:
    open_, high, low, close = c["open"], c["high"], c["low"], c["close"]
    bar_range = high - low
    f["feat_close_position"] = ind.safe_divide(close - low, bar_range, 0.5)
    f["feat_body_ratio"] = ind.safe_divide(np.abs(close - open_), bar_range, 0.0)
    f["feat_upper_shadow"] = ind.safe_divide(high - np.maximum(open_, close), bar_range, 0.0)
    f["feat_lower_shadow"] = ind.safe_divide(np.minimum(open_, close) - low, bar_range, 0.0)
    direction = np.sign(close - open_)
    f["feat_candle_dir"] = direction
    f["feat_consecutive"] = _run_length(direction)
    f["feat_gap"] = open_ / ind.shift(close, 1) - 1.0
    for lag in (1, 2, 3):
        f[f"feat_ret_lag_{lag}"] = ind.shift(log_return, lag)


def _calendar(f: _FeatureWriter, index: pd.DatetimeIndex) -> None:
    """sin / cos of the time of day and of the week, looked up per second of the day (one sine
    per distinct second instead of one per bar)."""
    seconds = _seconds_since_epoch(index)
    second_of_day = seconds % _SECONDS_PER_DAY
    weekday = (seconds // _SECONDS_PER_DAY + _EPOCH_WEEKDAY) % 7
    day_angle = 2.0 * np.pi * np.arange(_SECONDS_PER_DAY) / _SECONDS_PER_DAY
    f["feat_hour_sin"] = np.sin(day_angle)[second_of_day]
    f["feat_hour_cos"] = np.cos(day_angle)[second_of_day]
    # week angle = 2 pi weekday / 7 + day angle / 7: sin and cos of a sum
    part_of_day, whole_days = day_angle / 7.0, 2.0 * np.pi * np.arange(7) / 7.0
    sin_day, cos_day = np.sin(part_of_day)[second_of_day], np.cos(part_of_day)[second_of_day]
    sin_week, cos_week = np.sin(whole_days)[weekday], np.cos(whole_days)[weekday]
    f["feat_weekday_sin"] = sin_week * cos_day + cos_week * sin_day
    f["feat_weekday_cos"] = cos_week * cos_day - sin_week * sin_day


def _cross_asset(f: _FeatureWriter, log_return: np.ndarray, ref_log_close: np.ndarray) -> None:
    """The reference's 1- and 5-bar log returns and its 50-bar return correlation with ours;
    0 where the reference has no bar (after the series' own first 1, 5, 50 bars)."""
    n = log_return.shape[0]
    ref_return = np.diff(ref_log_close, prepend=np.nan)
    f["feat_ref_ret_1"] = np.where(np.arange(n) >= 1, np.nan_to_num(ref_return), np.nan)
    f["feat_ref_ret_5"] = np.where(np.arange(n) >= 5,
                                   np.nan_to_num(ref_log_close - ind.shift(ref_log_close, 5)), np.nan)
    correlation = ind.rolling_correlation(log_return, ref_return, 50)
    correlation = np.clip(np.nan_to_num(correlation, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0)
    f["feat_ref_corr_50"] = np.where(np.arange(n) >= 50, correlation, np.nan)


def _order_flow(f: _FeatureWriter, c: Candles) -> None:
    """Who traded: the taker-buy share of the volume, signed volume imbalance, trade-count
    intensity and average trade size, each relative to its own trailing level (scale-free)."""
    volume, buy, trades = c["volume"], c["taker_buy_volume"], c["trade_count"]
    window = ORDER_FLOW_WINDOW
    share = ind.safe_divide(buy, volume, 0.5)
    f["feat_taker_buy_share"] = share
    f["feat_taker_buy_share_dev_50"] = share - ind.rolling_mean(share, window)
    signed = 2.0 * buy - volume  # taker buys minus taker sells
    for span in IMBALANCE_WINDOWS:
        f[f"feat_volume_imbalance_{span}"] = ind.safe_divide(
            ind.rolling_sum(signed, span), ind.rolling_sum(volume, span), 0.0)
    trades_in_window = ind.rolling_sum(trades, window)
    f["feat_trade_intensity_50"] = ind.safe_divide(trades * window, trades_in_window, 0.0)
    size = ind.safe_divide(volume, trades, np.nan)
    usual_size = ind.safe_divide(ind.rolling_sum(volume, window), trades_in_window, np.nan)
    ratio = size / usual_size
    ratio[(trades == 0) | ~np.isfinite(usual_size)] = 1.0  # no trade now or in the window
    ratio[: window - 1] = np.nan
    f["feat_trade_size_ratio_50"] = ratio


def _funding(f: _FeatureWriter, index: pd.DatetimeIndex, funding: pd.DataFrame,
             timeframe: pd.Timedelta) -> None:
    """The last funding rate settled before the bar's close, and its change over 3 days (the
    rate known then); 0 before the first settlement of the table (no rate known)."""
    bar_close = _nanoseconds(index) + timeframe.value
    times = funding["timestamp"] if "timestamp" in funding.columns else funding.index
    settled = _nanoseconds(pd.DatetimeIndex(times))
    order = np.argsort(settled, kind="stable")
    settled, rates = settled[order], funding["funding_rate"].to_numpy(dtype=np.float64)[order]
    known = np.concatenate([[0.0], rates])  # position 0: nothing settled yet

    def rate_known_at(moments: np.ndarray) -> np.ndarray:
        return known[np.searchsorted(settled, moments, side="left")]  # settled strictly before

    rate = rate_known_at(bar_close)
    f["feat_funding_rate"] = rate
    f["feat_funding_change_3d"] = rate - rate_known_at(bar_close - FUNDING_CHANGE.value)


def _nanoseconds(index: pd.DatetimeIndex) -> np.ndarray:
    if index.tz is None:
        index = index.tz_localize("UTC")
    return index.tz_convert("UTC").as_unit("ns").asi8
