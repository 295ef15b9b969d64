"""The replay pipeline."""

from trading_engine.pipelines.replay.pipeline import create_pipeline

__all__ = ["create_pipeline"]
