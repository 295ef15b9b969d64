"""The deploy pipeline."""

from trading_engine.pipelines.deploy.pipeline import create_pipeline

__all__ = ["create_pipeline"]
