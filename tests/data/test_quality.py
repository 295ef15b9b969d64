"""Validation: every kind of bad candle is quarantined with its reason, gaps are exact, reports
are JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from trading_engine.data.quality import (
    CANDLE_CHECKS,
    FUNDING_CHECKS,
    format_quality_summary,
    quality_report,
    validate_candles,
    validate_funding_rates,
)
from trading_engine.data.schema import CANDLE_COLUMNS, ORDER_FLOW_COLUMNS
from trading_engine.sources.files import read_candle_files
from trading_engine.sources.synthetic import generate_candles, generate_funding_rates


@pytest.fixture()
def candles() -> pd.DataFrame:
    """One day of good 5m candles (288)."""
    return generate_candles(["BTC/USDT"], "5m", "2024-05-01", "2024-05-02", seed=1)["BTC/USDT:USDT"]


def test_good_candles_pass_untouched(candles):
    clean, quarantined, report = validate_candles(candles, "5m")
    pd.testing.assert_frame_equal(clean, candles)
    assert quarantined.empty and list(quarantined.columns) == [
        *CANDLE_COLUMNS,
        "source_row",
        "reason",
    ]
    assert report["rows"] == report["rows_clean"] == report["expected_candles"] == 288
    assert (
        report["missing_candles"] == 0
        and report["gap_count"] == 0
        and report["longest_gap"] is None
    )
    assert report["first_timestamp"] == "2024-05-01T00:00:00+00:00"
    assert report["last_timestamp"] == "2024-05-01T23:55:00+00:00"
    assert report["was_sorted"] and report["checks"] == dict.fromkeys(CANDLE_CHECKS, 0)


def test_each_bad_candle_is_quarantined_with_its_reason(candles):
    bad = candles.copy()
    bad.loc[10, "timestamp"] = bad.loc[9, "timestamp"]  # duplicate of row 9
    bad.loc[20, "timestamp"] += pd.Timedelta(minutes=2)  # misaligned
    high, low = candles.loc[30, "high"], candles.loc[30, "low"]
    bad.loc[30, "high"], bad.loc[30, "low"] = low, high  # high < low
    bad.loc[40, "volume"] = -1.0
    bad.loc[50, "close"] = np.nan
    bad.loc[60, "open"] = np.inf
    bad.loc[70, ["open", "high", "low", "close"]] = 0.0
    assert (candles.loc[[80, 90], "open"] != candles.loc[[80, 90], "close"]).all()
    bad.loc[80, "low"] = candles.loc[80, ["open", "close"]].max()  # above the body's bottom
    bad.loc[90, "high"] = candles.loc[90, ["open", "close"]].min()  # below the body's top
    bad.loc[100, "volume"] = np.nan
    bad.loc[110, "timestamp"] = pd.NaT
    bad.loc[120, "taker_buy_volume"] = 2 * candles.loc[120, "volume"]  # more than the volume
    bad.loc[130, "trade_count"] = -1.0
    bad.loc[140, list(ORDER_FLOW_COLUMNS)] = np.nan  # a source without order flow: fine
    clean, quarantined, report = validate_candles(bad, "5m")

    reasons = dict(zip(quarantined["source_row"], quarantined["reason"], strict=True))
    assert reasons[10] == "duplicate_timestamp"
    assert reasons[20] == "misaligned_timestamp"
    assert "high_below_low" in reasons[30].split(";")
    assert reasons[40] == "negative_volume"
    assert reasons[50] == "non_finite_price"
    assert reasons[60] == "non_finite_price;high_below_open_or_close"  # every failed check is named
    assert reasons[70] == "non_positive_price"
    assert reasons[80] == "low_above_open_or_close"
    assert reasons[90] == "high_below_open_or_close"
    assert reasons[100] == "non_finite_volume"
    assert reasons[110] == "missing_timestamp"
    assert reasons[120] == reasons[130] == "inconsistent_order_flow"
    assert sorted(reasons) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130]
    # quarantined rows keep their values: nothing is repaired
    assert quarantined.set_index("source_row").loc[40, "volume"] == -1.0
    # the first occurrence of the duplicated time is the one kept
    kept = clean.set_index("timestamp").loc[candles.loc[9, "timestamp"]]
    assert kept["close"] == candles.loc[9, "close"]
    assert len(clean) == 288 - 13 and report["rows_quarantined"] == 13
    assert report["checks"]["duplicate_timestamp"] == 1 and report["checks"]["negative_volume"] == 1
    assert report["order_flow_candles"] == 288 - 13 - 1  # row 140 has none, and stays clean
    # every removed candle leaves a one-candle gap (row 10's own time was overwritten)
    assert report["missing_candles"] == 13 and report["gap_count"] == 13


def test_a_bad_first_occurrence_does_not_hide_a_good_duplicate(candles):
    doubled = pd.concat([candles.iloc[:5].assign(volume=-1.0), candles], ignore_index=True)
    clean, quarantined, report = validate_candles(doubled, "5m")
    pd.testing.assert_frame_equal(clean, candles)
    assert (quarantined["reason"] == "negative_volume").all() and len(quarantined) == 5
    assert report["checks"]["duplicate_timestamp"] == 0


def test_gaps_are_reported_exactly(candles):
    holed = candles.drop(index=[*range(100, 110), 200]).reset_index(drop=True)
    clean, _, report = validate_candles(holed, "5m")
    assert len(clean) == 277
    assert report["missing_candles"] == 11 and report["gap_count"] == 2
    assert report["expected_candles"] == 288
    assert report["longest_gap"] == {
        "missing_candles": 10,
        "first_missing": "2024-05-01T08:20:00+00:00",
        "last_missing": "2024-05-01T09:05:00+00:00",
    }
    assert report["gaps"][1] == {
        "missing_candles": 1,
        "first_missing": "2024-05-01T16:40:00+00:00",
        "last_missing": "2024-05-01T16:40:00+00:00",
    }
    assert report["completeness"] == pytest.approx(277 / 288)


def test_unsorted_input_is_sorted_and_reported(candles):
    shuffled = candles.sample(frac=1.0, random_state=0).reset_index(drop=True)
    clean, quarantined, report = validate_candles(shuffled, "5m")
    pd.testing.assert_frame_equal(clean, candles)
    assert quarantined.empty and not report["was_sorted"] and report["out_of_order_rows"] > 0


def test_zero_volume_candles_stay_clean_and_are_counted(candles):
    quiet = candles.copy()
    quiet.loc[[5, 6], ["volume", *ORDER_FLOW_COLUMNS]] = 0.0  # no trade at all
    clean, quarantined, report = validate_candles(quiet, "5m")
    assert len(clean) == 288 and quarantined.empty and report["zero_volume_candles"] == 2


def test_missing_columns_and_wrong_types_are_clear_errors(candles):
    with pytest.raises(ValueError, match="missing column.*volume"):
        validate_candles(candles.drop(columns="volume"), "5m")
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_candles(candles.assign(timestamp=candles["timestamp"].dt.tz_localize(None)), "5m")
    with pytest.raises(ValueError, match="'close' must be numeric"):
        validate_candles(candles.assign(close="x"), "5m")


def test_indexed_candles_and_other_units_are_accepted(candles):
    indexed = candles.set_index("timestamp")
    indexed.index = indexed.index.as_unit("ms")
    clean, quarantined, _ = validate_candles(indexed, "5m")
    assert len(clean) == 288 and quarantined.empty


def test_real_candles_have_no_gaps_and_a_few_zero_volume_candles(shared_data_dir):
    series = read_candle_files(shared_data_dir / "binance_futures_5m", symbols=["BTC/USDT"])
    clean, quarantined, report = validate_candles(series[("BTC/USDT:USDT", "5m")], "5m")
    assert report["rows_clean"] == 119_724 and quarantined.empty
    assert report["missing_candles"] == 0 and report["zero_volume_candles"] == 5


def test_funding_validation_quarantines_bad_settlements():
    funding = generate_funding_rates(["BTC/USDT"], "2024-01-01", "2024-02-01")["BTC/USDT:USDT"]
    bad = pd.concat([funding, funding.iloc[[3]]], ignore_index=True)
    bad.loc[5, "funding_rate"] = np.nan
    bad.loc[6, "funding_rate"] = 0.5
    bad = bad.drop(index=[20, 21]).reset_index(drop=True)
    clean, quarantined, report = validate_funding_rates(bad)
    assert dict(zip(quarantined["source_row"], quarantined["reason"], strict=True)) == {
        5: "non_finite_rate",
        6: "implausible_rate",
        len(bad) - 1: "duplicate_timestamp",
    }
    assert len(clean) == len(funding) - 4 and clean["timestamp"].is_monotonic_increasing
    assert list(report["checks"]) == list(FUNDING_CHECKS)
    assert report["median_interval_hours"] == 8.0 and report["longest_interval_hours"] == 24.0
    json.dumps(report)


def test_combined_report_is_json_with_totals_and_one_log_line_per_series(candles):
    holed = candles.drop(index=[3, 4])
    bad = candles.assign(volume=candles["volume"].where(candles.index != 7, -5.0))
    reports = {
        "BTC_USDT_5m": validate_candles(holed, "5m")[2],
        "ETH_USDT_5m": validate_candles(bad, "5m")[2],
    }
    funding = generate_funding_rates(["BTC/USDT"], "2024-01-01", "2024-01-03")["BTC/USDT:USDT"]
    combined = quality_report(reports, {"BTC_USDT": validate_funding_rates(funding)[2]})
    assert json.loads(json.dumps(combined)) == combined
    totals = combined["totals"]
    assert totals["series"] == 2 and totals["rows"] == 286 + 288
    assert totals["missing_candles"] == 3 and totals["rows_quarantined"] == 1
    assert totals["checks"]["negative_volume"] == 1
    lines = format_quality_summary(combined).splitlines()
    assert len(lines) == 3
    assert (
        lines[0].startswith("BTC_USDT_5m: 286 clean candles") and "missing 2 in 1 gaps" in lines[0]
    )
    assert "quarantined 1 (negative_volume 1)" in lines[1]
    assert lines[2].startswith("funding BTC_USDT: 6 settlements")
