"""Plots and the human report of the backtest."""
