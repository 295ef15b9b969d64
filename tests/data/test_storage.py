"""The month-partitioned store: what is rewritten, what survives a crash, what is refused."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from trading_engine.data.storage import (
    AtomicParquetDataset,
    CorruptPartitionError,
    ProvenanceConflictError,
    SeriesLockedError,
    SeriesStore,
)

PROVENANCE = {
    "kind": "candles",
    "source": "exchange",
    "exchange": "binanceusdm",
    "symbol": "BTC/USDT:USDT",
    "timeframe": "1h",
}


def _candles(start: str, end: str) -> pd.DataFrame:
    times = pd.date_range(start, end, freq="1h", tz="UTC", inclusive="left")
    values = range(len(times))
    return pd.DataFrame(
        {
            "timestamp": times,
            "open": values,
            "high": values,
            "low": values,
            "close": values,
            "volume": values,
        }
    ).astype({c: "float64" for c in ("open", "high", "low", "close", "volume")})


def _mtimes(store: SeriesStore, key: str) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in store.partitions(key)}


def test_append_rewrites_only_the_months_it_touches(tmp_path):
    store = SeriesStore(tmp_path)
    store.append("BTC_USDT_1h", _candles("2024-01-01", "2024-03-15"), PROVENANCE)
    before = _mtimes(store, "BTC_USDT_1h")

    store.append("BTC_USDT_1h", _candles("2024-03-15", "2024-04-10"), PROVENANCE)

    after = _mtimes(store, "BTC_USDT_1h")
    assert list(after) == [
        "2024-01.parquet",
        "2024-02.parquet",
        "2024-03.parquet",
        "2024-04.parquet",
    ]
    assert after["2024-01.parquet"] == before["2024-01.parquet"]
    assert after["2024-02.parquet"] == before["2024-02.parquet"]
    assert after["2024-03.parquet"] != before["2024-03.parquet"]
    pd.testing.assert_frame_equal(
        store.read("BTC_USDT_1h")[["timestamp"]],
        _candles("2024-01-01", "2024-04-10")[["timestamp"]].astype(
            {"timestamp": "datetime64[us, UTC]"}
        ),
    )


def test_appended_rows_replace_stored_rows_of_the_same_time_without_duplicates(tmp_path):
    store = SeriesStore(tmp_path)
    store.append("BTC_USDT_1h", _candles("2024-01-01", "2024-01-03"), PROVENANCE)
    again = _candles("2024-01-02", "2024-01-04")
    again["close"] = -1.0

    store.append("BTC_USDT_1h", again, PROVENANCE)

    stored = store.read("BTC_USDT_1h")
    assert stored["timestamp"].is_unique and stored["timestamp"].is_monotonic_increasing
    assert len(stored) == 72 and (stored["close"].iloc[24:] == -1.0).all()


def test_last_timestamp_reads_only_the_last_month(tmp_path):
    store = SeriesStore(tmp_path)
    store.append("BTC_USDT_1h", _candles("2024-01-01", "2024-02-10"), PROVENANCE)
    store.partitions("BTC_USDT_1h")[0].write_bytes(b"not parquet")  # never opened

    assert store.last_timestamp("BTC_USDT_1h") == pd.Timestamp("2024-02-09 23:00", tz="UTC")
    with pytest.raises(CorruptPartitionError, match="2024-01.parquet"):
        store.read("BTC_USDT_1h")


def test_read_returns_the_range_with_its_provenance(tmp_path):
    store = SeriesStore(tmp_path)
    store.append("BTC_USDT_1h", _candles("2024-01-01", "2024-04-01"), PROVENANCE)

    window = store.read("BTC_USDT_1h", "2024-02-10", "2024-02-11")

    assert len(window) == 24 and window["timestamp"].iloc[0] == pd.Timestamp("2024-02-10", tz="UTC")
    assert {k: window.attrs["provenance"][k] for k in PROVENANCE} == PROVENANCE
    assert store.read("BTC_USDT_1h", "2030-01-01").columns.tolist() == [
        "timestamp",
        "open",
        "high",
        "low",
        "close",
        "volume",
    ]


def test_data_of_another_exchange_or_market_is_refused(tmp_path):
    store = SeriesStore(tmp_path)
    store.append("BTC_USDT_1h", _candles("2024-01-01", "2024-01-02"), PROVENANCE)

    with pytest.raises(
        ProvenanceConflictError, match="exchange 'binanceusdm' \\(new data: 'bybit'\\)"
    ):
        store.append(
            "BTC_USDT_1h", _candles("2024-01-02", "2024-01-03"), {**PROVENANCE, "exchange": "bybit"}
        )
    with pytest.raises(ProvenanceConflictError, match="source 'exchange'.*new data: source 'synthetic'"):
        store.replace(
            "BTC_USDT_1h",
            _candles("2024-01-02", "2024-01-03"),
            {**PROVENANCE, "source": "synthetic", "exchange": None},
        )
    with pytest.raises(ProvenanceConflictError, match="symbol 'BTC/USDT:USDT' \\(new data: 'ETH"):
        store.append(
            "BTC_USDT_1h", _candles("2024-01-02", "2024-01-03"), {**PROVENANCE, "symbol": "ETH/USDT:USDT"}
        )
    assert len(store.read("BTC_USDT_1h")) == 24


def test_archive_and_rest_candles_of_one_market_are_one_series(tmp_path):
    store = SeriesStore(tmp_path)
    store.append("BTC_USDT_1h", _candles("2024-01-01", "2024-01-02"), {**PROVENANCE, "source": "archive"})
    store.append("BTC_USDT_1h", _candles("2024-01-02", "2024-01-03"), PROVENANCE)

    stored = store.read("BTC_USDT_1h")
    assert len(stored) == 48
    assert stored.attrs["provenance"]["sources"] == ["archive", "exchange"]
    assert stored.attrs["provenance"]["source"] == "exchange"  # the latest writer


def test_a_replace_interrupted_between_its_renames_keeps_the_old_series(tmp_path):
    store = SeriesStore(tmp_path)
    store.append("BTC_USDT_1h", _candles("2024-01-01", "2024-01-02"), PROVENANCE)
    # A crash after `replace` moved the old series aside and before it moved the new one in:
    os.rename(tmp_path / "BTC_USDT_1h", tmp_path / ".trash-BTC_USDT_1h-99999")
    (tmp_path / ".staging-BTC_USDT_1h-99999").mkdir()

    assert len(store.read("BTC_USDT_1h")) == 24
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BTC_USDT_1h"]


def test_replace_swaps_the_whole_series(tmp_path):
    store = SeriesStore(tmp_path)
    store.replace("BTC_USDT_1h", _candles("2024-01-01", "2024-03-01"), PROVENANCE)

    store.replace("BTC_USDT_1h", _candles("2024-02-01", "2024-02-02"), PROVENANCE)

    assert [p.name for p in store.partitions("BTC_USDT_1h")] == ["2024-02.parquet"]
    assert len(store.read("BTC_USDT_1h")) == 24


def test_a_second_writer_of_a_series_is_refused(tmp_path):
    store = SeriesStore(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\nfrom trading_engine.data.storage import SeriesStore\n"
         f"with SeriesStore({str(tmp_path)!r}).lock('BTC_USDT_1h'):\n    print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(SeriesLockedError, match="BTC_USDT_1h"), store.lock("BTC_USDT_1h"):
            pass
    finally:
        holder.stdin.close()
        holder.wait()
    with store.lock("BTC_USDT_1h"):  # free again once the holder is gone
        pass


def test_consolidated_file_keeps_the_provenance(tmp_path):
    store = SeriesStore(tmp_path / "store")
    store.append("BTC_USDT_1h", _candles("2024-01-01", "2024-01-02"), PROVENANCE)
    dataset = AtomicParquetDataset(filepath=str(tmp_path / "raw" / "BTC_USDT_1h.parquet"))

    dataset.save(store.read("BTC_USDT_1h"))
    loaded = dataset.load()

    assert loaded.attrs["provenance"]["source"] == "exchange"
    assert loaded.attrs["provenance"]["timeframe"] == "1h"
    assert [p.name for p in (tmp_path / "raw").iterdir()] == [
        "BTC_USDT_1h.parquet"
    ]  # no temporary left
