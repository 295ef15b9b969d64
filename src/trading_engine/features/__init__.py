"""Causal, scale-free features and prediction targets of candle series.

From a notebook, without Kedro:

    from trading_engine.features import compute_features, compute_targets
    features = compute_features(candles)            # candles indexed by a UTC DatetimeIndex
    targets = compute_targets(candles, horizons=(5, 15, 30, 60))
"""

from trading_engine.features.feature_set import (
    FEATURE_NAMES,
    FUNDING_FEATURE_NAMES,
    OHLCV_FEATURE_NAMES,
    ORDER_FLOW_FEATURE_NAMES,
    WARMUP_BARS,
    compute_features,
    feature_names,
)
from trading_engine.features.model_input import align_funding, build_model_input
from trading_engine.features.report import feature_report
from trading_engine.features.targets import compute_targets, target_columns

__all__ = [
    "FEATURE_NAMES",
    "FUNDING_FEATURE_NAMES",
    "OHLCV_FEATURE_NAMES",
    "ORDER_FLOW_FEATURE_NAMES",
    "WARMUP_BARS",
    "align_funding",
    "build_model_input",
    "compute_features",
    "compute_targets",
    "feature_names",
    "feature_report",
    "target_columns",
]
