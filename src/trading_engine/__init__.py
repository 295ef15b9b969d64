"""Trading Engine: machine-learning research on crypto perpetual futures."""

__version__ = "0.1.0"
