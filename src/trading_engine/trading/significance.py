"""Is a Sharpe ratio more than luck? PSR, DSR and MinTRL (Bailey & López de Prado).

- Probabilistic Sharpe Ratio (Bailey & López de Prado 2012, "The Sharpe Ratio Efficient
  Frontier"): the probability that the true Sharpe ratio exceeds a benchmark SR*, given the
  estimate SR from T observations with skewness g3 and (non-excess) kurtosis g4:

      PSR(SR*) = Z[ (SR - SR*) * sqrt(T - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR^2) ]

  Note the (g4 - 1) / 4 with the plain kurtosis (3 for a normal law), i.e. (excess + 2) / 4;
  a common package bug subtracts 3 twice.
- Deflated Sharpe Ratio (Bailey & López de Prado 2014): PSR against the Sharpe ratio that the
  best of N independent trials would reach by luck alone,

      SR0 = sqrt(V[SR_n]) * ((1 - gamma) * Z^-1(1 - 1/N) + gamma * Z^-1(1 - 1/(N e))),

  gamma the Euler-Mascheroni constant and V[SR_n] the variance of the trials' Sharpe ratios.
- Minimum Track Record Length: the T at which PSR(SR*) reaches a confidence level,

      MinTRL = 1 + (1 - g3 * SR + (g4 - 1) / 4 * SR^2) * (Z^-1(confidence) / (SR - SR*))^2.

Every Sharpe ratio here is per observation (not annualised), in the units of the T observations:
the evaluation feeds daily returns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

EULER_GAMMA = 0.5772156649015329


def return_moments(returns: np.ndarray) -> tuple[float, float, float, int]:
    """(Sharpe ratio per observation, skewness, kurtosis (non-excess, 3 for a normal law), T)
    of a return series; Sharpe 0 and normal moments when it has no variation."""
    values = np.asarray(returns, dtype=np.float64)
    count = int(values.shape[0])
    if count < 2 or not np.isfinite(values).all() or values.std(ddof=1) == 0:
        return 0.0, 0.0, 3.0, count
    sharpe = float(values.mean() / values.std(ddof=1))
    return sharpe, float(stats.skew(values)), float(stats.kurtosis(values, fisher=False)), count


def sharpe_standard_error(sharpe: float, n_observations: int, skewness: float = 0.0,
                          kurtosis: float = 3.0) -> float:
    """sqrt((1 - g3 * SR + (g4 - 1) / 4 * SR^2) / (T - 1)): the standard deviation of the Sharpe
    estimate (non-normal returns; Mertens 2002, as used by Bailey & López de Prado)."""
    variance_factor = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    return float(np.sqrt(max(variance_factor, 0.0) / max(n_observations - 1, 1)))


def probabilistic_sharpe_ratio(sharpe: float, n_observations: int, skewness: float = 0.0,
                               kurtosis: float = 3.0, benchmark_sharpe: float = 0.0) -> float:
    """P(true Sharpe > benchmark_sharpe), both per observation. 0.5 at SR = SR*; nan with T < 2."""
    if n_observations < 2:
        return float("nan")
    error = sharpe_standard_error(sharpe, n_observations, skewness, kurtosis)
    if error == 0:
        return 0.5 if sharpe == benchmark_sharpe else float(sharpe > benchmark_sharpe)
    return float(stats.norm.cdf((sharpe - benchmark_sharpe) / error))


def expected_maximum_sharpe(n_trials: int, sharpe_variance: float, mean_sharpe: float = 0.0) -> float:
    """E[max of N trials' Sharpe ratios] when they are independent draws with the given mean and
    variance (the false-strategy theorem); the mean itself for a single trial."""
    if n_trials <= 1:
        return float(mean_sharpe)
    quantile = ((1.0 - EULER_GAMMA) * stats.norm.ppf(1.0 - 1.0 / n_trials)
                + EULER_GAMMA * stats.norm.ppf(1.0 - 1.0 / (n_trials * np.e)))
    return float(mean_sharpe + np.sqrt(sharpe_variance) * quantile)


def deflated_sharpe_ratio(sharpe: float, n_observations: int, n_trials: int, sharpe_variance: float,
                          skewness: float = 0.0, kurtosis: float = 3.0) -> float:
    """PSR against the expected maximum Sharpe ratio of `n_trials` luck-only trials whose Sharpe
    ratios have variance `sharpe_variance` (all per observation)."""
    benchmark = expected_maximum_sharpe(n_trials, sharpe_variance)
    return probabilistic_sharpe_ratio(sharpe, n_observations, skewness, kurtosis, benchmark)


def minimum_track_record_length(sharpe: float, skewness: float = 0.0, kurtosis: float = 3.0,
                                benchmark_sharpe: float = 0.0, confidence: float = 0.95) -> float:
    """Observations needed for PSR(benchmark) to reach `confidence`; +inf when SR <= SR*."""
    if sharpe <= benchmark_sharpe:
        return float("inf")
    variance_factor = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    return float(1.0 + variance_factor * (stats.norm.ppf(confidence) / (sharpe - benchmark_sharpe)) ** 2)


def sharpe_significance(returns: np.ndarray, n_trials: int, sharpe_variance: float | None = None,
                        confidence: float = 0.95) -> dict[str, Any]:
    """PSR(0), DSR and MinTRL of one return series (e.g. daily returns).

    `sharpe_variance` is V[SR_n], the variance of the trials' Sharpe ratios. When unknown (None)
    it is 1 / (T - 1): the variance of the Sharpe estimate of a strategy with no edge over T
    observations, i.e. the trials are taken as independent luck-only strategies.
    """
    sharpe, skewness, kurtosis, count = return_moments(returns)
    variance = 1.0 / max(count - 1, 1) if sharpe_variance is None else float(sharpe_variance)
    n_trials = max(int(n_trials), 1)
    return {
        "sharpe_per_observation": sharpe,
        "skewness": skewness,
        "kurtosis": kurtosis,
        "n_observations": count,
        "probabilistic_sharpe": probabilistic_sharpe_ratio(sharpe, count, skewness, kurtosis),
        "deflated_sharpe": deflated_sharpe_ratio(sharpe, count, n_trials, variance, skewness, kurtosis),
        "expected_max_sharpe_per_observation": expected_maximum_sharpe(n_trials, variance),
        "trials_sharpe_variance": variance,
        "n_trials": n_trials,
        "min_track_record_length": minimum_track_record_length(sharpe, skewness, kurtosis,
                                                               confidence=confidence),
        "confidence": confidence,
    }
