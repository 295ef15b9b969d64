"""Ingestion: candles and funding rates from the configured source into the store (incremental,
crash-safe), consolidated into `raw_candles` / `raw_funding_rates`, then validated into
`candles`, `quarantined_candles`, `funding_rates` and the `data_quality_report`."""

from kedro.pipeline import Node, Pipeline

from trading_engine.pipelines.ingestion.nodes import (
    ingest_candles,
    ingest_funding_rates,
    report_data_quality,
    validate_candles,
    validate_funding_rates,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=ingest_candles,
                inputs=["candle_store", "params:ingestion"],
                outputs=["raw_candles", "candle_ingestion_report"],
                name="ingest_candles",
            ),
            Node(
                func=ingest_funding_rates,
                inputs=["funding_store", "params:ingestion"],
                outputs=["raw_funding_rates", "funding_ingestion_report"],
                name="ingest_funding_rates",
            ),
            Node(
                func=validate_candles,
                inputs="raw_candles",
                outputs=["candles", "quarantined_candles", "candle_quality"],
                name="validate_candles",
            ),
            Node(
                func=validate_funding_rates,
                inputs="raw_funding_rates",
                outputs=["funding_rates", "funding_quality"],
                name="validate_funding_rates",
            ),
            Node(
                func=report_data_quality,
                inputs=[
                    "candle_quality",
                    "funding_quality",
                    "candle_ingestion_report",
                    "funding_ingestion_report",
                ],
                outputs="data_quality_report",
                name="report_data_quality",
            ),
        ]
    )
