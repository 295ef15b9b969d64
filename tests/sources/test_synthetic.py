"""Properties of the synthetic market: determinism, schema, stylised facts, the planted signal."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from trading_engine.data.schema import CANDLE_COLUMNS, ORDER_FLOW_COLUMNS, TIMESTAMP_DTYPE
from trading_engine.sources.synthetic import (
    generate_candles,
    generate_funding_rates,
    synthetic_provenance,
)

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
KEYS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]


@pytest.fixture(scope="module")
def martingale_market() -> dict[str, pd.DataFrame]:
    """Two years of 5m candles (about 210,000 a symbol) without a planted signal."""
    return generate_candles(SYMBOLS, "5m", "2024-01-01", "2026-01-01", seed=11, signal_strength=0.0)


def log_returns(candles: pd.DataFrame) -> pd.Series:
    return np.log(candles["close"]).diff().iloc[1:]


def test_candles_are_deterministic_per_seed():
    first = generate_candles(SYMBOLS, "5m", "2024-03-01", "2024-03-08", seed=3)
    again = generate_candles(SYMBOLS, "5m", "2024-03-01", "2024-03-08", seed=3)
    other = generate_candles(SYMBOLS, "5m", "2024-03-01", "2024-03-08", seed=4)
    assert list(first) == KEYS
    for key in KEYS:
        pd.testing.assert_frame_equal(first[key], again[key])
        assert not np.allclose(first[key]["close"], other[key]["close"])


def test_candles_do_not_depend_on_end():
    short = generate_candles(SYMBOLS, "1m", "2024-03-01", "2024-03-05 13:07:30", seed=5)
    long = generate_candles(SYMBOLS, "1m", "2024-03-01", "2024-04-20", seed=5)
    for key in KEYS:
        assert len(long[key]) > len(short[key]) > 0
        pd.testing.assert_frame_equal(long[key].iloc[: len(short[key])], short[key])


def test_candles_do_not_depend_on_the_other_symbols_requested():
    together = generate_candles(SYMBOLS, "5m", "2024-03-01", "2024-03-20", seed=5)
    alone = generate_candles(["SOL/USDT:USDT"], "5m", "2024-03-01", "2024-03-20", seed=5)
    pd.testing.assert_frame_equal(together["SOL/USDT:USDT"], alone["SOL/USDT:USDT"])


def test_candles_follow_the_schema_and_the_half_open_range():
    candles = generate_candles(["BTC/USDT"], "5m", "2024-03-01 00:02", "2024-03-02 00:00", seed=1)
    table = candles["BTC/USDT:USDT"]
    assert list(table.columns) == list(CANDLE_COLUMNS)
    assert str(table["timestamp"].dtype) == TIMESTAMP_DTYPE
    assert all(table[column].dtype == np.float64 for column in CANDLE_COLUMNS[1:])
    # open times in [start, end) on the 5m grid: 00:05 .. 23:55
    assert table["timestamp"].iloc[0] == pd.Timestamp("2024-03-01 00:05", tz="UTC")
    assert table["timestamp"].iloc[-1] == pd.Timestamp("2024-03-01 23:55", tz="UTC")
    assert (table["timestamp"].diff().iloc[1:] == pd.Timedelta(minutes=5)).all()
    assert generate_candles(["BTC/USDT"], "5m", "2024-03-01", "2024-03-01")["BTC/USDT:USDT"].empty


def test_ohlc_is_consistent_and_volume_positive(martingale_market):
    for table in martingale_market.values():
        body_low = np.minimum(table["open"], table["close"])
        body_high = np.maximum(table["open"], table["close"])
        assert (table["low"] <= body_low).all() and (table["high"] >= body_high).all()
        assert (table["low"] > 0).all() and (table["volume"] > 0).all()
        assert (table["open"].iloc[1:].to_numpy() == table["close"].iloc[:-1].to_numpy()).all()
        assert (table["high"] > table["low"]).mean() > 0.99  # bars have a range


def test_price_and_volatility_levels_are_realistic_per_symbol(martingale_market):
    first_open = {key: martingale_market[key]["open"].iloc[0] for key in KEYS}
    assert first_open == {
        "BTC/USDT:USDT": 60_000.0,
        "ETH/USDT:USDT": 3_000.0,
        "SOL/USDT:USDT": 150.0,
    }
    bars_per_year = 365.25 * 288
    annual = {
        key: log_returns(martingale_market[key]).std() * np.sqrt(bars_per_year) for key in KEYS
    }
    assert 0.35 < annual["BTC/USDT:USDT"] < annual["ETH/USDT:USDT"] < annual["SOL/USDT:USDT"] < 1.3


def test_returns_are_fat_tailed_and_volatility_clusters(martingale_market):
    for table in martingale_market.values():
        returns = log_returns(table)
        assert stats.kurtosis(returns, fisher=False) > 10  # a Gaussian has 3
        absolute = returns.abs()
        assert min(absolute.autocorr(lag) for lag in range(1, 11)) > 0.1


def test_returns_are_uncorrelated_without_a_signal(martingale_market):
    for table in martingale_market.values():
        returns = log_returns(table)
        assert max(abs(returns.autocorr(lag)) for lag in range(1, 11)) < 0.025


def test_symbols_share_a_common_factor(martingale_market):
    correlation = pd.DataFrame({key: log_returns(martingale_market[key]) for key in KEYS}).corr()
    off_diagonal = correlation.to_numpy()[~np.eye(3, dtype=bool)]
    assert off_diagonal.min() > 0.6


def test_volume_and_volatility_follow_the_hour_of_day(martingale_market):
    table = martingale_market["BTC/USDT:USDT"]
    hour = table["timestamp"].dt.hour
    volume_by_hour = table["volume"].groupby(hour).mean()
    assert volume_by_hour.max() / volume_by_hour.min() > 2
    assert volume_by_hour.idxmax() in (13, 14, 15) and volume_by_hour.idxmin() in (3, 4, 5, 6)
    range_by_hour = np.log(table["high"] / table["low"]).groupby(hour).mean()
    assert range_by_hour.max() / range_by_hour.min() > 1.5
    returns = log_returns(table)
    assert np.corrcoef(table["volume"].iloc[1:], returns.abs())[0, 1] > 0.3


def momentum_information_coefficient(candles: pd.DataFrame, lookback: int = 12) -> float:
    """Correlation between the planted predictor estimated from PAST candles only (tanh of the
    last `lookback` log returns over an EWMA volatility of earlier bars) and the next return."""
    returns = log_returns(candles)
    volatility = np.sqrt((returns**2).ewm(halflife=60, min_periods=100).mean().shift(1))
    standardised = (returns / volatility).clip(-10, 10)
    predictor = np.tanh(standardised.shift(1).rolling(lookback).sum() / np.sqrt(lookback))
    usable = predictor.notna() & standardised.notna()
    return float(np.corrcoef(predictor[usable], standardised[usable])[0, 1])


def test_planted_signal_is_detectable_from_past_candles_only(martingale_market):
    with_signal = generate_candles(
        SYMBOLS, "5m", "2024-01-01", "2026-01-01", seed=11, signal_strength=0.05
    )
    for key in KEYS:  # about 210,000 bars each: one standard error is about 0.002
        assert momentum_information_coefficient(with_signal[key]) > 0.015
        assert abs(momentum_information_coefficient(martingale_market[key])) < 0.01


def test_base_timeframe_makes_5m_the_aggregate_of_1m():
    fine = generate_candles(["ETH/USDT"], "1m", "2024-03-01 00:05", "2024-03-02", seed=2)[
        "ETH/USDT:USDT"
    ]
    coarse = generate_candles(
        ["ETH/USDT"], "5m", "2024-03-01 00:01", "2024-03-02", seed=2, base_timeframe="1m"
    )["ETH/USDT:USDT"]
    groups = fine.groupby(fine["timestamp"].dt.floor("5min"))
    expected = pd.DataFrame(
        {
            "timestamp": groups["timestamp"].first().to_numpy(),
            "open": groups["open"].first().to_numpy(),
            "high": groups["high"].max().to_numpy(),
            "low": groups["low"].min().to_numpy(),
            "close": groups["close"].last().to_numpy(),
            "volume": groups["volume"].sum().round(3).to_numpy(),
            **{
                name: groups[name].sum().round(4 if "quote" in name else 3).to_numpy()
                for name in ORDER_FLOW_COLUMNS
            },
        }
    )
    pd.testing.assert_frame_equal(coarse, expected)


def test_order_flow_is_consistent_with_the_candles():
    table = generate_candles(SYMBOLS, "5m", "2024-03-01", "2024-03-15", seed=3)["ETH/USDT:USDT"]
    assert table[list(ORDER_FLOW_COLUMNS)].notna().all().all()
    assert (table["taker_buy_volume"] <= table["volume"]).all()
    assert (table["taker_buy_quote_volume"] <= table["quote_volume"]).all()
    assert (table["trade_count"] >= 1).all() and (table["trade_count"] % 1 == 0).all()
    average_price = table["quote_volume"] / table["volume"]
    assert ((average_price >= table["low"] * (1 - 1e-6)) & (average_price <= table["high"] * (1 + 1e-6))).all()
    share = table["taker_buy_volume"] / table["volume"]
    assert 0.45 < share.mean() < 0.55 and 0.05 < share.std() < 0.2
    # aggressive buyers move the price up: the share follows the bar's own return
    assert np.corrcoef(share, np.log(table["close"] / table["open"]))[0, 1] > 0.5


@pytest.mark.parametrize(("signal_strength", "predictive"), [(0.0, False), (0.25, True)])
def test_order_flow_predicts_the_next_return_only_through_the_planted_momentum(
    signal_strength, predictive
):
    """The share reflects the bar's innovation, as the return does: yesterday's flow tells about
    the next return only when the market has momentum (the planted signal), never by itself."""
    table = generate_candles(
        ["BTC/USDT"], "1m", "2024-03-01", "2024-04-01", seed=11, signal_strength=signal_strength
    )["BTC/USDT:USDT"]
    share = (table["taker_buy_volume"] / table["volume"]).to_numpy()
    next_return = np.log(table["close"] / table["open"]).to_numpy()[1:]
    correlation = np.corrcoef(share[:-1] - 0.5, next_return)[0, 1]
    standard_error = 1 / np.sqrt(len(next_return))
    if predictive:
        assert correlation > 4 * standard_error
    else:
        assert abs(correlation) < 4 * standard_error


def test_funding_settles_every_8_hours_around_one_basis_point():
    funding = generate_funding_rates(SYMBOLS, "2023-01-01 01:00", "2026-01-01", seed=7)
    for key in KEYS:
        table = funding[key]
        assert list(table.columns) == ["timestamp", "funding_rate"]
        assert table["timestamp"].iloc[0] == pd.Timestamp("2023-01-01 08:00", tz="UTC")
        assert set(table["timestamp"].dt.hour) == {0, 8, 16}
        assert (table["timestamp"].diff().iloc[1:] == pd.Timedelta(hours=8)).all()
        rate = table["funding_rate"]
        assert 0.5e-4 < rate.mean() < 1.5e-4
        assert 0.005 < (rate < 0).mean() < 0.3
        assert rate.autocorr(1) > 0.5  # persistent


def test_funding_does_not_depend_on_end():
    short = generate_funding_rates(["BTC/USDT"], "2024-01-01", "2024-02-01", seed=7)[
        "BTC/USDT:USDT"
    ]
    long = generate_funding_rates(["BTC/USDT"], "2024-01-01", "2024-06-01", seed=7)["BTC/USDT:USDT"]
    pd.testing.assert_frame_equal(long.iloc[: len(short)], short)


def test_other_symbols_get_a_generic_but_valid_market():
    table = generate_candles(["DOGE/USDT"], "1h", "2024-01-01", "2024-03-01")["DOGE/USDT:USDT"]
    assert len(table) == 60 * 24
    assert (table["low"] <= np.minimum(table["open"], table["close"])).all()
    assert (table["volume"] > 0).all()


def test_provenance_says_synthetic_and_is_json():
    provenance = synthetic_provenance(seed=7, signal_strength=0.05)
    assert provenance["source"] == "synthetic"
    assert provenance["seed"] == 7 and provenance["signal_strength"] == 0.05
    assert "generator_version" in provenance and "SYNTHETIC" in provenance["note"]
    json.dumps(provenance)
