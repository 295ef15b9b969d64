"""PSR, DSR and MinTRL against the published example."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from trading_engine.trading.significance import (
    bootstrap_sharpe_interval,
    deflated_sharpe_ratio,
    expected_maximum_sharpe,
    minimum_track_record_length,
    probabilistic_sharpe_ratio,
    sharpe_difference_test,
    sharpe_significance,
    stationary_bootstrap_indices,
)

# Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", numerical example: the best of
# N = 100 trials has an annualised SR of 2.5 over T = 1250 daily observations (250 a year),
# skewness -3, kurtosis 10, and the trials' annualised Sharpe ratios have variance 0.5.
PAPER_SR = 2.5 / np.sqrt(250)
PAPER_VARIANCE = 0.5 / 250


def test_deflated_sharpe_matches_the_papers_example() -> None:
    assert expected_maximum_sharpe(100, PAPER_VARIANCE) == pytest.approx(0.1132, abs=5e-5)
    assert deflated_sharpe_ratio(PAPER_SR, 1250, 100, PAPER_VARIANCE, skewness=-3, kurtosis=10) == pytest.approx(
        0.9004, abs=5e-5)


def test_kurtosis_enters_once_as_non_excess() -> None:
    # The paper's denominator: 1 - g3 SR + (g4 - 1) / 4 SR^2 with g4 = 10. Subtracting 3 twice,
    # (g4 - 3 - 1) / 4, would give 0.9018 here instead of 0.9004.
    benchmark = expected_maximum_sharpe(100, PAPER_VARIANCE)
    right = stats.norm.cdf((PAPER_SR - benchmark) * np.sqrt(1249) / np.sqrt(1 + 3 * PAPER_SR + 9 / 4 * PAPER_SR**2))
    wrong = stats.norm.cdf((PAPER_SR - benchmark) * np.sqrt(1249) / np.sqrt(1 + 3 * PAPER_SR + 6 / 4 * PAPER_SR**2))
    psr = probabilistic_sharpe_ratio(PAPER_SR, 1250, -3, 10, benchmark)
    assert psr == pytest.approx(right, abs=1e-12)
    assert abs(psr - wrong) > 1e-3


def test_psr_of_normal_returns_uses_the_lo_standard_error() -> None:
    # Normal returns: sigma(SR) = sqrt((1 + SR^2 / 2) / (T - 1)) (Lo 2002).
    sharpe, count = 0.1, 500
    z = sharpe / np.sqrt((1 + sharpe**2 / 2) / (count - 1))
    assert probabilistic_sharpe_ratio(sharpe, count) == pytest.approx(stats.norm.cdf(z))
    assert probabilistic_sharpe_ratio(0.0, count) == pytest.approx(0.5)
    assert probabilistic_sharpe_ratio(sharpe, count, benchmark_sharpe=sharpe) == pytest.approx(0.5)


def test_min_track_record_length_is_where_psr_reaches_the_confidence() -> None:
    length = minimum_track_record_length(PAPER_SR, -3, 10, confidence=0.95)
    assert probabilistic_sharpe_ratio(PAPER_SR, length, -3, 10) == pytest.approx(0.95)
    assert minimum_track_record_length(-0.1) == float("inf")
    # Fat left tails need a longer record than normal returns with the same Sharpe ratio.
    assert length > minimum_track_record_length(PAPER_SR)


def test_expected_maximum_is_close_to_the_simulated_maximum_of_normals() -> None:
    # E[max of 100 standard normals] = 2.5076 (tables); the approximation gives 2.5305.
    assert expected_maximum_sharpe(100, 1.0) == pytest.approx(2.5076, rel=0.01)
    assert expected_maximum_sharpe(1, 1.0) == 0.0


def test_luck_only_returns_are_not_significant_and_a_real_edge_is() -> None:
    rng = np.random.default_rng(7)
    luck = sharpe_significance(0.01 * rng.standard_normal(1000), n_trials=20)
    edge = sharpe_significance(0.002 + 0.01 * rng.standard_normal(1000), n_trials=20)
    assert luck["deflated_sharpe"] < 0.95 and luck["deflated_sharpe"] <= luck["probabilistic_sharpe"]
    assert edge["deflated_sharpe"] > 0.95
    assert edge["n_trials"] == 20 and edge["n_observations"] == 1000


def test_deflated_sharpe_of_the_papers_example_with_the_null_variance() -> None:
    # Without a measured spread of the trials' Sharpe ratios, each trial is taken as luck: the
    # variance of a zero-edge estimate over T observations, 1 / (T - 1). That is far narrower
    # than the paper's measured 0.5 / 250 (= 0.002 against 0.0008), so the benchmark is lower.
    null = 1.0 / 1249
    benchmark = expected_maximum_sharpe(100, null)
    quantile = (1 - 0.5772156649015329) * stats.norm.ppf(1 - 1 / 100) + 0.5772156649015329 * stats.norm.ppf(
        1 - 1 / (100 * np.e))
    assert benchmark == pytest.approx(np.sqrt(null) * quantile, rel=1e-12) and benchmark < 0.1132
    expected = stats.norm.cdf((PAPER_SR - benchmark) * np.sqrt(1249) / np.sqrt(1 + 3 * PAPER_SR + 9 / 4 * PAPER_SR**2))
    assert deflated_sharpe_ratio(PAPER_SR, 1250, 100, null, -3, 10) == pytest.approx(expected, abs=1e-12)
    assert expected > 0.9004  # luck-only trials deflate less than the paper's measured spread


def test_significance_uses_the_measured_trial_variance_when_given() -> None:
    rng = np.random.default_rng(3)
    returns = 0.001 + 0.01 * rng.standard_normal(1250)
    measured = sharpe_significance(returns, n_trials=100, sharpe_variance=PAPER_VARIANCE)
    null = sharpe_significance(returns, n_trials=100)
    assert measured["trials_sharpe_variance"] == PAPER_VARIANCE
    assert null["trials_sharpe_variance"] == pytest.approx(1 / 1249)
    assert measured["expected_max_sharpe_per_observation"] == pytest.approx(expected_maximum_sharpe(100, PAPER_VARIANCE))
    assert measured["deflated_sharpe"] < null["deflated_sharpe"]


def test_bootstrap_interval_covers_the_true_sharpe_and_a_real_difference_is_detected() -> None:
    rng = np.random.default_rng(4)
    covered, n = 0, 60
    for _ in range(n):
        returns = 0.05 + rng.standard_normal(500)  # true Sharpe 0.05 per observation
        interval = bootstrap_sharpe_interval(returns, 0.9, n_resamples=400, seed=int(rng.integers(1 << 30)))
        covered += interval["low"] <= 0.05 <= interval["high"]
    assert 0.8 <= covered / n <= 0.98  # about the nominal 90 %
    common = rng.standard_normal(1000)
    better = 0.1 + common + 0.3 * rng.standard_normal(1000)
    same = common + 0.3 * rng.standard_normal(1000)
    assert sharpe_difference_test(better, same, 1000)["p_value"] < 0.01
    assert sharpe_difference_test(same, better, 1000)["p_value"] > 0.5
    indices = stationary_bootstrap_indices(50, 4, 5.0, np.random.default_rng(0))
    assert indices.shape == (4, 50) and indices.min() >= 0 and indices.max() < 50
    # Mostly runs of consecutive observations: blocks of mean length 5.
    assert np.mean(np.diff(indices, axis=1) % 50 == 1) == pytest.approx(0.8, abs=0.1)
