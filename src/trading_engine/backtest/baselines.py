"""Baseline strategies, traded on the same bars, with the same engine and costs as the model.

Every function returns target positions decided at a bar's close (filled at the next open by
the engine), using information up to that close only:
- buy and hold (+1) and always short (-1);
- momentum: the sign of the last h-bar return, close[t] / close[t-h] - 1 (h: the horizon);
- mean reversion: minus the sign of the last one-bar return;
- a random signal with the model's turnover (a Markov chain over short / flat / long whose
  switching rate and state shares are the model's);
- a logistic regression on the model's features (P(up over h bars)), fitted per fold on that
  fold's training rows only, with a robust scaler fitted on the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression

from trading_engine.training.scaling import RobustScaler

STATES = np.array([-1.0, 0.0, 1.0])


def momentum_positions(close: pd.Series, horizon: int) -> pd.Series:
    """sign(close[t] / close[t - horizon] - 1); flat while the history is shorter than horizon."""
    past = close.shift(horizon)
    return np.sign(close / past - 1.0).fillna(0.0).rename("position")


def mean_reversion_positions(close: pd.Series) -> pd.Series:
    """-sign(close[t] / close[t - 1] - 1); flat on the first bar."""
    return (-np.sign(close / close.shift(1) - 1.0)).fillna(0.0).rename("position")


@dataclass(frozen=True)
class TurnoverProfile:
    """How a position series moves: the chance that the target changes from one bar to the next,
    the shares of short / flat / long bars, and the mean size of a non-flat position."""

    change_probability: float
    state_shares: np.ndarray  # (3,) over STATES
    size: float

    @classmethod
    def of(cls, positions: np.ndarray, segment_starts: np.ndarray) -> TurnoverProfile:
        positions = np.asarray(positions, dtype=np.float64)
        if positions.size == 0:
            return cls(0.0, np.array([0.0, 1.0, 0.0]), 1.0)
        continuing = ~np.asarray(segment_starts, dtype=bool)
        continuing[0] = False
        changed = np.zeros(positions.shape[0], dtype=bool)
        changed[1:] = positions[1:] != positions[:-1]
        change_probability = float(changed[continuing].mean()) if continuing.any() else 0.0
        signs = np.sign(positions).astype(np.int64) + 1
        shares = np.bincount(signs, minlength=3) / positions.shape[0]
        active = np.abs(positions[positions != 0])
        return cls(change_probability, shares, float(active.mean()) if active.size else 1.0)


def random_positions(profile: TurnoverProfile, segment_starts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random signal with the profile's expected turnover: at each bar the state is redrawn
    (from the state shares) with a probability chosen so that it changes as often as the model's;
    a new segment always starts with a fresh draw."""
    segment_starts = np.asarray(segment_starts, dtype=bool)
    n = segment_starts.shape[0]
    if n == 0:
        return np.zeros(0)
    shares = profile.state_shares / profile.state_shares.sum()
    change_on_redraw = 1.0 - float(np.sum(shares**2))
    redraw_probability = min(1.0, profile.change_probability / change_on_redraw) if change_on_redraw > 0 else 0.0
    redraw = rng.random(n) < redraw_probability
    redraw |= segment_starts
    redraw[0] = True
    draws = rng.choice(STATES.shape[0], size=n, p=shares)
    latest = np.maximum.accumulate(np.where(redraw, np.arange(n), 0))
    return STATES[draws[latest]] * profile.size


@dataclass(frozen=True)
class LogisticBaseline:
    """P(up over the horizon) from a logistic regression on robust-scaled features."""

    feature_names: tuple[str, ...]
    scaler: RobustScaler
    model: LogisticRegression | None  # None when the training rows have one class only
    constant: float

    @classmethod
    def fit(cls, features: pd.DataFrame, went_up: np.ndarray, regularisation: float = 1.0,
            max_iterations: int = 200) -> LogisticBaseline:
        """Fit the scaler and the regression on training rows only."""
        went_up = np.asarray(went_up, dtype=np.int64)
        values = features.to_numpy(dtype=np.float32)
        scaler = RobustScaler.fit(values)
        names = tuple(str(c) for c in features.columns)
        if np.unique(went_up).shape[0] < 2:
            return cls(names, scaler, None, float(went_up[0]) if went_up.size else 0.5)
        # Newton's method with a Cholesky solve: exact on this L2-penalised problem with many rows
        # and few (strongly collinear) features, it converges in a few iterations where lbfgs
        # stopped at max_iter short of the optimum.
        model = LogisticRegression(C=regularisation, solver="newton-cholesky", max_iter=max_iterations)
        model.fit(cls._scaled(scaler, values), went_up)
        return cls(names, scaler, model, float(went_up.mean()))

    @staticmethod
    def _scaled(scaler: RobustScaler, features: np.ndarray) -> np.ndarray:
        return scaler.transform(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))).numpy()

    def probability_up(self, features: np.ndarray) -> np.ndarray:
        """P(up) for rows of features in the order of `feature_names`."""
        if self.model is None or features.shape[0] == 0:
            return np.full(features.shape[0], self.constant)
        return self.model.predict_proba(self._scaled(self.scaler, features))[:, 1]
