"""Features pipeline: causal, scale-free features, targets and the model input."""

from trading_engine.pipelines.features.pipeline import create_pipeline

__all__ = ["create_pipeline"]
