"""The evaluation pipeline."""

from trading_engine.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
