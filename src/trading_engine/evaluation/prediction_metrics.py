"""How good are the model's outputs as predictions (before any trading)?

Classes are (down, flat, up) <-> target_dir -1, 0, +1 (see trading_engine.models.heads). The
confidence head estimates P(argmax class == realised class), so its calibration is measured
against that event. See docs/metrics.md for the formulas.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

PROBABILITY_COLUMNS = ("prob_down", "prob_flat", "prob_up")


def direction_classes(target_dir: np.ndarray) -> np.ndarray:
    """target_dir -1 / 0 / +1 -> class 0 / 1 / 2; -1 where unknown (NaN)."""
    values = np.asarray(target_dir, dtype=np.float64)
    classes = np.full(values.shape[0], -1, dtype=np.int64)
    known = np.isfinite(values)
    classes[known] = np.sign(values[known]).astype(np.int64) + 1
    return classes


def accuracy(probabilities: np.ndarray, classes: np.ndarray) -> float:
    """Share of rows whose most probable class is the realised one."""
    return float((probabilities.argmax(axis=1) == classes).mean()) if classes.size else float("nan")


def balanced_accuracy(probabilities: np.ndarray, classes: np.ndarray) -> float:
    """Mean over the realised classes present of the share of their rows predicted right."""
    if not classes.size:
        return float("nan")
    predicted = probabilities.argmax(axis=1)
    present = np.unique(classes)
    hits = np.bincount(classes, weights=(predicted == classes).astype(np.float64), minlength=3)
    counts = np.bincount(classes, minlength=3)
    return float(np.mean(hits[present] / counts[present]))


def log_loss(probabilities: np.ndarray, classes: np.ndarray, eps: float = 1e-12) -> float:
    """Mean of -log p(realised class), rows renormalised to sum 1 and p clipped to [eps, 1]."""
    if not classes.size:
        return float("nan")
    rows = probabilities / probabilities.sum(axis=1, keepdims=True)
    chosen = np.clip(rows[np.arange(classes.shape[0]), classes], eps, 1.0)
    return float(-np.log(chosen).mean())


def information_coefficient(predicted: np.ndarray, realised: np.ndarray) -> float:
    """Spearman rank correlation of predicted and realised returns (finite pairs only)."""
    predicted, realised = np.asarray(predicted, dtype=np.float64), np.asarray(realised, dtype=np.float64)
    finite = np.isfinite(predicted) & np.isfinite(realised)
    if finite.sum() < 3 or np.ptp(predicted[finite]) == 0 or np.ptp(realised[finite]) == 0:
        return float("nan")
    return float(stats.spearmanr(predicted[finite], realised[finite]).statistic)


def calibration_table(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Equal-width confidence bins on [0, 1]: lower, upper, count, mean_confidence, accuracy
    (the share of right calls); empty bins are left out."""
    confidence = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins)
    hits = np.bincount(bins, weights=correct, minlength=n_bins)
    filled = counts > 0
    return pd.DataFrame({
        "lower": edges[:-1][filled], "upper": edges[1:][filled], "count": counts[filled],
        "mean_confidence": mean_confidence[filled] / counts[filled],
        "accuracy": hits[filled] / counts[filled],
    })


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> float:
    """sum over bins of (bin count / N) * |accuracy - mean confidence| (equal-width bins)."""
    table = calibration_table(confidence, correct, n_bins)
    if table.empty:
        return float("nan")
    weights = table["count"] / table["count"].sum()
    return float((weights * (table["accuracy"] - table["mean_confidence"]).abs()).sum())


def coverage_precision_table(confidence: np.ndarray, correct: np.ndarray, directional_hit: np.ndarray,
                             quantiles: np.ndarray | None = None) -> pd.DataFrame:
    """For thresholds at quantiles of the confidence: coverage (share of rows with confidence >=
    threshold), precision (share of those whose class call is right) and directional precision
    (share of those, among rows with a direction, whose sign(P(up) - P(down)) is the sign of the
    realised return)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    if quantiles is None:
        quantiles = np.linspace(0.0, 0.95, 20)
    if not confidence.size:
        return pd.DataFrame(columns=["threshold", "coverage", "precision", "directional_precision"])
    thresholds = np.unique(np.quantile(confidence, quantiles))
    # Sort once; rows with confidence >= t are a suffix of the sorted order.
    order = np.argsort(confidence, kind="stable")
    sorted_confidence = confidence[order]
    correct_suffix = np.cumsum(np.asarray(correct, dtype=np.float64)[order][::-1])[::-1]
    directional = np.asarray(directional_hit, dtype=np.float64)[order]
    has_direction = np.isfinite(directional)
    direction_hits = np.cumsum(np.where(has_direction, directional, 0.0)[::-1])[::-1]
    direction_counts = np.cumsum(has_direction[::-1])[::-1]
    first = np.searchsorted(sorted_confidence, thresholds, side="left")
    covered = confidence.size - first
    return pd.DataFrame({
        "threshold": thresholds,
        "coverage": covered / confidence.size,
        "precision": correct_suffix[first] / covered,
        "directional_precision": np.divide(direction_hits[first], direction_counts[first],
                                           out=np.full(first.shape, np.nan), where=direction_counts[first] > 0),
    })


def prediction_metrics(frame: pd.DataFrame, horizon: int, n_bins: int = 10) -> dict[str, Any]:
    """Model metrics of predictions joined with their realised targets (`target_dir_{h}` and
    `target_ret_{h}` columns); rows without a realised direction are left out."""
    classes = direction_classes(frame[f"target_dir_{horizon}"].to_numpy())
    known = classes >= 0
    frame = frame.loc[known]
    classes = classes[known]
    if frame.empty:
        return {"n_predictions": 0}
    probabilities = frame[list(PROBABILITY_COLUMNS)].to_numpy(dtype=np.float64)
    confidence = frame["confidence"].to_numpy(dtype=np.float64)
    correct = probabilities.argmax(axis=1) == classes
    realised = frame[f"target_ret_{horizon}"].to_numpy(dtype=np.float64)
    edge = frame["prob_up"].to_numpy(dtype=np.float64) - frame["prob_down"].to_numpy(dtype=np.float64)
    directional = np.where((edge != 0) & (realised != 0), (np.sign(edge) == np.sign(realised)).astype(np.float64), np.nan)
    return {
        "n_predictions": int(len(frame)),
        "accuracy": accuracy(probabilities, classes),
        "balanced_accuracy": balanced_accuracy(probabilities, classes),
        "log_loss": log_loss(probabilities, classes),
        "information_coefficient": information_coefficient(frame["pred_return"].to_numpy(), realised),
        "directional_accuracy": float(np.nanmean(directional)) if np.isfinite(directional).any() else None,
        "class_shares": {name: float((classes == k).mean()) for k, name in enumerate(("down", "flat", "up"))},
        "expected_calibration_error": expected_calibration_error(confidence, correct, n_bins),
        "mean_confidence": float(np.mean(confidence)),
        "calibration": calibration_table(confidence, correct, n_bins).to_dict(orient="records"),
        "coverage_precision": coverage_precision_table(confidence, correct, directional).to_dict(orient="records"),
    }
