"""The trading rule: from model predictions to a target position, decided at a bar's close.

This is the one rule of the project. Training's early stopping, the tuning objective and the
evaluation all call `target_positions`, so a model is selected by the same trades it is
judged by.

Rule: the direction is the sign of P(up) - P(down). The trade is taken only when
 - |P(up) - P(down)| >= min_probability_edge, and
 - confidence >= confidence_threshold (the confidence head's estimate that the call is right).
Otherwise the position is flat. With size_by_confidence the size is the confidence itself
(a number in [0, 1]), else 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trading_engine.params import known_params


@dataclass(frozen=True)
class TradingRule:
    confidence_threshold: float = 0.0
    min_probability_edge: float = 0.0
    size_by_confidence: bool = False
    allow_short: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must lie in [0, 1], got {self.confidence_threshold}")
        if not 0.0 <= self.min_probability_edge <= 1.0:
            raise ValueError(f"min_probability_edge must lie in [0, 1], got {self.min_probability_edge}")

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> TradingRule:
        return cls(**known_params(params, cls, "trading-rule parameters"))


def target_positions(
    prob_down: np.ndarray,
    prob_up: np.ndarray,
    confidence: np.ndarray,
    rule: TradingRule,
) -> np.ndarray:
    """Target position in [-1, 1] for each bar, decided with information up to its close.

    NaN inputs (no prediction) give a flat position.
    """
    prob_down = np.asarray(prob_down, dtype=np.float64)
    prob_up = np.asarray(prob_up, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    edge = prob_up - prob_down
    with np.errstate(invalid="ignore"):
        take = (np.abs(edge) >= rule.min_probability_edge) & (confidence >= rule.confidence_threshold)
    direction = np.sign(edge)
    if not rule.allow_short:
        direction = np.maximum(direction, 0.0)
    size = np.clip(confidence, 0.0, 1.0) if rule.size_by_confidence else 1.0
    positions = np.where(take, direction * size, 0.0)
    return np.nan_to_num(positions, nan=0.0)
