"""The ingestion pipeline: Binance USDT-M candles (or the synthetic demo, or files) into a
validated Parquet layer."""

from trading_engine.pipelines.ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
