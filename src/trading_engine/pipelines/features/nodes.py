"""Nodes of the features pipeline: candles -> feature tables -> model input, and a report.

Partitioned inputs arrive as {series key: load function}; outputs are returned the same way
(lazy saving), so only one series is in memory at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pandas as pd
import pyarrow as pa

from trading_engine.data.schema import (
    funding_key_of_series,
    has_order_flow,
    parse_series_key,
    series_key,
    timeframe_to_timedelta,
    to_indexed,
)
from trading_engine.features import (
    FUNDING_FEATURE_NAMES,
    ORDER_FLOW_FEATURE_NAMES,
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


def compute_feature_tables(candles: Partitions, params: dict[str, Any],
                           funding_rates: Partitions | None = None) -> Partitions:
    """Per series: the features (float32) and targets (float64) on the candle index. The
    order-flow and funding groups (`params["order_flow"]`, `params["funding"]`) are computed for
    every series or for none (the model reads one set of columns): when asked for, they are
    left out, with a warning, if a series lacks order flow or funding settlements."""
    order_flow = bool(params.get("order_flow", True)) and _every_series_has(
        candles, has_order_flow, "order flow", ORDER_FLOW_FEATURE_NAMES)
    funding = _funding_of_every_series(candles, funding_rates) if params.get("funding", True) else None

    def feature_table(key: str) -> Callable[[], pd.DataFrame]:
        def build() -> pd.DataFrame:
            series = to_indexed(candles[key]())
            features = compute_features(
                series, _reference_candles(key, candles, params.get("reference_symbol")),
                reference_fill_limit=int(params.get("reference_fill_limit", 0)),
                funding=None if funding is None else funding[funding_key_of_series(key)](),
                timeframe=timeframe_to_timedelta(parse_series_key(key)[1]), order_flow=order_flow)
            targets = compute_targets(series, **params["targets"])
            logger.info("features of %s: %d rows, %d features", key, len(series), features.shape[1])
            return pd.concat([features, targets], axis=1)

        return build

    return {key: feature_table(key) for key in sorted(candles)}


def _every_series_has(candles: Partitions, check: Callable[[pd.DataFrame], bool], what: str,
                      names: tuple[str, ...]) -> bool:
    """Whether `check` holds for every series (each loaded once, one at a time); else warn."""
    return _left_out([key for key in sorted(candles) if not check(candles[key]())], what, names)


def _funding_of_every_series(candles: Partitions, funding_rates: Partitions | None) -> Partitions | None:
    """The funding partitions when every series has settlements; else None (and a warning)."""
    if funding_rates is None:
        return None
    settled = {k for k, load in funding_rates.items() if len(load())}
    lacking = [key for key in sorted(candles) if funding_key_of_series(key) not in settled]
    return funding_rates if _left_out(lacking, "funding settlements", FUNDING_FEATURE_NAMES) else None


def _left_out(lacking: list[str], what: str, names: tuple[str, ...]) -> bool:
    """False, with a warning naming the series and the features left out, if any series lacks."""
    if lacking:
        logger.warning("%s %s no %s: the features %s are left out of every series",
                       ", ".join(lacking), "has" if len(lacking) == 1 else "have", what,
                       ", ".join(names))
    return not lacking


def build_model_inputs(feature_tables: Partitions, candles: Partitions, funding_rates: Partitions,
                       params: dict[str, Any]) -> Partitions:
    """Per series: features, targets and market columns, warm-up rows dropped (the contract of
    `model_input` in docs/architecture.md)."""

    def model_input(key: str) -> Callable[[], pd.DataFrame]:
        def build() -> pd.DataFrame:
            _, timeframe = parse_series_key(key)
            funding_key = funding_key_of_series(key)
            funding = funding_rates[funding_key]() if funding_key in funding_rates else None
            if funding is None:
                logger.warning("no funding rates for %s: funding_rate is 0", key)
            series, table = to_indexed(candles[key]()), feature_tables[key]()
            # Arrow keeps the Parquet decoding buffers (as much as the table again) for reuse
            pa.default_memory_pool().release_unused()
            return build_model_input(series, table, funding, warmup_bars=int(params["warmup_bars"]),
                                     timeframe=timeframe_to_timedelta(timeframe))

        return build

    return {key: model_input(key) for key in sorted(feature_tables)}


def report_features(feature_tables: Partitions, params: dict[str, Any]) -> dict[str, Any]:
    """Feature count, NaN share per feature, correlation clusters (JSON-ready)."""
    return feature_report(feature_tables, warmup_bars=int(params["warmup_bars"]),
                          **params.get("report", {}))
