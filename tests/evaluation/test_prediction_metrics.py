"""Model metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from trading_engine.evaluation.prediction_metrics import (
    accuracy,
    balanced_accuracy,
    calibration_table,
    coverage_precision_table,
    direction_classes,
    expected_calibration_error,
    information_coefficient,
    log_loss,
    prediction_metrics,
)

PROBABILITIES = np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
CLASSES = direction_classes(np.array([-1.0, 1.0, 1.0, 1.0]))  # -> 0, 2, 2, 2


def test_classification_metrics_by_hand() -> None:
    assert CLASSES.tolist() == [0, 2, 2, 2]
    assert accuracy(PROBABILITIES, CLASSES) == 0.5  # rows 0 and 1 right
    assert balanced_accuracy(PROBABILITIES, CLASSES) == pytest.approx((1.0 + 1 / 3) / 2)
    assert log_loss(PROBABILITIES, CLASSES) == pytest.approx(-np.mean(np.log([0.7, 0.7, 0.3, 0.1])))


def test_calibration_error_by_hand() -> None:
    confidence = np.array([0.15, 0.15, 0.85, 0.85, 0.85, 0.85])
    correct = np.array([1, 0, 1, 1, 1, 0])
    table = calibration_table(confidence, correct, n_bins=10)
    assert table["count"].tolist() == [2, 4]
    # bins: |0.5 - 0.15| with weight 2/6, |0.75 - 0.85| with weight 4/6
    assert expected_calibration_error(confidence, correct, 10) == pytest.approx(2 / 6 * 0.35 + 4 / 6 * 0.10)


def test_information_coefficient_is_spearman() -> None:
    rng = np.random.default_rng(0)
    predicted, realised = rng.standard_normal(500), rng.standard_normal(500)
    realised += 0.3 * predicted
    assert information_coefficient(predicted, realised) == pytest.approx(stats.spearmanr(predicted, realised).statistic)
    assert information_coefficient(predicted ** 3, realised) == pytest.approx(information_coefficient(predicted, realised))


def test_coverage_precision_by_hand() -> None:
    confidence = np.array([0.1, 0.2, 0.3, 0.4])
    right = np.array([0, 0, 1, 1])
    predicted_up = np.array([1, 0, 1, 1])
    realised_up = np.array([0, 1, 1, 1])
    table = coverage_precision_table(confidence, right, predicted_up, realised_up, quantiles=np.array([0.0, 0.5, 1.0]))
    assert table["coverage"].tolist() == [1.0, 0.5, 0.25]
    assert table["precision"].tolist() == [0.5, 1.0, 1.0]
    # Chance: long share q, up share p -> q p + (1 - q)(1 - p): (3/4, 3/4), (1, 1), (1, 1).
    np.testing.assert_allclose(table["chance_precision"], [0.75 * 0.75 + 0.25 * 0.25, 1.0, 1.0])


def test_calibration_and_coverage_measure_the_traded_direction() -> None:
    # The classes say "flat" with confidence, but the rule trades the sign of pred_return: the
    # confidence head's event is whether that sign is the realised one.
    frame = pd.DataFrame({"prob_down": 0.1, "prob_flat": 0.8, "prob_up": 0.1, "confidence": [0.9, 0.9, 0.2, 0.2],
                          "pred_return": [0.01, -0.01, 0.01, 0.01], "target_dir_3": [0.0, 0.0, 0.0, 0.0],
                          "target_ret_3": [0.001, -0.002, -0.001, -0.003]})
    metrics = prediction_metrics(frame, horizon=3, n_bins=10)
    assert metrics["accuracy"] == 1.0  # every class call ("flat") is right ...
    assert metrics["directional_accuracy"] == 0.5  # ... but half of the traded directions are wrong
    bins = {round(row["mean_confidence"], 1): row["accuracy"] for row in metrics["calibration"]}
    assert bins == {0.9: 1.0, 0.2: 0.0}
    assert [row["precision"] for row in metrics["coverage_precision"]][-1] == 1.0


def test_prediction_metrics_skip_rows_without_a_target() -> None:
    frame = pd.DataFrame(PROBABILITIES, columns=["prob_down", "prob_flat", "prob_up"]).assign(
        confidence=[0.9, 0.8, 0.3, 0.2], pred_return=[-1.0, 1.0, 0.5, -0.5],
        target_dir_3=[-1.0, 1.0, 1.0, np.nan], target_ret_3=[-0.01, 0.02, 0.01, np.nan])
    metrics = prediction_metrics(frame, horizon=3)
    assert metrics["n_predictions"] == 3
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["directional_accuracy"] == pytest.approx(1.0)
    assert {"calibration", "coverage_precision", "expected_calibration_error", "information_coefficient",
            "log_loss", "balanced_accuracy"} <= set(metrics)
