"""Baseline strategies, traded on the same bars, with the same engine and costs as the model.

Two kinds:
- **Forecasting baselines** give an expected log return over the model's horizon h at each bar
  and then trade through the same rule family as the model, with their own rule chosen on the
  same validation rows from the same grid (evaluation.selection). Each is fitted per fold on
  that fold's training rows only:
  - momentum: b x log(close[t] / close[t-h]), b = max(0, the least-squares slope of the h-bar
    return on the last h-bar return) (a trend follower that never turns contrarian);
  - mean reversion: b x log(close[t] / close[t-1]), b = min(0, the slope on the last 1-bar return);
  - logistic: P(up over h bars) from a logistic regression on the model's features, turned into
    an expected return p x E[r | up] + (1 - p) x E[r | down] with the training rows' conditional
    means;
  - gradient boosting: scikit-learn's HistGradientBoostingRegressor on the model's features and
    the h-bar return, early-stopped on the fold's validation rows: what a competent quant builds in
    an afternoon.
- **Position baselines** give target positions directly: buy and hold (+1), always short (-1),
  flat (0), a volatility-targeted trend follower (the classic CTA rule: a blend of 1-, 4- and
  12-week trends, rebalanced daily to a 20 % annual volatility with a leverage cap), and random
  signals with the model's turnover.

Every value at bar t uses information up to t's close only (tested by truncation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression

from trading_engine.features.scaling import RobustScaler
from trading_engine.trading.calendar import DAYS_PER_YEAR, bar_length

STATES = np.array([-1.0, 0.0, 1.0])


def last_return(close: pd.Series, bars: int) -> pd.Series:
    """log(close[t] / close[t - bars]); NaN while the history is shorter."""
    return np.log(close / close.shift(bars)).rename(f"return_{bars}")


@dataclass(frozen=True)
class SlopeForecast:
    """Expected h-bar log return = slope x the last `lookback`-bar log return; the slope is the
    least-squares fit (through the origin) on training rows, clipped to one sign."""

    lookback: int
    slope: float

    @classmethod
    def fit(cls, past_return: np.ndarray, future_return: np.ndarray, lookback: int, sign: float) -> SlopeForecast:
        past_return, future_return = np.asarray(past_return, np.float64), np.asarray(future_return, np.float64)
        known = np.isfinite(past_return) & np.isfinite(future_return)
        denominator = float(np.sum(past_return[known] ** 2))
        slope = float(np.sum(past_return[known] * future_return[known]) / denominator) if denominator > 0 else 0.0
        return cls(lookback, max(sign * slope, 0.0) * sign)

    def expected_return(self, close: pd.Series) -> pd.Series:
        return (self.slope * last_return(close, self.lookback)).rename("pred_return")


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


@dataclass(frozen=True)
class ProbabilityForecast:
    """An expected return from P(up): p x mean(r | up) + (1 - p) x mean(r | not up), the
    conditional means of the training rows' h-bar returns."""

    classifier: LogisticBaseline
    mean_up: float
    mean_down: float

    @classmethod
    def fit(cls, features: pd.DataFrame, future_return: np.ndarray, regularisation: float = 1.0) -> ProbabilityForecast:
        future_return = np.asarray(future_return, dtype=np.float64)
        up = future_return > 0
        classifier = LogisticBaseline.fit(features, up.astype(np.int64), regularisation)
        mean_up = float(future_return[up].mean()) if up.any() else 0.0
        mean_down = float(future_return[~up].mean()) if (~up).any() else 0.0
        return cls(classifier, mean_up, mean_down)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.classifier.feature_names

    def expected_return(self, features: np.ndarray) -> np.ndarray:
        probability = self.classifier.probability_up(features)
        return probability * self.mean_up + (1.0 - probability) * self.mean_down


@dataclass(frozen=True)
class GradientBoostingForecast:
    """The h-bar return regressed on the features with gradient-boosted trees (least squares),
    early-stopped on the validation rows given to `fit` (never on later rows)."""

    feature_names: tuple[str, ...]
    model: HistGradientBoostingRegressor

    @classmethod
    def fit(cls, train_features: pd.DataFrame, train_return: np.ndarray, validation_features: pd.DataFrame | None,
            validation_return: np.ndarray | None, seed: int = 0, max_iterations: int = 300) -> GradientBoostingForecast:
        """Early-stopped on the validation rows when given; else exactly `max_iterations` trees."""
        stops = validation_features is not None
        model = HistGradientBoostingRegressor(
            learning_rate=0.05, max_iter=max_iterations, max_leaf_nodes=15, min_samples_leaf=200,
            l2_regularization=1.0, early_stopping=stops, n_iter_no_change=20, random_state=seed)
        validation = ({"X_val": validation_features.to_numpy(dtype=np.float32),
                       "y_val": np.asarray(validation_return, dtype=np.float64)} if stops else {})
        model.fit(train_features.to_numpy(dtype=np.float32), np.asarray(train_return, dtype=np.float64), **validation)
        return cls(tuple(str(c) for c in train_features.columns), model)

    def expected_return(self, features: np.ndarray) -> np.ndarray:
        if features.shape[0] == 0:
            return np.zeros(0)
        return self.model.predict(np.asarray(features, dtype=np.float32))


def trend_following_positions(close: pd.Series, lookback_days: tuple[int, ...] = (7, 28, 84),
                              target_volatility: float = 0.2, max_leverage: float = 2.0,
                              volatility_halflife_days: int = 30, bar: pd.Timedelta | None = None) -> pd.Series:
    """The classic CTA rule on one series: at each UTC day's last bar (the bar that ends at
    midnight; `bar` is the bar length, by default the median spacing), the mean of the signs of
    the trends over `lookback_days` (log(C_d / C_{d-L}) of the day closes), times target_volatility
    / the EWMA volatility of the daily log returns (annualised), capped at +-max_leverage; held
    until the next day's last bar. Flat until the longest trend is known."""
    index = pd.DatetimeIndex(close.index)
    days = index.floor("D")
    # The clock, not the next row, says which bar closes the day: a value at t never reads t + 1.
    last_of_day = np.asarray((index + (bar if bar is not None else bar_length(index))).floor("D") != days)
    day_close = pd.Series(close.to_numpy(dtype=np.float64)[last_of_day], index=index[last_of_day])
    calendar = pd.Series(day_close.to_numpy(), index=days[last_of_day])  # one close per day, by date
    signals = []
    for lookback in lookback_days:
        past = calendar.reindex(calendar.index - pd.Timedelta(days=lookback)).to_numpy()
        signals.append(np.sign(np.log(calendar.to_numpy() / past)))
    trend = np.mean(signals, axis=0)  # NaN until the longest look-back is known
    daily_log_return = np.log(calendar / calendar.reindex(calendar.index - pd.Timedelta(days=1)).to_numpy())
    volatility = daily_log_return.ewm(halflife=volatility_halflife_days, min_periods=10).std().to_numpy()
    weight = np.clip(trend * target_volatility / (volatility * np.sqrt(DAYS_PER_YEAR)), -max_leverage, max_leverage)
    decided = pd.Series(np.nan_to_num(weight, nan=0.0, posinf=0.0, neginf=0.0), index=day_close.index)
    return decided.reindex(index, method="ffill").fillna(0.0).rename("position")


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
