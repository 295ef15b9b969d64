"""The cost model of a USDT-M perpetual: taker fees, slippage and funding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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

    @classmethod
    def free(cls) -> CostModel:
        """No fees, no slippage, no funding: for gross (before-cost) results."""
        return cls(taker_fee=0.0, slippage_bps=0.0, slippage_volatility_multiple=0.0,
                   charge_funding=False)
