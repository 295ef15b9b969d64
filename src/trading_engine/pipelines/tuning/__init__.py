"""The tuning pipeline (not part of __default__): `kedro run --pipelines tuning`."""

from trading_engine.pipelines.tuning.pipeline import create_pipeline

__all__ = ["create_pipeline"]
