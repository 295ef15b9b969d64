"""A small report on feature tables: count, NaN share per feature (before the warm-up drop) and
clusters of near-duplicate features (|correlation| above a threshold, after the warm-up)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components


def correlation_clusters(features: pd.DataFrame, threshold: float) -> list[list[str]]:
    """Groups (connected components) of features linked by |Pearson correlation| > threshold;
    singletons are left out. Constant columns correlate with nothing."""
    values = features.to_numpy(dtype=np.float64)
    values = values[np.isfinite(values).all(axis=1)]
    if values.shape[0] < 3:
        return []
    centred = values - values.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        correlation = (centred.T @ centred) / np.outer(norms, norms)
    linked = np.nan_to_num(np.abs(correlation), nan=0.0) > threshold
    np.fill_diagonal(linked, False)
    count, label = connected_components(csr_matrix(linked), directed=False)
    names = np.asarray(features.columns)
    clusters = [sorted(names[label == k].tolist()) for k in range(count) if (label == k).sum() > 1]
    return sorted(clusters, key=lambda group: (-len(group), group[0]))


def feature_report(feature_tables: Mapping[str, pd.DataFrame | Callable[[], pd.DataFrame]], *,
                   warmup_bars: int,
                   correlation_threshold: float = 0.95,
                   max_rows_per_series: int = 50_000) -> dict[str, Any]:
    """Pooled over all series: NaN share per feature on the full tables, correlation clusters on
    an evenly spaced sample of at most `max_rows_per_series` post-warm-up rows per series.
    Tables may be given as load functions (a PartitionedDataset): loaded one at a time."""
    nan_counts: pd.Series | None = None
    total_rows = 0
    samples = []
    rows_per_series = {}
    for key, table in sorted(feature_tables.items()):
        if callable(table):
            table = table()
        features = table.filter(like="feat_", axis=1)
        counts = features.isna().sum()
        nan_counts = counts if nan_counts is None else nan_counts.add(counts, fill_value=0)
        total_rows += len(features)
        rows_per_series[key] = len(features)
        after_warmup = features.iloc[warmup_bars:]
        step = max(1, len(after_warmup) // max_rows_per_series)
        samples.append(after_warmup.iloc[::step])
    if nan_counts is None:
        raise ValueError("no feature tables to report on")
    sample = pd.concat(samples)
    return {
        "feature_count": int(len(nan_counts)),
        "features": list(nan_counts.index),
        "rows_per_series": rows_per_series,
        "warmup_bars": int(warmup_bars),
        "nan_share_before_warmup_drop": {
            name: round(float(count) / max(total_rows, 1), 6) for name, count in nan_counts.items()
        },
        "correlation_threshold": float(correlation_threshold),
        "correlation_sample_rows": int(len(sample)),
        "correlation_clusters": correlation_clusters(sample, correlation_threshold),
    }
