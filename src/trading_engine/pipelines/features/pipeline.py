"""The features pipeline: candles (+ funding) -> feature_tables -> model_input, feature_report."""

from kedro.pipeline import Node, Pipeline

from trading_engine.pipelines.features.nodes import (
    build_model_inputs,
    compute_feature_tables,
    report_features,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=compute_feature_tables,
                inputs=["candles", "params:features", "funding_rates"],
                outputs="feature_tables",
                name="compute_feature_tables",
            ),
            Node(
                func=build_model_inputs,
                inputs=["feature_tables", "candles", "funding_rates", "params:features"],
                outputs="model_input",
                name="build_model_inputs",
            ),
            Node(
                func=report_features,
                inputs=["feature_tables", "params:features"],
                outputs="feature_report",
                name="report_features",
            ),
        ]
    )
