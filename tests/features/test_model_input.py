"""build_model_input: the model_input contract of docs/architecture.md."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trading_engine.features import (
    OHLCV_FEATURE_NAMES,
    WARMUP_BARS,
    align_funding,
    build_model_input,
    compute_features,
    compute_targets,
    target_columns,
)

FIVE_MINUTES = pd.Timedelta(minutes=5)
HORIZONS = (5, 15, 30, 60)


def settlements(index: pd.DatetimeIndex, jitter_ms: int = 0) -> pd.DataFrame:
    """Funding settlements every 8 h (00, 08, 16 UTC) over the index, as the exchange reports
    them (a few ms after the hour), datetime64[ms, UTC] like a Parquet round trip."""
    times = pd.date_range(index[0].floor("8h"), index[-1] + pd.Timedelta(hours=8), freq="8h")
    times = (times + pd.Timedelta(milliseconds=jitter_ms)).as_unit("ms")
    rates = np.linspace(-1e-4, 3e-4, len(times))
    return pd.DataFrame({"timestamp": times, "funding_rate": rates})


def model_input_of(candles: pd.DataFrame, funding: pd.DataFrame | None) -> pd.DataFrame:
    table = pd.concat([compute_features(candles), compute_targets(candles, HORIZONS)], axis=1)
    return build_model_input(candles, table, funding, warmup_bars=WARMUP_BARS, timeframe=FIVE_MINUTES)


def test_model_input_has_exactly_the_contract_columns_and_drops_the_warmup(eth_5m):
    candles = eth_5m.iloc[:3_000]
    table = model_input_of(candles, settlements(candles.index))
    expected = [*OHLCV_FEATURE_NAMES, *target_columns(HORIZONS), "open", "high", "low", "close", "volume", "funding_rate",
                "funding_cumulative"]
    assert list(table.columns) == expected
    assert table.index.name == "timestamp" and str(table.index.tz) == "UTC"
    assert table.index.equals(candles.index[WARMUP_BARS:])
    assert (table[list(OHLCV_FEATURE_NAMES)].dtypes == np.float32).all()
    assert np.isfinite(table[list(OHLCV_FEATURE_NAMES)].to_numpy()).all()
    pd.testing.assert_frame_equal(table[["open", "high", "low", "close", "volume"]],
                                  candles.iloc[WARMUP_BARS:], check_names=False)
    for h in HORIZONS:
        assert table[f"target_ret_{h}"].iloc[-h:].isna().all()
        assert table[f"target_dir_{h}"].iloc[:-h].notna().all()


@pytest.mark.parametrize("jitter_ms", [0, 7])
def test_funding_rate_is_the_rate_settled_at_the_bar_open_and_zero_elsewhere(eth_5m, jitter_ms):
    candles = eth_5m.iloc[:3_000]
    funding = settlements(candles.index, jitter_ms)
    table = model_input_of(candles, funding)
    at_settlement = table.index.isin(funding["timestamp"].dt.floor("5min"))
    assert at_settlement.sum() >= 5
    assert (table["funding_rate"][~at_settlement] == 0).all()
    expected = funding.set_index(funding["timestamp"].dt.floor("5min").dt.as_unit("ns"))["funding_rate"]
    got = table["funding_rate"][at_settlement]
    np.testing.assert_array_equal(got.to_numpy(), expected.reindex(got.index).to_numpy())
    assert (table.index[at_settlement].hour % 8 == 0).all()
    assert (table.index[at_settlement].minute == 0).all()


def test_settlements_inside_a_long_bar_or_a_gap_count_at_the_next_open_and_add_up():
    index = pd.date_range("2025-01-01", periods=3, freq="1D", tz="UTC")
    funding = pd.DataFrame({"timestamp": pd.date_range("2025-01-01", periods=9, freq="8h", tz="UTC"),
                            "funding_rate": np.full(9, 1e-4)})
    # Day 0's 08:00 and 16:00 are owed by the position held during day 0: they count at day 1's
    # open, with day 1's 00:00; day 2's 08:00 and 16:00 come after the last open.
    np.testing.assert_allclose(align_funding(index, funding, pd.Timedelta(days=1)), [1e-4, 3e-4, 3e-4])
    with_gap = index.delete(1)  # the candles of day 1 are missing: its settlements are not lost
    np.testing.assert_allclose(align_funding(with_gap, funding, pd.Timedelta(days=1)), [1e-4, 6e-4])


def test_no_funding_means_zero_funding(eth_5m):
    table = model_input_of(eth_5m.iloc[:1_000], None)
    assert (table["funding_rate"] == 0).all()


def test_rows_within_the_warmup_after_a_time_gap_are_dropped_and_their_funding_kept(eth_5m):
    candles = eth_5m.iloc[:3_000].drop(eth_5m.index[1_500:1_510])
    table = model_input_of(candles, settlements(candles.index))
    dropped = ~candles.index.isin(table.index)
    full = model_input_of(candles.iloc[:1_500], settlements(candles.index))
    # The running sum of funding covers the dropped rows: the next kept row minus the last before
    # the gap is every settlement in between.
    last_before, first_after = candles.index[1_499], candles.index[1_500 + WARMUP_BARS]
    in_between = settlements(candles.index).set_index("timestamp")["funding_rate"]
    in_between = in_between[(in_between.index > last_before) & (in_between.index <= first_after + pd.Timedelta("1s"))]
    assert dropped[1_500:].sum() == WARMUP_BARS and in_between.size >= 1
    assert table.loc[first_after, "funding_cumulative"] - table.loc[last_before, "funding_cumulative"] == \
        pytest.approx(in_between.sum())
    assert full.loc[last_before, "funding_cumulative"] == table.loc[last_before, "funding_cumulative"]
    after_gap = candles.index[1_500]
    assert candles.index[1_499] in table.index
    assert not table.index[(table.index >= after_gap) & (table.index < candles.index[1_500 + WARMUP_BARS])].size
    assert candles.index[1_500 + WARMUP_BARS] in table.index


def test_model_input_of_a_dead_market_is_finite(eth_5m):
    candles = eth_5m.iloc[:3_000].copy()
    candles.iloc[1_000:1_400, :4] = candles["close"].iloc[999]
    candles.iloc[1_000:1_400, 4] = 0.0
    table = model_input_of(candles, None)
    assert np.isfinite(table[list(OHLCV_FEATURE_NAMES)].to_numpy()).all()


def test_a_warmup_shorter_than_the_target_volatility_window_is_refused(eth_5m):
    candles = eth_5m.iloc[:1_000]
    table = pd.concat([compute_features(candles), compute_targets(candles, HORIZONS)], axis=1)
    with pytest.raises(ValueError):
        build_model_input(candles, table, None, warmup_bars=20, timeframe=FIVE_MINUTES)
