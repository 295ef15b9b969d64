"""The paper pipeline."""

from trading_engine.pipelines.paper.pipeline import create_pipeline

__all__ = ["create_pipeline"]
