"""Signals: the target position of every series for the last closed bar, written to the signal
ledger (`kedro run --pipelines signals`; every bar: `python -m trading_engine signals --every 5m`).
No order is sent to any exchange and no API key is needed."""

from kedro.pipeline import Node, Pipeline

from trading_engine.pipelines.signals import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(
            func=nodes.generate_signals,
            inputs=["candle_store", "funding_store", "deployed_model", "signal_ledger", "params:signals",
                    "params:ingestion"],
            outputs="signals_report",
            name="generate_signals",
        ),
    ])
