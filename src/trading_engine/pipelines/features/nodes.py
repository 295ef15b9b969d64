"""Nodes of the features pipeline: candles -> feature tables -> model input, and a report.

Partitioned inputs arrive as {series key: load function}; outputs are returned the same way
(lazy saving), so only one series is in memory at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pandas as pd

from trading_engine.data.schema import (
    parse_series_key,
    series_key,
    timeframe_to_timedelta,
    to_indexed,
)
from trading_engine.features import (
    build_model_input,
    compute_features,
    compute_targets,
    feature_report,
)

logger = logging.getLogger(__name__)

Partitions = dict[str, Callable[[], pd.DataFrame]]


def _reference_candles(key: str, candles: Partitions, reference_symbol: str | None) -> pd.DataFrame | None:
    """The reference series' candles of the same timeframe; None for the reference itself."""
    if not reference_symbol:
        return None
    _, timeframe = parse_series_key(key)
    reference_key = series_key(reference_symbol, timeframe)
    if reference_key == key:
        return None
    if reference_key not in candles:
        logger.warning("no reference series %s for %s: its cross-asset features use itself",
                       reference_key, key)
        return None
    return to_indexed(candles[reference_key]())


def compute_feature_tables(candles: Partitions, params: dict[str, Any]) -> Partitions:
    """Per series: the features (float32) and targets (float64) on the candle index."""

    def feature_table(key: str) -> Callable[[], pd.DataFrame]:
        def build() -> pd.DataFrame:
            series = to_indexed(candles[key]())
            features = compute_features(
                series, _reference_candles(key, candles, params.get("reference_symbol")),
                reference_fill_limit=int(params.get("reference_fill_limit", 0)))
            targets = compute_targets(series, **params["targets"])
            logger.info("features of %s: %d rows, %d features", key, len(series), features.shape[1])
            return pd.concat([features, targets], axis=1)

        return build

    return {key: feature_table(key) for key in sorted(candles)}


def build_model_inputs(feature_tables: Partitions, candles: Partitions, funding_rates: Partitions,
                       params: dict[str, Any]) -> Partitions:
    """Per series: features, targets and market columns, warm-up rows dropped (the contract of
    `model_input` in docs/architecture.md)."""

    def model_input(key: str) -> Callable[[], pd.DataFrame]:
        def build() -> pd.DataFrame:
            _, timeframe = parse_series_key(key)
            funding_key = key.rsplit("_", 1)[0]
            funding = funding_rates[funding_key]() if funding_key in funding_rates else None
            if funding is None:
                logger.warning("no funding rates for %s: funding_rate is 0", key)
            return build_model_input(to_indexed(candles[key]()), feature_tables[key](), funding,
                                     warmup_bars=int(params["warmup_bars"]),
                                     timeframe=timeframe_to_timedelta(timeframe))

        return build

    return {key: model_input(key) for key in sorted(feature_tables)}


def report_features(feature_tables: Partitions, params: dict[str, Any]) -> dict[str, Any]:
    """Feature count, NaN share per feature, correlation clusters (JSON-ready)."""
    return feature_report(feature_tables, warmup_bars=int(params["warmup_bars"]),
                          **params.get("report", {}))
