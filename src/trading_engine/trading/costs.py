"""The cost model of a USDT-M perpetual: taker fees, slippage and funding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trading_engine.params import known_params


@dataclass(frozen=True)
class CostModel:
    """Costs charged by the backtest, as fractions of traded or held notional.

    taker_fee: fee per side (0.0005 = 0.05%, Binance's default taker rate).
    slippage_bps: fixed slippage per side, in basis points of the fill price.
    slippage_volatility_multiple: extra slippage per side, as a multiple of the bar's
        absolute open-to-open return of the previous bar (0 turns it off). Known at fill time.
    charge_funding: charge (or pay) the funding rate on positions held at funding times.
    """

    taker_fee: float = 0.0005
    slippage_bps: float = 1.0
    slippage_volatility_multiple: float = 0.0
    charge_funding: bool = True

    def __post_init__(self) -> None:
        for name in ("taker_fee", "slippage_bps", "slippage_volatility_multiple"):
            if getattr(self, name) < 0:
                raise ValueError(f"CostModel.{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> CostModel:
        """Build from a parameters mapping; unknown keys are an error, missing keys default."""
        return cls(**known_params(params, cls, "cost parameters"))

    def round_trip_cost(self, open_: np.ndarray, close: np.ndarray) -> np.ndarray:
        """What opening a position at a bar's close and closing it later costs, as a fraction of
        its notional, as known at that close: fees and slippage on both sides. The volatility
        part of the slippage uses the bar's own |close / open - 1|, the latest move known when
        the next open fills. Funding is not in it: it is a holding cost of either sign."""
        per_side = self.taker_fee + self.slippage_bps * 1e-4
        if self.slippage_volatility_multiple > 0:
            move = np.abs(np.asarray(close, dtype=np.float64) / np.asarray(open_, dtype=np.float64) - 1.0)
            return 2.0 * (per_side + self.slippage_volatility_multiple * np.nan_to_num(move))
        return np.full(np.shape(open_), 2.0 * per_side)

    @classmethod
    def free(cls) -> CostModel:
        """No fees, no slippage, no funding: for gross (before-cost) results."""
        return cls(taker_fee=0.0, slippage_bps=0.0, slippage_volatility_multiple=0.0,
                   charge_funding=False)
