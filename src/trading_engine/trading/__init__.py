"""The honest futures backtest: one trading rule, one cost model, one engine, shared by
training (early stopping), tuning (objective) and evaluation."""

from trading_engine.trading.costs import CostModel
from trading_engine.trading.engine import BacktestResult, simulate
from trading_engine.trading.rule import TradingRule, target_positions

__all__ = ["BacktestResult", "CostModel", "TradingRule", "simulate", "target_positions"]
