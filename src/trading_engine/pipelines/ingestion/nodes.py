"""Nodes of the ingestion pipeline: bring the store up to date from the configured source, then
validate.

The store (`SeriesStore`, catalog entries `candle_store` and `funding_store`) is the incremental,
crash-safe part of the raw layer. `raw_candles` and `raw_funding_rates` are its consolidation:
one Parquet file per series, written series by series from lazy callables (Kedro's
PartitionedDataset calls them one at a time, so only one series is in memory), with the
provenance in the Parquet metadata (`frame.attrs["provenance"]`).

Sources (`ingestion.source`): `synthetic` (the offline demo), `files` (a folder of candle files;
no funding rates) and `exchange` (ccxt, incremental). Dates are checked before any request.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import pandas as pd

from trading_engine.data import files, quality, synthetic
from trading_engine.data.schema import (
    TIMESTAMP_DTYPE,
    normalise_symbol,
    parse_series_key,
    series_key,
)
from trading_engine.data.storage import SeriesStore
from trading_engine.exchange import (
    DownloadSettings,
    ExchangeClient,
    RetryPolicy,
    WeightBudget,
    funding_key,
    sync_candles,
    sync_funding_rates,
)

logger = logging.getLogger(__name__)
SOURCES = ("synthetic", "exchange", "files")
Lazy = Callable[[], pd.DataFrame]


def ingest_candles(
    candle_store: SeriesStore, params: dict[str, Any]
) -> tuple[dict[str, Lazy], dict[str, dict]]:
    """Bring every (symbol, timeframe) series of the store up to date from the configured
    source -> (`raw_candles`: series key -> loader of the series in [start, end), the
    ingestion report per series)."""
    source = _source(params)
    start, end = requested_window(params)
    symbols = [normalise_symbol(s) for s in params["symbols"]]
    timeframes = list(params["timeframes"])
    keys = [series_key(s, tf) for s in symbols for tf in timeframes]
    if source == "exchange":
        reports = sync_candles(
            exchange_client(params),
            candle_store,
            symbols,
            timeframes,
            _ms(start),
            None if end is None else _ms(end),
            download_settings(params),
        )
        summary = {report.key: report.to_dict() for report in reports}
    else:
        end = end or pd.Timestamp.now(tz="UTC")
        frames = _generated_or_imported_candles(source, params, symbols, timeframes, start, end)
        summary = _replace_series(candle_store, frames, source)
    return {key: partial(candle_store.read, key, start, end) for key in keys}, summary


def ingest_funding_rates(
    funding_store: SeriesStore, params: dict[str, Any]
) -> tuple[dict[str, Lazy], dict[str, dict]]:
    """The funding settlements of every symbol's perpetual -> (`raw_funding_rates`: key like
    `BTC_USDT` -> loader, the ingestion report per key). The files source has none: its
    tables are empty (the backtest then charges no funding) and a warning says so."""
    source = _source(params)
    start, end = requested_window(params)
    symbols = [normalise_symbol(s) for s in params["symbols"]]
    if source == "files":
        logger.warning("source 'files' has no funding rates: raw_funding_rates are empty tables")
        return {funding_key(s): _no_funding_rates for s in symbols}, {}
    if source == "exchange":
        reports = sync_funding_rates(
            exchange_client(params),
            funding_store,
            symbols,
            _ms(start),
            None if end is None else _ms(end),
            download_settings(params),
        )
        summary = {report.key: report.to_dict() for report in reports}
    else:
        end = end or pd.Timestamp.now(tz="UTC")
        seed = params["synthetic"]["seed"]
        generated = synthetic.generate_funding_rates(symbols, start, end, seed=seed)
        frames = {
            funding_key(symbol): (
                frame,
                {
                    **_synthetic_provenance(params),
                    "kind": "funding_rates",
                    "symbol": symbol,
                    "timeframe": None,
                },
            )
            for symbol, frame in generated.items()
        }
        summary = _replace_series(funding_store, frames, source)
    return {
        funding_key(s): partial(_stored_funding_rates, funding_store, funding_key(s), start, end)
        for s in symbols
    }, summary


def validate_candles(
    raw_candles: dict[str, Lazy],
) -> tuple[dict[str, Lazy], dict[str, pd.DataFrame], dict[str, dict]]:
    """-> (`candles`: loaders of the clean series, `quarantined_candles`, the quality report per
    series). The reports and quarantines are made here, one series in memory at a time; the
    clean series are validated again when `candles` saves them (validation is cheap, a
    series' memory is not)."""
    reports, quarantined = {}, {}
    for key, load in sorted(raw_candles.items()):
        _, bad, report = _validated(load, key)
        quarantined[key], reports[key] = bad, report
    return (
        {key: partial(_clean_candles, load, key) for key, load in raw_candles.items()},
        quarantined,
        reports,
    )


def validate_funding_rates(
    raw_funding_rates: dict[str, Lazy],
) -> tuple[dict[str, pd.DataFrame], dict[str, dict]]:
    """-> (`funding_rates`: the clean settlements per perpetual, the quality report per key).
    Quarantined settlements are counted in the report and left out."""
    clean, reports = {}, {}
    for key, load in sorted(raw_funding_rates.items()):
        raw = load()
        clean[key], _, reports[key] = quality.validate_funding_rates(raw)
        clean[key].attrs = dict(raw.attrs)
    return clean, reports


def report_data_quality(
    candle_quality: dict[str, dict],
    funding_quality: dict[str, dict],
    candle_ingestion: dict[str, dict],
    funding_ingestion: dict[str, dict],
) -> dict:
    """The `data_quality_report` (validation of every series plus what this run fetched), also
    logged: one line per series."""
    report = quality.quality_report(candle_quality, funding_quality)
    report["ingestion"] = {"candles": candle_ingestion, "funding_rates": funding_ingestion}
    for line in quality.format_quality_summary(report).splitlines():
        logger.info(line)
    return report


# ------------------------------------------------------------------ parameters


def requested_window(params: dict[str, Any]) -> tuple[pd.Timestamp, pd.Timestamp | None]:
    """(start, end or None) in UTC from `ingestion.start` / `ingestion.end`; ValueError for a
    missing or unparseable date or a start that is not before the end (before any request)."""
    start = _parse_time(params.get("start"), "start")
    if start is None:
        raise ValueError("ingestion.start is required, e.g. '2020-01-01'")
    end = _parse_time(params.get("end"), "end")
    if end is not None and start >= end:
        raise ValueError(
            f"ingestion.start ({start.isoformat()}) must be before ingestion.end ({end.isoformat()})"
        )
    return start, end


def exchange_client(params: dict[str, Any]) -> ExchangeClient:
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


def download_settings(params: dict[str, Any]) -> DownloadSettings:
    download = dict(params.get("download", {}))
    download.pop("timeout_s", None)
    return DownloadSettings(**download)


def _source(params: dict[str, Any]) -> str:
    source = params.get("source")
    if source not in SOURCES:
        raise ValueError(f"ingestion.source is {source!r}; expected one of {', '.join(SOURCES)}")
    return source


def _parse_time(value: Any, name: str) -> pd.Timestamp | None:
    if value is None:
        return None
    if not isinstance(value, str | dt.date | pd.Timestamp):
        raise ValueError(
            f"ingestion.{name} = {value!r} is not a date; write it like '2020-01-01' or '2020-01-01T12:00:00Z'"
        )
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"ingestion.{name} = {value!r} is not a date ({error}); write it like '2020-01-01'"
        ) from error
    if pd.isna(stamp):
        raise ValueError(f"ingestion.{name} = {value!r} is not a date; write it like '2020-01-01'")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _ms(stamp: pd.Timestamp) -> int:
    return int(stamp.value // 1_000_000)


# ------------------------------------------------------------------ synthetic and files


def _synthetic_provenance(params: dict[str, Any]) -> dict[str, Any]:
    settings = params["synthetic"]
    return {
        **synthetic.synthetic_provenance(settings["seed"], settings["signal_strength"]),
        "exchange": None,
    }


def _generated_or_imported_candles(
    source: str,
    params: dict[str, Any],
    symbols: list[str],
    timeframes: list[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> dict[str, tuple[pd.DataFrame, dict]]:
    """series key -> (candles, provenance) from the synthetic generator or the files."""
    frames = {}
    if source == "synthetic":
        settings = params["synthetic"]
        for timeframe in timeframes:
            generated = synthetic.generate_candles(
                symbols,
                timeframe,
                start,
                end,
                seed=settings["seed"],
                signal_strength=settings["signal_strength"],
                base_timeframe=settings.get("base_timeframe"),
            )
            for symbol, frame in generated.items():
                provenance = {
                    **_synthetic_provenance(params),
                    "kind": "candles",
                    "symbol": symbol,
                    "timeframe": timeframe,
                }
                frames[series_key(symbol, timeframe)] = (frame, provenance)
        return frames
    imported = files.read_candle_files(params["files_dir"], symbols, timeframes)
    for (symbol, timeframe), frame in imported.items():
        provenance = {
            "kind": "candles",
            "source": "files",
            "exchange": params.get("exchange"),
            "files_dir": str(params["files_dir"]),
            "symbol": symbol,
            "timeframe": timeframe,
        }
        frames[series_key(symbol, timeframe)] = (frame, provenance)
    return frames


def _replace_series(
    store: SeriesStore, frames: dict[str, tuple[pd.DataFrame, dict]], source: str
) -> dict[str, dict]:
    """Replace whole series (a regenerated or re-imported source); every series' provenance is
    checked before the first one is written."""
    for key, (_, provenance) in frames.items():
        store.check_provenance(key, provenance)
    summary = {}
    for key, (frame, provenance) in frames.items():
        rows = store.replace(key, frame, provenance)
        summary[key] = {"key": key, "source": source, "rows": rows}
        logger.info("%s: %s rows from source %r", key, f"{rows:,}", source)
    return summary


def _no_funding_rates() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.Series([], dtype=TIMESTAMP_DTYPE),
            "funding_rate": pd.Series([], dtype="float64"),
        }
    )


def _stored_funding_rates(
    store: SeriesStore, key: str, start: pd.Timestamp, end: pd.Timestamp | None
) -> pd.DataFrame:
    """The stored settlements, or an empty table when the exchange had none in the range."""
    if store.provenance(key) is None:
        logger.warning("%s: no funding settlement between %s and %s", key, start, end or "now")
        return _no_funding_rates()
    return store.read(key, start, end)


# ------------------------------------------------------------------ validation


def _validated(load: Lazy, key: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    raw = load()
    _, timeframe = parse_series_key(key)
    clean, bad, report = quality.validate_candles(raw, timeframe)
    clean.attrs = dict(raw.attrs)  # the provenance stays with the data
    bad.attrs = dict(raw.attrs)
    return clean, bad, report


def _clean_candles(load: Lazy, key: str) -> pd.DataFrame:
    return _validated(load, key)[0]
