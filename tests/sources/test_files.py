"""Import of candle files: real Binance archive CSVs and Parquet, header-less and microsecond
variants, and clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trading_engine.data.schema import (
    CANDLE_COLUMNS,
    OHLCV_COLUMNS,
    ORDER_FLOW_COLUMNS,
    TIMESTAMP_DTYPE,
)
from trading_engine.sources.exchange.binance import KLINE_FIELDS as BINANCE_KLINE_COLUMNS
from trading_engine.sources.files import read_candle_files

BTC = "BTC/USDT:USDT"


def assert_candle_schema(table: pd.DataFrame, timeframe_minutes: int) -> None:
    assert list(table.columns) == list(CANDLE_COLUMNS)
    assert str(table["timestamp"].dtype) == TIMESTAMP_DTYPE
    assert all(table[column].dtype == np.float64 for column in CANDLE_COLUMNS[1:])
    assert table["timestamp"].is_unique and table["timestamp"].is_monotonic_increasing
    assert (table["timestamp"].dt.floor(f"{timeframe_minutes}min") == table["timestamp"]).all()


def kline_rows(count: int = 20, time_scale: int = 1) -> pd.DataFrame:
    """Binance kline rows (12 columns) of 5m candles from 2021-03-01, times in ms * time_scale."""
    open_ms = 1_614_556_800_000 + np.arange(count, dtype="int64") * 300_000
    close = 50_000 + np.arange(count, dtype="float64")
    return pd.DataFrame(
        {
            "open_time": open_ms * time_scale,
            "open": close - 0.5,
            "high": close + 3.0,
            "low": close - 4.0,
            "close": close,
            "volume": 10.0 + np.arange(count),
            "close_time": (open_ms + 299_999) * time_scale,
            "quote_volume": 2.0 + np.arange(count),
            "count": 7,
            "taker_buy_volume": 1.0,
            "taker_buy_quote_volume": 1.5,
            "ignore": 0,
        }
    )[list(BINANCE_KLINE_COLUMNS)]


def test_reads_real_binance_archive_csvs(shared_data_dir):
    series = read_candle_files(shared_data_dir / "binance_archive_csv")
    assert set(series) == {(BTC, "5m"), ("ETH/USDT:USDT", "5m")}
    btc = series[(BTC, "5m")]
    assert len(btc) == (30 + 31) * 288  # November and December 2024, two monthly files
    assert_candle_schema(btc, 5)
    first = btc.iloc[0]
    assert first["timestamp"] == pd.Timestamp("2024-11-01", tz="UTC")
    assert (first["open"], first["high"], first["low"], first["close"]) == (
        70321.9,
        70388.7,
        70288.5,
        70378.2,
    )
    assert first["volume"] == 885.545
    assert (first["quote_volume"], first["trade_count"]) == (62283061.0975, 14898)
    assert first["taker_buy_volume"] == 592.291  # the order flow the archive carries


def test_archive_csv_and_parquet_agree_on_their_common_day(shared_data_dir):
    from_csv = read_candle_files(shared_data_dir / "binance_archive_csv", symbols=["BTC/USDT"])[
        (BTC, "5m")
    ]
    from_parquet = read_candle_files(shared_data_dir / "binance_futures_5m", symbols=["BTC/USDT"])[
        (BTC, "5m")
    ]
    common = from_csv.merge(from_parquet, on="timestamp", suffixes=("_csv", "_parquet"))
    assert len(common) == 288  # 2024-12-31
    for column in OHLCV_COLUMNS[1:]:
        np.testing.assert_array_equal(common[f"{column}_csv"], common[f"{column}_parquet"])
    assert common["trade_count_csv"].notna().all() and common["trade_count_parquet"].isna().all()


def test_reads_real_parquet_of_any_time_unit(shared_data_dir):
    five_minutes = read_candle_files(shared_data_dir / "binance_futures_5m", timeframes=["5m"])
    assert {symbol for symbol, _ in five_minutes} == {BTC, "ETH/USDT:USDT", "SOL/USDT:USDT"}
    assert len(five_minutes[(BTC, "5m")]) == 119_724
    hourly = read_candle_files(shared_data_dir / "binance_futures_1h", symbols=["BTC/USDT"])[
        (BTC, "1h")
    ]
    assert_candle_schema(hourly, 60)  # stored as datetime64[ms, UTC]
    closes = hourly.set_index("timestamp")["close"]
    for day, close in {"2020-01-01": 7_172, "2021-01-01": 29_015, "2024-01-01": 42_504}.items():
        before_midnight = closes[pd.Timestamp(day, tz="UTC") - pd.Timedelta(hours=1)]
        assert abs(before_midnight / close - 1) < 0.01


def test_headerless_and_microsecond_csvs_give_the_same_candles(tmp_path):
    (tmp_path / "with_header").mkdir()
    (tmp_path / "no_header").mkdir()
    (tmp_path / "microseconds").mkdir()
    kline_rows().to_csv(tmp_path / "with_header" / "BTCUSDT-5m-2021-03.csv", index=False)
    kline_rows().to_csv(
        tmp_path / "no_header" / "BTCUSDT-5m-2021-03.csv", index=False, header=False
    )
    kline_rows(time_scale=1000).to_csv(
        tmp_path / "microseconds" / "BTCUSDT-5m-2021-03.csv", index=False
    )
    tables = [
        read_candle_files(tmp_path / name)[(BTC, "5m")]
        for name in ("with_header", "no_header", "microseconds")
    ]
    assert tables[0]["timestamp"].iloc[0] == pd.Timestamp("2021-03-01", tz="UTC")
    assert_candle_schema(tables[0], 5)
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], tables[2])


def test_monthly_files_are_concatenated_sorted_and_deduplicated(tmp_path):
    rows = kline_rows(count=30)
    rows.iloc[18:].to_csv(tmp_path / "BTCUSDT-5m-2021-04.csv", index=False)
    rows.iloc[:20].to_csv(
        tmp_path / "BTCUSDT-5m-2021-03.csv", index=False, header=False
    )  # overlap of 2
    (tmp_path / "README.md").write_text("not candles")
    table = read_candle_files(tmp_path)[(BTC, "5m")]
    assert len(table) == 30
    assert_candle_schema(table, 5)
    np.testing.assert_array_equal(table["close"], rows["close"])


def test_parquet_with_datetime_index_or_epoch_milliseconds(tmp_path):
    rows = kline_rows()
    indexed = rows.assign(timestamp=pd.to_datetime(rows["open_time"], unit="ms")).set_index(
        "timestamp"
    )
    indexed[["open", "high", "low", "close", "volume"]].to_parquet(tmp_path / "ETH_USDT_5m.parquet")
    rows.rename(columns={"open_time": "timestamp"})[list(OHLCV_COLUMNS)].to_parquet(
        tmp_path / "SOL_USDT_USDT-5m-futures.parquet"
    )
    series = read_candle_files(tmp_path)
    eth, sol = series[("ETH/USDT:USDT", "5m")], series[("SOL/USDT:USDT", "5m")]
    assert_candle_schema(eth, 5)
    pd.testing.assert_frame_equal(eth, sol)


def test_garbage_files_give_an_error_naming_the_file(tmp_path):
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "BTCUSDT-5m-2021-03.csv").write_bytes(bytes(range(256)) * 20)
    with pytest.raises(ValueError, match="BTCUSDT-5m-2021-03.csv"):
        read_candle_files(garbage)
    broken = tmp_path / "broken_parquet"
    broken.mkdir()
    (broken / "BTC_USDT_5m.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ValueError, match="BTC_USDT_5m.parquet"):
        read_candle_files(broken)
    words = tmp_path / "words"
    words.mkdir()
    kline_rows().assign(close="oops").to_csv(words / "BTCUSDT-5m-2021-03.csv", index=False)
    with pytest.raises(ValueError, match=r"BTCUSDT-5m-2021-03.csv.*'close'.*not a number"):
        read_candle_files(words)


def test_missing_folder_empty_folder_and_missing_series_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_candle_files(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no candle files"):
        read_candle_files(tmp_path)
    kline_rows().to_csv(tmp_path / "BTCUSDT-5m-2021-03.csv", index=False)
    with pytest.raises(ValueError, match=r"XRP/USDT:USDT 5m.*available: BTC/USDT:USDT 5m"):
        read_candle_files(tmp_path, symbols=["XRP/USDT"], timeframes=["5m"])
    with pytest.raises(ValueError, match=r"BTC/USDT:USDT 1h.*available"):
        read_candle_files(tmp_path, symbols=["BTC/USDT"], timeframes=["1h"])


def test_order_flow_is_read_where_the_files_have_it_and_null_where_they_do_not(tmp_path):
    rows = kline_rows()
    rows.to_csv(tmp_path / "BTCUSDT-5m-2021-03.csv", index=False, header=False)
    ours = rows.rename(columns={"open_time": "timestamp", "count": "trade_count"})
    ours[list(CANDLE_COLUMNS)].to_parquet(tmp_path / "ETH_USDT_5m.parquet")
    ours[list(OHLCV_COLUMNS)].to_parquet(tmp_path / "SOL_USDT_5m.parquet")  # OHLCV only
    series = read_candle_files(tmp_path)
    btc, eth, sol = (series[(f"{name}/USDT:USDT", "5m")] for name in ("BTC", "ETH", "SOL"))
    for table in (btc, eth, sol):
        assert_candle_schema(table, 5)
    np.testing.assert_array_equal(btc["quote_volume"], rows["quote_volume"])
    np.testing.assert_array_equal(btc["trade_count"], rows["count"])
    pd.testing.assert_frame_equal(btc, eth)
    assert sol[list(ORDER_FLOW_COLUMNS)].isna().all().all()  # nothing invented
    pd.testing.assert_frame_equal(sol[list(OHLCV_COLUMNS)], btc[list(OHLCV_COLUMNS)])
