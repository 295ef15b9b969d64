"""The Kedro ingestion pipeline end to end, in a temporary copy of the project's configuration:
on the synthetic source, on the exchange and archive sources against the loopback Binance
servers, and the files source; windows without candles fail with one message."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.conftest import make_test_project
from trading_engine.data.schema import ORDER_FLOW_COLUMNS
from trading_engine.data.storage import SeriesStore
from trading_engine.features import feature_names
from trading_engine.pipelines.ingestion.nodes import ingest_candles, ingest_funding_rates
from trading_engine.sources import EmptyWindowError


def _project(tmp_path: Path, ingestion: dict, **more: dict) -> Path:
    """A project copy whose `test` environment writes under tmp_path and overrides `ingestion`
    (and the other parameter sections given)."""
    return make_test_project(tmp_path, {"ingestion": ingestion, **more})


def _run_ingestion(project: Path, *more: str) -> None:
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="test") as session:
        session.run(pipeline_names=["ingestion", *more])


def test_ingestion_pipeline_runs_end_to_end_on_synthetic_data(tmp_path):
    project = _project(
        tmp_path,
        {"start": "2025-01-01", "end": "2025-01-08", "download": {"progress": False}},
    )

    _run_ingestion(project)

    raw = pd.read_parquet(tmp_path / "data/raw/candles/BTC_USDT_5m.parquet")
    clean = pd.read_parquet(tmp_path / "data/intermediate/candles/BTC_USDT_5m.parquet")
    assert len(raw) == 7 * 288 and raw["timestamp"].iloc[0] == pd.Timestamp("2025-01-01", tz="UTC")
    assert raw.attrs["provenance"]["source"] == clean.attrs["provenance"]["source"] == "synthetic"
    pd.testing.assert_frame_equal(clean, raw)
    assert sorted(p.name for p in (tmp_path / "data/intermediate/funding").iterdir()) == [
        "BTC_USDT.parquet", "ETH_USDT.parquet", "SOL_USDT.parquet",
    ]  # fmt: skip
    report = json.loads((tmp_path / "data/reporting/data_quality_report.json").read_text())
    assert set(report["series"]) == {"BTC_USDT_5m", "ETH_USDT_5m", "SOL_USDT_5m"}
    assert report["totals"]["rows_quarantined"] == 0


def test_ingestion_pipeline_runs_end_to_end_against_the_exchange(
    tmp_path, project_root, exchange_server, btc_1m, eth_1m, funding
):
    btc = btc_1m.iloc[:6000].drop(index=range(3000, 3010)).copy()  # a 10-minute hole
    btc.loc[4000, "high"] = btc.loc[4000, "low"] - 1.0  # a bad candle
    server = exchange_server(
        {("BTCUSDT", "1m"): btc, ("ETHUSDT", "1m"): eth_1m.iloc[:6000]}, funding
    )
    start = btc["timestamp"].iloc[0].isoformat()
    project = _project(tmp_path, {
        "source": "exchange", "api_url": server.url, "symbols": ["BTC/USDT", "ETH/USDT:USDT"], "timeframes": ["1m"],
        "start": start, "end": None, "download": {"progress": False, "timeout_s": 2},
        "retry": {"max_attempts": 4, "backoff_base_s": 0.01}, "rate_limit": {"enabled": False},
    })  # fmt: skip

    _run_ingestion(project)
    server.reset_counts()
    _run_ingestion(project)  # nothing new on the exchange: no candle requested

    assert server.count("klines") == 0
    raw = pd.read_parquet(tmp_path / "data/raw/candles/BTC_USDT_1m.parquet")
    pd.testing.assert_frame_equal(raw, btc.reset_index(drop=True))
    assert raw.attrs["provenance"]["source"] == "exchange"
    assert raw.attrs["provenance"]["exchange"] == "binanceusdm"
    quarantined = pd.read_parquet(tmp_path / "data/intermediate/quarantine/BTC_USDT_1m.parquet")
    assert quarantined["timestamp"].tolist() == [btc.loc[4000, "timestamp"]]
    report = json.loads((tmp_path / "data/reporting/data_quality_report.json").read_text())
    btc_report = report["series"]["BTC_USDT_1m"]
    assert (btc_report["rows_quarantined"], btc_report["gap_count"]) == (
        1,
        2,
    )  # the hole and the quarantined candle
    assert report["series"]["ETH_USDT_1m"]["rows_quarantined"] == 0
    settled = funding["ETHUSDT"][
        funding["ETHUSDT"]["timestamp"] <= btc["timestamp"].iloc[-1] + pd.Timedelta("1min")
    ]
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "data/intermediate/funding/ETH_USDT.parquet"), settled
    )
    assert SeriesStore(tmp_path / "data/raw/store/candles").keys() == ["BTC_USDT_1m", "ETH_USDT_1m"]


def test_files_source_stores_the_files_candles_with_their_provenance(tmp_path, btc_1m):
    folder = tmp_path / "files"
    folder.mkdir()
    btc_1m.iloc[:500].to_parquet(folder / "BTC_USDT_1m.parquet")
    params = {"source": "files", "files_dir": str(folder), "exchange": "binanceusdm", "symbols": ["BTC/USDT"],
              "timeframes": ["1m"], "start": "2025-01-01", "end": None}  # fmt: skip

    raw_candles, _ = ingest_candles(SeriesStore(tmp_path / "candles"), params)
    raw_funding, _ = ingest_funding_rates(SeriesStore(tmp_path / "funding"), params)

    stored = raw_candles["BTC_USDT_1m"]()
    pd.testing.assert_frame_equal(stored, btc_1m.iloc[:500].reset_index(drop=True))
    assert stored.attrs["provenance"]["source"] == "files"
    assert raw_funding["BTC_USDT"]().empty  # files carry no funding: the backtest charges none


def test_a_perpetual_without_settlements_in_the_range_gives_an_empty_funding_table(
    tmp_path, exchange_server, btc_1m
):
    server = exchange_server({("BTCUSDT", "1m"): btc_1m.iloc[:100]})  # serves no funding
    params = {"source": "exchange", "api_url": server.url, "symbols": ["BTC/USDT"], "timeframes": ["1m"],
              "start": btc_1m["timestamp"].iloc[0].isoformat(), "end": None, "download": {"progress": False}}  # fmt: skip

    raw_funding, report = ingest_funding_rates(SeriesStore(tmp_path), params)

    table = raw_funding["BTC_USDT"]()
    assert table.empty and list(table.columns) == ["timestamp", "funding_rate"]
    assert report["BTC_USDT"]["added"] == 0


def test_a_files_window_without_candles_fails_naming_the_series_the_window_and_the_files_range(
    tmp_path, btc_1m
):
    folder = tmp_path / "files"
    folder.mkdir()
    btc_1m.iloc[:500].to_parquet(folder / "BTC_USDT_1m.parquet")
    first, last = btc_1m["timestamp"].iloc[0], btc_1m["timestamp"].iloc[499]
    params = {"source": "files", "files_dir": str(folder), "symbols": ["BTC/USDT"],
              "timeframes": ["1m"], "start": "2020-01-01", "end": "2020-02-01"}  # fmt: skip

    with pytest.raises(EmptyWindowError) as failure:
        ingest_candles(SeriesStore(tmp_path / "candles"), params)

    message = str(failure.value)
    assert "2020-01-01 00:00 -> 2020-02-01 00:00 UTC" in message and "BTC_USDT_1m" in message
    assert f"{first:%Y-%m-%d %H:%M} -> {last:%Y-%m-%d %H:%M} UTC" in message
    assert not (tmp_path / "candles").exists()  # nothing stored


def test_a_synthetic_window_shorter_than_one_candle_fails(tmp_path):
    params = {"source": "synthetic", "symbols": ["BTC/USDT"], "timeframes": ["1h"],
              "start": "2025-01-01 00:10", "end": "2025-01-01 00:50",
              "synthetic": {"seed": 7, "signal_strength": 0.05}}  # fmt: skip

    with pytest.raises(EmptyWindowError, match=r"BTC_USDT_1h \(no candle opens in it\)"):
        ingest_candles(SeriesStore(tmp_path), params)


def test_archive_ingestion_end_to_end_keeps_the_order_flow_and_reports_archive_rest_disagreements(
    tmp_path, exchange_server, archive_server, archive_candles, archive_funding
):
    """Kedro runs the ingestion pipeline twice on the archive source: the first run takes the
    last two days over REST (the archive is behind); the archive then publishes them and the
    second run compares them with what REST gave, one candle of which REST had wrong, and goes
    on to the features: the order flow reaches the model input."""
    from_rest = {key: frame.copy() for key, frame in archive_candles.items()}
    wrong = from_rest[("ETHUSDT", "5m")].index[-100]
    from_rest[("ETHUSDT", "5m")].loc[wrong, "volume"] += 1.0
    rest = exchange_server(from_rest, archive_funding)
    archive = archive_server(archive_candles, archive_funding, published_until="2024-12-30")
    project = _project(tmp_path, {
        "source": "archive", "api_url": rest.url, "archive": {"base_url": archive.url},
        "symbols": ["BTC/USDT", "ETH/USDT"], "timeframes": ["5m"], "start": "2024-11-01", "end": None,
        "download": {"progress": False}, "retry": {"max_attempts": 3, "backoff_base_s": 0.01},
        "rate_limit": {"enabled": False},
    }, features={"order_flow": True, "funding": True})  # fmt: skip

    _run_ingestion(project)
    archive.publish_until("2025-01-01")
    _run_ingestion(project, "features")

    for market, key in (("BTCUSDT", "BTC_USDT_5m"), ("ETHUSDT", "ETH_USDT_5m")):
        clean = pd.read_parquet(tmp_path / f"data/intermediate/candles/{key}.parquet")
        pd.testing.assert_frame_equal(clean, archive_candles[(market, "5m")].reset_index(drop=True))
        assert clean[list(ORDER_FLOW_COLUMNS)].notna().all().all()  # order flow through every layer
    report = json.loads((tmp_path / "data/reporting/data_quality_report.json").read_text())
    eth = report["source_disagreements"]["ETH_USDT_5m"]
    assert (eth["candles_compared"], eth["candles_differing"], eth["columns"]) == (576, 1, {"volume": 1})
    assert report["source_disagreements"]["BTC_USDT_5m"]["candles_differing"] == 0
    assert report["series"]["ETH_USDT_5m"]["order_flow_candles"] == len(archive_candles[("ETHUSDT", "5m")])
    funding = pd.read_parquet(tmp_path / "data/intermediate/funding/BTC_USDT.parquet")
    pd.testing.assert_frame_equal(funding, archive_funding["BTCUSDT"].reset_index(drop=True))
    model_input = pd.read_parquet(tmp_path / "data/model_input/model_input/ETH_USDT_5m.parquet")
    assert [c for c in model_input.columns if c.startswith("feat_")] == list(feature_names())
