"""Nodes of the ingestion pipeline: bring the store up to date from the configured source, then
validate.

The store (`SeriesStore`, catalog entries `candle_store` and `funding_store`) is the incremental,
crash-safe part of the raw layer. `raw_candles` and `raw_funding_rates` are its consolidation:
one Parquet file per series, written series by series from lazy callables (Kedro's
PartitionedDataset calls them one at a time, so only one series is in memory), with the
provenance in the Parquet metadata (`frame.attrs["provenance"]`). The sources themselves
(`ingestion.source`: synthetic, files, exchange, archive) are `trading_engine.sources`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import pandas as pd

from trading_engine.data import quality
from trading_engine.data.schema import (
    TIMESTAMP_DTYPE,
    funding_key,
    normalise_symbol,
    parse_series_key,
    series_key,
)
from trading_engine.data.storage import SeriesStore
from trading_engine.sources import Window, make_source

logger = logging.getLogger(__name__)
Lazy = Callable[[], pd.DataFrame]


def ingest_candles(
    candle_store: SeriesStore, params: dict[str, Any]
) -> tuple[dict[str, Lazy], dict[str, dict]]:
    """Bring every (symbol, timeframe) series of the store up to date from the configured
    source -> (`raw_candles`: series key -> loader of the series in the window, the ingestion
    report per series)."""
    window = Window.from_parameters(params)
    source = make_source(params)
    symbols = [normalise_symbol(s) for s in params["symbols"]]
    timeframes = list(params["timeframes"])
    reports = source.sync(candle_store, symbols, timeframes, window)
    keys = [series_key(s, tf) for s in symbols for tf in timeframes]
    return {key: partial(candle_store.read, key, window.start, window.end) for key in keys}, reports


def ingest_funding_rates(
    funding_store: SeriesStore, params: dict[str, Any]
) -> tuple[dict[str, Lazy], dict[str, dict]]:
    """The funding settlements of every symbol's perpetual -> (`raw_funding_rates`: key like
    `BTC_USDT` -> loader, the ingestion report per key). A source without funding rates (files)
    gives empty tables: the backtest then charges no funding."""
    window = Window.from_parameters(params)
    source = make_source(params)
    symbols = [normalise_symbol(s) for s in params["symbols"]]
    reports = source.sync_funding(funding_store, symbols, window)
    load = _stored_funding_rates if source.has_funding else _no_funding_rates
    return {funding_key(s): partial(load, funding_store, funding_key(s), window) for s in symbols}, reports


def validate_candles(
    raw_candles: dict[str, Lazy],
) -> tuple[dict[str, Lazy], dict[str, pd.DataFrame], dict[str, dict]]:
    """-> (`candles`: loaders of the clean series, `quarantined_candles`, the quality report per
    series). The reports and quarantines are made here, one series in memory at a time; the
    clean series are validated again when `candles` saves them (validation is cheap, a
    series' memory is not)."""
    reports, quarantined = {}, {}
    for key, load in sorted(raw_candles.items()):
        _, quarantined[key], reports[key] = _validated(load, key)
    clean = {key: partial(_clean_candles, load, key) for key, load in raw_candles.items()}
    return clean, quarantined, reports


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
    """The `data_quality_report` (validation of every series, what this run fetched, and where
    the archive and REST disagreed on a candle), also logged: one line per series."""
    report = quality.quality_report(candle_quality, funding_quality)
    report["ingestion"] = {"candles": candle_ingestion, "funding_rates": funding_ingestion}
    report["source_disagreements"] = {
        key: r["disagreements"] for key, r in candle_ingestion.items() if r.get("disagreements")
    }
    for line in quality.format_quality_summary(report).splitlines():
        logger.info(line)
    for key, disagreement in report["source_disagreements"].items():
        if disagreement["candles_differing"]:
            logger.warning("%s: %s", key, quality.format_disagreement(disagreement))
    return report


def _no_funding_rates(store: SeriesStore, key: str, window: Window) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.Series([], dtype=TIMESTAMP_DTYPE),
            "funding_rate": pd.Series([], dtype="float64"),
        }
    )


def _stored_funding_rates(store: SeriesStore, key: str, window: Window) -> pd.DataFrame:
    """The stored settlements, or an empty table when the source had none in the window."""
    if store.provenance(key) is None:
        logger.warning("%s: no funding settlement in %s", key, window)
        return _no_funding_rates(store, key, window)
    return store.read(key, window.start, window.end)


def _validated(load: Lazy, key: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    raw = load()
    _, timeframe = parse_series_key(key)
    clean, bad, report = quality.validate_candles(raw, timeframe)
    clean.attrs = dict(raw.attrs)  # the provenance stays with the data
    bad.attrs = dict(raw.attrs)
    return clean, bad, report


def _clean_candles(load: Lazy, key: str) -> pd.DataFrame:
    return _validated(load, key)[0]
