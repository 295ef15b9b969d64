"""Deterministic synthetic candles and funding rates: the offline demo's market.

The data are SYNTHETIC. They imitate the stylised facts of Binance USDT-M perpetuals (calibrated on
the real 5m candles of BTC, ETH and SOL, 2025) and carry one small planted, predictable component,
so that the whole research pipeline can be run and checked without an exchange.

The model, per symbol and bar t (timeframe of `dt` minutes):

* Innovation `z_t = b * c_t + sqrt(1 - b^2) * e_t`: a common market factor `c_t` (from the seed
  alone, shared by all symbols) and an idiosyncratic part `e_t`, both Student-t with 4 degrees
  of freedom scaled to unit variance (fat tails). Loadings `b` of 0.93 / 0.93 / 0.90 give 5m return
  correlations of about 0.79 / 0.75 / 0.77 for BTC-ETH / BTC-SOL / ETH-SOL (Binance: 0.80 / 0.76
  / 0.78).
* Volatility `sigma_t = sigma * season_t * exp(h_t - var(h))`: a per-bar level from the annual
  volatility (BTC 50 %, ETH 70 %, SOL 90 %), an hour-of-day and weekend profile measured on the
  real candles (quiet around 05 UTC, busiest at 14 UTC, weekends about 0.7x), and a stochastic
  log-volatility `h_t`, the sum of a fast (half-life 30 min) and a slow (half-life 2 days)
  Gaussian AR(1), each partly common to all symbols. Log-volatility that follows an AR(1) gives
  volatility clustering like a GARCH(1,1) and is computed with `scipy.signal.lfilter`, not a
  Python loop.
* The planted signal, the only predictable part of the returns:

      m_t   = (z_{t-1} + ... + z_{t-L}) / sqrt(L)              (L = `signal_lookback`, 12 bars)
      r_t   = sigma_t * (signal_strength * tanh(m_t) + z_t)    (log return of bar t)

  `m_t` is the volatility-standardised sum of the previous L bars' innovations, i.e. very nearly
  the previous L bars' log return divided by their volatility: short-term MOMENTUM. The drift of
  bar t is a function of bars < t only. In units of the bar's volatility it is at most
  `signal_strength` (default 0.05, i.e. 5 % of one bar's standard deviation); the correlation
  between `tanh(m_t)` and `r_t / sigma_t` is about `0.63 * signal_strength` (0.03 at the
  default). Measured from the candles alone (past 12 log returns over an EWMA volatility of
  earlier bars) it is about 0.023 on 5m bars at the default strength and 0.00 +- 0.006 at 0: an
  information coefficient that a model of past candles can find with enough bars, but small
  next to trading costs (on BTC 5m, about 0.5 bp of expected edge a bar against a round trip of
  about 12 bp of fees and slippage). `signal_strength=0` gives a martingale: `z` is
  independent of the past and the volatility is independent of `z`, so no function of the past
  predicts the sign or the mean of the next return.
* Candles: `open_t = close_{t-1}` (the first open is the start price: BTC 60,000, ETH 3,000,
  SOL 150), `close_t = open_t * exp(r_t)`; the high and the low are drawn from the exact
  marginal laws of the maximum and the minimum of a Brownian bridge from open to close with the
  bar's volatility, so `low <= min(open, close) <= max(open, close) <= high` by construction.
  Prices are rounded to the symbol's tick (BTC 0.1, ETH 0.01, SOL 0.001), which keeps the order.
* Volume (base asset, positive): the real hour-of-day and weekend volume profile times
  `exp(0.8 h_t)` times `(0.4 + 0.6 |r_t| / (0.8 sigma_t))` times log-normal noise, so volume rises
  with volatility and with the bar's absolute return (correlation with |return| about 0.7, as
  on Binance).
* Order flow, consistent with the same dynamics. The taker-buy share of the volume is
  `logistic(0.45 s_t + 0.25 u_t)`, where `s_t = r_t / sigma_t` is the bar's standardised return
  and `u_t` independent noise: aggressive buyers move the price up, so the share follows the
  bar's own return (correlation about 0.7 with the log return, 0.12 standard deviation around one
  half). It predicts nothing that the past returns do not: the planted momentum is a function
  of past innovations, which past shares reflect as past returns do. Trades: the volume over
  an average trade size (the symbol's size times log-normal noise, standard deviation 0.3), at
  least one. Quote volume: the volume times the mean of open, high, low and close (inside
  [low, high]), and the taker-buy quote volume likewise. So `taker_buy_volume <= volume` and
  `taker_buy_quote_volume <= quote_volume`.

Other symbols get a generic profile (price level and volatility fixed by the symbol's name).

Determinism. Every random array is drawn from its own generator, seeded by `seed` and a stable
hash of (component, symbol, timeframe); the common factor's generators depend on `seed` and the
timeframe only. The candles of (symbol, timeframe, seed, start, signal parameters) therefore do not
depend on `end` (a later `end` extends the series; earlier rows are identical) nor on which other
symbols are requested. They do depend on `start`: the series begins at `start` (rounded up to the
timeframe) at the symbol's start price, so an incremental update must regenerate from the same
`start` and keep the new rows.

Timeframes. Each timeframe is generated directly by default (its own draws, same calibration per
unit of time; the signal lives at that timeframe's bars). With `base_timeframe='1m'`, candles are
generated at 1m and aggregated (first open, max high, min low, last close, summed volume), so the
5m and 1m series of one seed are consistent with each other; the signal then lives at 1m bars.

Funding (`generate_funding_rates`): settlements at 00, 08 and 16 UTC. A persistent premium index
`p_k` (AR(1), 0.95 per settlement, Student-t innovations, partly common to all symbols) goes
through Binance's formula `F = p + clamp(0.01 % - p, -0.05 %, +0.05 %)`: most settlements pay
exactly 0.01 %, the mean is about 1e-4 per 8 h, and a few percent are negative, in episodes.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from trading_engine.data.schema import (
    CANDLE_COLUMNS,
    ORDER_FLOW_COLUMNS,
    epoch_to_timestamps,
    funding_key,
    normalise_symbol,
    series_key,
    timeframe_offset_milliseconds,
    timeframe_to_milliseconds,
)
from trading_engine.data.storage import SeriesStore
from trading_engine.sources.base import (
    EmptyWindowError,
    Window,
    empty_window_message,
    replace_series,
)

logger = logging.getLogger(__name__)
GENERATOR_VERSION = "1.1"  # 1.1: order-flow fields

_MINUTE_MS = 60_000
_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000
_MINUTES_PER_YEAR = 365.25 * 24 * 60
_STUDENT_DF = 4.0


@dataclass(frozen=True)
class SymbolProfile:
    """The calibration of one symbol's synthetic market."""

    start_price: float
    annual_volatility: float
    market_loading: float  # weight of the common factor in the return innovation
    tick_size: float
    volume_per_minute: float  # base-asset volume per minute, at an average hour
    trade_size: float  # average base-asset size of one trade


PROFILES: dict[str, SymbolProfile] = {
    "BTC": SymbolProfile(60_000.0, 0.50, 0.93, 0.1, 120.0, 0.06),
    "ETH": SymbolProfile(3_000.0, 0.70, 0.93, 0.01, 3_600.0, 1.2),
    "SOL": SymbolProfile(150.0, 0.90, 0.90, 0.001, 17_000.0, 12.0),
}

# Mean |5m return| and mean volume by UTC hour, relative to the day's mean (Binance BTC, ETH, SOL
# perpetuals, 2025), and the weekend (Saturday, Sunday) level relative to weekdays.
_HOURLY_VOLATILITY = np.array(
    [1.09, 1.05, 0.97, 0.84, 0.80, 0.78, 0.80, 0.83, 0.86, 0.84, 0.78, 0.79,
     0.93, 1.18, 1.48, 1.40, 1.26, 1.21, 1.11, 1.05, 1.04, 1.05, 0.99, 0.88]
)  # fmt: skip
_HOURLY_VOLUME = np.array(
    [0.96, 0.90, 0.85, 0.75, 0.71, 0.69, 0.75, 0.84, 0.87, 0.82, 0.77, 0.79,
     1.01, 1.43, 1.93, 1.78, 1.50, 1.34, 1.12, 1.01, 0.96, 0.78, 0.74, 0.72]
)  # fmt: skip
_WEEKEND_VOLATILITY = 0.70
_WEEKEND_VOLUME = 0.59

# Log-volatility: two AR(1) components (half-life in minutes, standard deviation, share common to
# all symbols).
_LOG_VOL_COMPONENTS = (("fast", 30.0, 0.45, 0.7), ("slow", 2 * 24 * 60.0, 0.45, 0.8))
_VOLUME_VOL_ELASTICITY = 0.8
_VOLUME_NOISE = 0.45
# Order flow: the taker-buy share's loading on the bar's standardised return and its noise; the
# log-normal spread of the average trade size.
_TAKER_RETURN_LOADING = 0.45
_TAKER_NOISE = 0.25
_TRADE_SIZE_NOISE = 0.3

# Funding: premium index AR(1) per settlement, its stationary standard deviation, common share.
_FUNDING_HOURS = (0, 8, 16)
_FUNDING_INTEREST = 1e-4
_FUNDING_CLAMP = 5e-4
_FUNDING_PERSISTENCE = 0.95
_FUNDING_PREMIUM_MEAN = 1e-4
_FUNDING_PREMIUM_STD = 3.5e-4
_FUNDING_COMMON_SHARE = 0.6
_FUNDING_CAP = 7.5e-3


def symbol_profile(symbol: str) -> SymbolProfile:
    """The calibration for a symbol; symbols other than BTC, ETH and SOL get a generic profile
    whose price level is fixed by a hash of the name."""
    base = normalise_symbol(symbol).split("/", 1)[0]
    if base in PROFILES:
        return PROFILES[base]
    price = float(10 ** (zlib.crc32(base.encode()) % 4))  # 1, 10, 100 or 1000
    return SymbolProfile(price, 1.0, 0.75, price * 1e-4, 2_000_000.0 / price, 1_000.0 / price)


class SyntheticSource:
    """`ingestion.source: synthetic`: the offline demo's market, regenerated over the window on
    every run (the same seed gives the same candles) and stored in place of the old series."""

    name = "synthetic"
    has_funding = True

    def __init__(
        self, seed: int = 7, signal_strength: float = 0.05, base_timeframe: str | None = None
    ) -> None:
        self.seed, self.signal_strength, self.base_timeframe = seed, signal_strength, base_timeframe

    def provenance(self, kind: str, symbol: str, timeframe: str | None) -> dict:
        return {
            **synthetic_provenance(self.seed, self.signal_strength),
            "exchange": None,
            "kind": kind,
            "symbol": symbol,
            "timeframe": timeframe,
        }

    def sync(
        self, store: SeriesStore, symbols: Sequence[str], timeframes: Sequence[str], window: Window
    ) -> dict[str, dict]:
        end = window.end_or_now()
        frames = {}
        for timeframe in timeframes:
            generated = generate_candles(
                symbols, timeframe, window.start, end, self.seed, self.signal_strength,
                base_timeframe=self.base_timeframe,
            )  # fmt: skip
            for symbol, frame in generated.items():
                frames[series_key(symbol, timeframe)] = (
                    frame,
                    self.provenance("candles", symbol, timeframe),
                )
        empty = [key for key, (frame, _) in frames.items() if frame.empty]
        if empty:
            raise EmptyWindowError(
                empty_window_message(empty, window, lambda key: "no candle opens in it")
            )
        return replace_series(store, frames, self.name)

    def sync_funding(
        self, store: SeriesStore, symbols: Sequence[str], window: Window
    ) -> dict[str, dict]:
        generated = generate_funding_rates(symbols, window.start, window.end_or_now(), self.seed)
        frames = {
            funding_key(symbol): (frame, self.provenance("funding_rates", symbol, None))
            for symbol, frame in generated.items()
        }
        return replace_series(store, frames, self.name)


def synthetic_provenance(seed: int, signal_strength: float) -> dict:
    """What the store attaches to synthetic data so that nobody mistakes it for a market."""
    return {
        "source": "synthetic",
        "generator": "trading_engine.sources.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "signal_strength": float(signal_strength),
        "note": (
            "SYNTHETIC data, not market prices: Student-t returns with stochastic volatility, "
            "intraday seasonality and a common factor, plus a planted short-term momentum "
            "signal of the given strength (0 = no predictability)."
        ),
    }


def generate_candles(
    symbols: Sequence[str],
    timeframe: str,
    start,
    end,
    seed: int = 7,
    signal_strength: float = 0.05,
    *,
    signal_lookback: int = 12,
    base_timeframe: str | None = None,
) -> dict[str, pd.DataFrame]:
    """Synthetic candles of every symbol, keyed by normalised symbol ('BTC/USDT:USDT').

    Each value is a candle table (`data.schema.CANDLE_COLUMNS`: `timestamp` datetime64[us, UTC],
    OHLCV and the order-flow fields, float64) with one candle for every open time in
    [start, end) aligned to the timeframe. See the module docstring for the model and the determinism guarantees.
    `base_timeframe` (e.g. '1m') generates at that finer timeframe and aggregates, so that
    several timeframes of one seed agree."""
    if signal_lookback < 1:
        raise ValueError(f"signal_lookback must be >= 1, got {signal_lookback}")
    base_timeframe = base_timeframe or timeframe
    step_ms = timeframe_to_milliseconds(timeframe)
    if step_ms % timeframe_to_milliseconds(base_timeframe):
        raise ValueError(
            f"timeframe {timeframe!r} is not a multiple of base_timeframe {base_timeframe!r}"
        )
    per_bar = step_ms // timeframe_to_milliseconds(base_timeframe)
    first_ms, count = _bar_range(timeframe, start, end)
    result = {}
    for symbol in [symbols] if isinstance(symbols, str) else symbols:
        name = normalise_symbol(symbol)
        candles = _candles(
            name, base_timeframe, first_ms, count * per_bar, seed, signal_strength, signal_lookback
        )
        result[name] = candles if per_bar == 1 else _aggregate(candles, per_bar)
    return result


def generate_funding_rates(
    symbols: Sequence[str], start, end, seed: int = 7
) -> dict[str, pd.DataFrame]:
    """Synthetic funding settlements (00, 08, 16 UTC in [start, end)) for every symbol, keyed by
    normalised symbol; columns `timestamp` (datetime64[us, UTC]) and `funding_rate` (float64,
    fraction per settlement, positive: longs pay shorts). Independent of `end` like the candles."""
    first_ms, count = _bar_range("8h", start, end)
    times = epoch_to_timestamps(
        first_ms + np.arange(count, dtype="int64") * 8 * _HOUR_MS, unit="ms"
    )
    common = _ar1(_rng(seed, "funding-common", "8h", ""), count, _FUNDING_PERSISTENCE, student=True)
    result = {}
    for symbol in [symbols] if isinstance(symbols, str) else symbols:
        name = normalise_symbol(symbol)
        own = _ar1(_rng(seed, "funding", "8h", name), count, _FUNDING_PERSISTENCE, student=True)
        premium = _FUNDING_PREMIUM_MEAN + _FUNDING_PREMIUM_STD * (
            np.sqrt(_FUNDING_COMMON_SHARE) * common + np.sqrt(1 - _FUNDING_COMMON_SHARE) * own
        )
        rate = premium + np.clip(_FUNDING_INTEREST - premium, -_FUNDING_CLAMP, _FUNDING_CLAMP)
        rate = np.round(np.clip(rate, -_FUNDING_CAP, _FUNDING_CAP), 8)
        result[name] = pd.DataFrame({"timestamp": times, "funding_rate": rate.astype("float64")})
    return result


# ------------------------------------------------------------------------------------ internals


def _to_utc(moment) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _bar_range(timeframe: str, start, end) -> tuple[int, int]:
    """The first aligned open time >= start (epoch ms) and the number of bars opening before end."""
    step = timeframe_to_milliseconds(timeframe)
    offset = timeframe_offset_milliseconds(timeframe)
    start_ms = _to_utc(start).value // 1_000_000
    end_ms = _to_utc(end).value // 1_000_000
    first = offset + -((offset - start_ms) // step) * step  # ceil to the grid
    count = max(0, -((first - end_ms) // step))
    return first, count


def _rng(seed: int, component: str, timeframe: str, symbol: str) -> np.random.Generator:
    """An independent stream per (seed, component, timeframe, symbol), stable across runs."""
    key = zlib.crc32(f"{component}|{timeframe}|{symbol}".encode())
    return np.random.default_rng([int(seed), key])


def _student(rng: np.random.Generator, count: int) -> np.ndarray:
    """Student-t draws scaled to unit variance."""
    return rng.standard_t(_STUDENT_DF, size=count) / np.sqrt(_STUDENT_DF / (_STUDENT_DF - 2))


def _ar1(
    rng: np.random.Generator, count: int, persistence: float, student: bool = False
) -> np.ndarray:
    """A stationary unit-variance AR(1) path started from its stationary law; the first draw is
    the state before the first bar, so a longer path extends a shorter one exactly."""
    initial = rng.standard_normal()
    shocks = _student(rng, count) if student else rng.standard_normal(count)
    shocks *= np.sqrt(1.0 - persistence**2)
    path, _ = lfilter([1.0], [1.0, -persistence], shocks, zi=[persistence * initial])
    return path


def _seasonal_profiles(open_ms: np.ndarray, step_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Volatility and volume multipliers of each bar (hour of day, weekend), each of mean 1 over
    a week; bars of a day or longer average the day away."""
    days = open_ms // _DAY_MS
    weekend = ((days + 3) % 7) >= 5  # 1970-01-01 was a Thursday
    volatility_week = (5 + 2 * _WEEKEND_VOLATILITY**2) / 7
    volume_week = (5 + 2 * _WEEKEND_VOLUME) / 7
    volatility = np.where(weekend, _WEEKEND_VOLATILITY, 1.0) / np.sqrt(volatility_week)
    volume = np.where(weekend, _WEEKEND_VOLUME, 1.0) / volume_week
    if step_ms >= _DAY_MS:
        return np.ones(len(open_ms)), np.ones(len(open_ms))
    hours = max(1, step_ms // _HOUR_MS)  # a bar of several hours takes their mean
    index = (np.arange(24)[:, None] + np.arange(hours)[None, :]) % 24
    hourly_variance = (_HOURLY_VOLATILITY**2 / np.mean(_HOURLY_VOLATILITY**2))[index].mean(axis=1)
    hourly_volume = (_HOURLY_VOLUME / _HOURLY_VOLUME.mean())[index].mean(axis=1)
    hour = (open_ms // _HOUR_MS) % 24
    return volatility * np.sqrt(hourly_variance[hour]), volume * hourly_volume[hour]


def _log_volatility(symbol: str, timeframe: str, count: int, seed: int) -> tuple[np.ndarray, float]:
    """The stochastic log-volatility path and its variance."""
    minutes = timeframe_to_milliseconds(timeframe) / _MINUTE_MS
    path = np.zeros(count)
    variance = 0.0
    for name, half_life, std, common_share in _LOG_VOL_COMPONENTS:
        persistence = 0.5 ** (minutes / half_life)
        common = _ar1(_rng(seed, f"logvol-{name}-common", timeframe, ""), count, persistence)
        own = _ar1(_rng(seed, f"logvol-{name}", timeframe, symbol), count, persistence)
        path += std * (np.sqrt(common_share) * common + np.sqrt(1.0 - common_share) * own)
        variance += std**2
    return path, variance


def _candles(
    symbol: str,
    timeframe: str,
    first_ms: int,
    count: int,
    seed: int,
    signal_strength: float,
    signal_lookback: int,
) -> pd.DataFrame:
    profile = symbol_profile(symbol)
    step_ms = timeframe_to_milliseconds(timeframe)
    minutes = step_ms / _MINUTE_MS
    open_ms = first_ms + np.arange(count, dtype="int64") * step_ms
    if count == 0:
        empty = {name: np.zeros(0) for name in CANDLE_COLUMNS[1:]}
        return pd.DataFrame({"timestamp": epoch_to_timestamps(open_ms, unit="ms"), **empty})

    season_volatility, season_volume = _seasonal_profiles(open_ms, step_ms)
    log_vol, log_vol_variance = _log_volatility(symbol, timeframe, count, seed)
    sigma = (
        profile.annual_volatility
        * np.sqrt(minutes / _MINUTES_PER_YEAR)
        * season_volatility
        * np.exp(log_vol - log_vol_variance)
    )  # E[sigma^2] = per-bar variance of the annual volatility

    loading = profile.market_loading
    innovation = loading * _student(_rng(seed, "market", timeframe, ""), count) + np.sqrt(
        1.0 - loading**2
    ) * _student(_rng(seed, "returns", timeframe, symbol), count)

    # The planted signal: tanh of the standardised sum of the previous L innovations.
    trailing_sum = lfilter(np.ones(signal_lookback), [1.0], innovation)
    momentum = np.concatenate([[0.0], trailing_sum[:-1]]) / np.sqrt(signal_lookback)
    standardised_return = signal_strength * np.tanh(momentum) + innovation
    log_return = sigma * standardised_return

    tick = profile.tick_size
    close = _round_to_tick(profile.start_price * np.exp(np.cumsum(log_return)), tick)
    open_ = np.concatenate([_round_to_tick(np.array([profile.start_price]), tick), close[:-1]])
    # Extremes of a Brownian bridge from 0 to c with variance sigma^2 over the bar:
    # P(max > m) = exp(-2 m (m - c) / sigma^2), sampled by inversion (likewise the min).
    body = np.log(close / open_)
    rng_extremes = _rng(seed, "extremes", timeframe, symbol)
    spread_high = np.sqrt(body**2 - 2.0 * sigma**2 * np.log(1.0 - rng_extremes.random(count)))
    rng_extremes = _rng(seed, "extremes-low", timeframe, symbol)
    spread_low = np.sqrt(body**2 - 2.0 * sigma**2 * np.log(1.0 - rng_extremes.random(count)))
    # Rounding to the tick is monotone, so it keeps low <= open, close <= high.
    high = _round_to_tick(open_ * np.exp((body + spread_high) / 2.0), tick)
    low = _round_to_tick(open_ * np.exp((body - spread_low) / 2.0), tick)

    noise = _rng(seed, "volume", timeframe, symbol).standard_normal(count)
    volume = (
        profile.volume_per_minute
        * minutes
        * season_volume
        * np.exp(
            _VOLUME_VOL_ELASTICITY * log_vol - 0.5 * _VOLUME_VOL_ELASTICITY**2 * log_vol_variance
        )
        * (0.6 + 0.4 * np.abs(standardised_return) / 0.8)
        * np.exp(_VOLUME_NOISE * noise - 0.5 * _VOLUME_NOISE**2)
    )
    volume = np.maximum(np.round(volume, 3), 0.001)
    order_flow = _order_flow(
        symbol, timeframe, seed, standardised_return, volume, (open_ + high + low + close) / 4.0
    )

    frame = pd.DataFrame(
        {
            "timestamp": epoch_to_timestamps(open_ms, unit="ms"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            **order_flow,
        }
    )
    return frame[list(CANDLE_COLUMNS)]


def _order_flow(
    symbol: str,
    timeframe: str,
    seed: int,
    standardised_return: np.ndarray,
    volume: np.ndarray,
    average_price: np.ndarray,
) -> dict[str, np.ndarray]:
    """The order-flow fields of the candles (see the module docstring)."""
    count = len(volume)
    noise = _rng(seed, "taker", timeframe, symbol).standard_normal(count)
    share = 1.0 / (
        1.0 + np.exp(-(_TAKER_RETURN_LOADING * standardised_return + _TAKER_NOISE * noise))
    )
    taker_buy = np.minimum(np.round(volume * share, 3), volume)
    size_noise = _rng(seed, "trade-size", timeframe, symbol).standard_normal(count)
    size = symbol_profile(symbol).trade_size * np.exp(
        _TRADE_SIZE_NOISE * size_noise - 0.5 * _TRADE_SIZE_NOISE**2
    )
    quote = np.round(volume * average_price, 4)
    return {
        "quote_volume": quote,
        "trade_count": np.maximum(np.round(volume / size), 1.0),
        "taker_buy_volume": taker_buy,
        "taker_buy_quote_volume": np.minimum(np.round(taker_buy * average_price, 4), quote),
    }


def _round_to_tick(prices: np.ndarray, tick: float) -> np.ndarray:
    """Prices rounded to a multiple of the tick, written with the tick's decimals."""
    decimals = max(0, int(-np.floor(np.log10(tick))) + 1)
    return np.round(np.round(prices / tick) * tick, decimals)


def _aggregate(fine: pd.DataFrame, per_bar: int) -> pd.DataFrame:
    """Consecutive groups of `per_bar` candles -> one candle each."""
    count = len(fine) // per_bar

    def blocks(column: str) -> np.ndarray:
        return fine[column].to_numpy()[: count * per_bar].reshape(count, per_bar)

    return pd.DataFrame(
        {
            "timestamp": fine["timestamp"].iloc[::per_bar].iloc[:count].reset_index(drop=True),
            "open": blocks("open")[:, 0],
            "high": blocks("high").max(axis=1),
            "low": blocks("low").min(axis=1),
            "close": blocks("close")[:, -1],
            "volume": np.round(blocks("volume").sum(axis=1), 3),
            **{
                name: np.round(blocks(name).sum(axis=1), 4 if "quote" in name else 3)
                for name in ORDER_FLOW_COLUMNS
            },
        }
    )
