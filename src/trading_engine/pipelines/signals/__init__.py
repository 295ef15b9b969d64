"""The signals pipeline."""

from trading_engine.pipelines.signals.pipeline import create_pipeline

__all__ = ["create_pipeline"]
