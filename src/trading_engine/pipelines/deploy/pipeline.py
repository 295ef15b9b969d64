"""Deploy: the configuration the evaluation chose, refitted on every bar available (purged at the
end), saved as a versioned artifact that the `deployed` pointer names (`kedro run --pipelines
deploy`, after the evaluation; rollback: `python -m trading_engine rollback`)."""

from kedro.pipeline import Node, Pipeline

from trading_engine.pipelines.deploy import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(
            func=nodes.choose_deployment,
            inputs=["rule_selection", "backtest_metrics", "training_summary", "params:trading", "params:deploy"],
            outputs="deployment_choice",
            name="choose_deployment",
        ),
        Node(
            func=nodes.refit_deployed_model,
            inputs=["model_input", "deployment_choice"],
            outputs="deployed_weights",
            name="refit_deployed_model",
        ),
        Node(
            func=nodes.package_deployed_model,
            inputs=["deployed_weights", "deployment_choice", "params:features"],
            outputs=["deployed_model", "deployed_model_card"],
            name="package_deployed_model",
        ),
    ])
