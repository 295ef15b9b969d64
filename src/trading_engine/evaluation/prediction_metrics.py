"""How good are the model's outputs as predictions (before any trading)?

Classes are (down, flat, up) <-> target_dir -1, 0, +1 (see trading_engine.models.heads). The rule
trades the sign of the regression head's forecast, and the confidence head estimates the
probability that this traded direction is right; its calibration and the coverage / precision
table are measured against that same event. See docs/metrics.md for the formulas.
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


def coverage_precision_table(confidence: np.ndarray, direction_right: np.ndarray, predicted_up: np.ndarray,
                             realised_up: np.ndarray, quantiles: np.ndarray | None = None) -> pd.DataFrame:
    """For thresholds at quantiles of the confidence: coverage (share of rows with confidence >=
    threshold), precision (share of those whose traded direction is right) and the chance
    precision of those rows: what a direction drawn independently of the outcome, long as often
    as the model's, would score on them (q p + (1 - q)(1 - p), q the long share, p the share of
    up moves)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    if quantiles is None:
        quantiles = np.linspace(0.0, 0.95, 20)
    if not confidence.size:
        return pd.DataFrame(columns=["threshold", "coverage", "precision", "chance_precision"])
    thresholds = np.unique(np.quantile(confidence, quantiles))
    # Sort once; rows with confidence >= t are a suffix of the sorted order.
    order = np.argsort(confidence, kind="stable")
    sorted_confidence = confidence[order]

    def suffix_sums(values: np.ndarray) -> np.ndarray:
        return np.cumsum(np.asarray(values, dtype=np.float64)[order][::-1])[::-1]

    right, long, up = suffix_sums(direction_right), suffix_sums(predicted_up), suffix_sums(realised_up)
    first = np.searchsorted(sorted_confidence, thresholds, side="left")
    covered = confidence.size - first
    long_share, up_share = long[first] / covered, up[first] / covered
    return pd.DataFrame({
        "threshold": thresholds,
        "coverage": covered / confidence.size,
        "precision": right[first] / covered,
        "chance_precision": long_share * up_share + (1 - long_share) * (1 - up_share),
    })


MIN_BIN_COUNT = 30  # calibration bins with fewer predictions are flagged (and drawn apart)


def prediction_metrics(frame: pd.DataFrame, horizon: int, n_bins: int = 10) -> dict[str, Any]:
    """Model metrics of predictions joined with their realised targets (`target_dir_{h}` and
    `target_ret_{h}` columns). The class metrics use the rows with a realised direction; the
    traded-direction metrics (directional accuracy, calibration, coverage / precision) use the
    rows where both the forecast and the realised return are non-zero."""
    classes = direction_classes(frame[f"target_dir_{horizon}"].to_numpy())
    known = classes >= 0
    frame = frame.loc[known]
    classes = classes[known]
    if frame.empty:
        return {"n_predictions": 0}
    probabilities = frame[list(PROBABILITY_COLUMNS)].to_numpy(dtype=np.float64)
    realised = frame[f"target_ret_{horizon}"].to_numpy(dtype=np.float64)
    forecast = frame["pred_return"].to_numpy(dtype=np.float64)
    directional = (forecast != 0) & (realised != 0) & np.isfinite(forecast) & np.isfinite(realised)
    confidence = frame["confidence"].to_numpy(dtype=np.float64)[directional]
    right = np.sign(forecast[directional]) == np.sign(realised[directional])
    calibration = calibration_table(confidence, right, n_bins)
    calibration["reliable"] = calibration["count"] >= MIN_BIN_COUNT
    return {
        "n_predictions": int(len(frame)),
        "accuracy": accuracy(probabilities, classes),
        "balanced_accuracy": balanced_accuracy(probabilities, classes),
        "log_loss": log_loss(probabilities, classes),
        "information_coefficient": information_coefficient(forecast, realised),
        "n_directional": int(directional.sum()),
        "directional_accuracy": float(right.mean()) if right.size else None,
        "class_shares": {name: float((classes == k).mean()) for k, name in enumerate(("down", "flat", "up"))},
        "expected_calibration_error": expected_calibration_error(confidence, right, n_bins),
        "mean_confidence": float(np.mean(confidence)) if confidence.size else None,
        "calibration": calibration.to_dict(orient="records"),
        "coverage_precision": coverage_precision_table(confidence, right, forecast[directional] > 0,
                                                       realised[directional] > 0).to_dict(orient="records"),
    }
