"""The trading core: one cost-aware trading rule, one cost model, one engine, the portfolio, the
metrics and the significance math, shared by training (early stopping), tuning (objective),
evaluation and live signals. It imports nothing from training or evaluation."""

from trading_engine.trading.costs import CostModel
from trading_engine.trading.engine import BacktestResult, simulate
from trading_engine.trading.rule import (
    FLAT,
    NOT_TRADING,
    RuleState,
    TradingRule,
    continue_positions,
    target_positions,
)

__all__ = ["FLAT", "NOT_TRADING", "BacktestResult", "CostModel", "RuleState", "TradingRule", "continue_positions",
           "simulate", "target_positions"]
