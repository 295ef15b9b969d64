"""Where candles and funding rates come from: one protocol, four sources (see `base.py`).

    source = make_source(params)                      # the `ingestion` parameters
    source.sync(store, symbols, timeframes, window)   # -> {series key: report}
    source.sync_funding(store, symbols, window)       # -> {funding key: report}

* `synthetic`: the offline demo's market (`SyntheticSource`, `generate_candles`);
* `files`: a folder of Parquet or Binance archive CSV files (`FilesSource`, `read_candle_files`);
* `exchange`: the REST API through ccxt (`exchange/`: client, budget, history, download, and
  `binance.py`, everything that is Binance's own);
* `archive`: the exchange's public archive of zipped CSVs, then REST for the last day or two
  (`ArchiveSource`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trading_engine.sources.archive import ArchiveSettings, ArchiveSource
from trading_engine.sources.base import EmptyWindowError, SeriesReport, Source, Window
from trading_engine.sources.exchange import (
    DownloadSettings,
    ExchangeClient,
    ExchangeSource,
    RetryPolicy,
    WeightBudget,
)
from trading_engine.sources.files import FilesSource
from trading_engine.sources.synthetic import SyntheticSource

SOURCES = ("synthetic", "files", "exchange", "archive")


def make_source(params: Mapping[str, Any]) -> Source:
    """The source named by `ingestion.source`, configured from the `ingestion` parameters;
    ValueError for an unknown name."""
    name = params.get("source")
    if name not in SOURCES:
        raise ValueError(f"ingestion.source is {name!r}; expected one of {', '.join(SOURCES)}")
    if name == "synthetic":
        settings = params["synthetic"]
        return SyntheticSource(
            settings["seed"], settings["signal_strength"], settings.get("base_timeframe")
        )
    if name == "files":
        return FilesSource(params["files_dir"], params.get("exchange"))
    if name == "exchange":
        return ExchangeSource(exchange_client(params), download_settings(params))
    return ArchiveSource(
        exchange_client(params),
        ArchiveSettings(**params.get("archive", {})),
        download_settings(params),
    )


def exchange_client(params: Mapping[str, Any]) -> ExchangeClient:
    limits = params.get("rate_limit", {})
    budget = WeightBudget(
        limit=limits.get("weight_per_window", 2400) if limits.get("enabled", True) else None,
        window_s=limits.get("window_s", 60.0),
        utilisation=limits.get("utilisation", 0.98),
    )
    return ExchangeClient(
        params.get("exchange", "binanceusdm"),
        params.get("api_url"),
        timeout_s=params.get("download", {}).get("timeout_s", 30.0),
        retry=RetryPolicy(**params.get("retry", {})),
        budget=budget,
    )


def download_settings(params: Mapping[str, Any]) -> DownloadSettings:
    download = dict(params.get("download", {}))
    download.pop("timeout_s", None)
    return DownloadSettings(**download)


__all__ = [
    "SOURCES",
    "ArchiveSource",
    "EmptyWindowError",
    "ExchangeSource",
    "FilesSource",
    "SeriesReport",
    "Source",
    "SyntheticSource",
    "Window",
    "download_settings",
    "exchange_client",
    "make_source",
]
