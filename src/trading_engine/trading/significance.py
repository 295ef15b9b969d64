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


def stationary_bootstrap_indices(n_observations: int, n_resamples: int, mean_block: float,
                                 rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n_observations) indices of Politis & Romano's (1994) stationary bootstrap:
    blocks of geometric length (mean `mean_block`) starting at uniform positions, wrapping at the
    end, so that the resamples keep the short-range dependence of the series."""
    if n_observations < 1 or n_resamples < 1:
        return np.zeros((max(n_resamples, 0), max(n_observations, 0)), dtype=np.int64)
    new_block = rng.random((n_resamples, n_observations)) < 1.0 / max(mean_block, 1.0)
    new_block[:, 0] = True
    starts = rng.integers(0, n_observations, size=(n_resamples, n_observations))
    position = np.broadcast_to(np.arange(n_observations), (n_resamples, n_observations))
    block_begin = np.maximum.accumulate(np.where(new_block, position, 0), axis=1)
    first = np.take_along_axis(starts, block_begin, axis=1)
    return (first + position - block_begin) % n_observations


def default_block_length(n_observations: int) -> float:
    """The mean block length of the bootstrap: n^(1/3), the rate that minimises the error of a
    block bootstrap's variance estimate (Hall, Horowitz & Jing 1995), at least 1."""
    return max(1.0, float(n_observations) ** (1.0 / 3.0))


def _sharpe_rows(samples: np.ndarray) -> np.ndarray:
    """Sharpe ratio per observation of each row; 0 for a row without variation."""
    deviation = samples.std(axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(deviation > 0, samples.mean(axis=1) / deviation, 0.0)


def bootstrap_sharpe_interval(returns: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000,
                              seed: int = 0, mean_block: float | None = None) -> dict[str, Any]:
    """A percentile confidence interval of the Sharpe ratio (per observation) from the stationary
    block bootstrap. None bounds with fewer than 3 observations."""
    values = np.asarray(returns, dtype=np.float64)
    if values.shape[0] < 3:
        return {"low": None, "high": None, "confidence": confidence, "n_resamples": 0, "mean_block": None}
    block = mean_block or default_block_length(values.shape[0])
    indices = stationary_bootstrap_indices(values.shape[0], n_resamples, block, np.random.default_rng(seed))
    sharpes = _sharpe_rows(values[indices])
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(sharpes, [tail, 1.0 - tail])
    return {"low": float(low), "high": float(high), "confidence": confidence, "n_resamples": n_resamples,
            "mean_block": block}


def sharpe_difference_test(first: np.ndarray, second: np.ndarray, n_resamples: int = 2000, seed: int = 0,
                           mean_block: float | None = None) -> dict[str, Any]:
    """Is the Sharpe ratio of `first` higher than that of `second`? Both are returns on the same
    observations (e.g. the same days), resampled together with the stationary block bootstrap so
    that their correlation is kept. Returns the difference (per observation) and the one-sided
    p-value: the share of resamples, recentred on the observed difference, in which the
    difference is at least the observed one (Ledoit & Wolf 2008's studentisation left out)."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if first.shape != second.shape:
        raise ValueError(f"paired returns differ in shape: {first.shape} and {second.shape}")
    observed = float(_sharpe_rows(first[None])[0] - _sharpe_rows(second[None])[0])
    if first.shape[0] < 3:
        return {"difference": observed, "p_value": None, "n_resamples": 0}
    block = mean_block or default_block_length(first.shape[0])
    indices = stationary_bootstrap_indices(first.shape[0], n_resamples, block, np.random.default_rng(seed))
    differences = _sharpe_rows(first[indices]) - _sharpe_rows(second[indices])
    # Under the null the difference is 0: centre the resampled differences on 0 and ask how often
    # luck alone gives at least the observed difference.
    p_value = float((1 + np.sum(differences - observed >= observed)) / (1 + n_resamples))
    return {"difference": observed, "p_value": p_value, "n_resamples": n_resamples, "mean_block": block}
