"""The training pipeline."""

from trading_engine.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
