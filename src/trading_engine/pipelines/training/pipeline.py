"""Training: walk-forward folds of one pooled model, early-stopped on the validation Sharpe."""

from kedro.pipeline import Node, Pipeline

from trading_engine.pipelines.training.nodes import train_fold_models


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(
            func=train_fold_models,
            inputs=["model_input", "params:training", "params:trading"],
            outputs=["fold_models", "predictions", "training_log", "training_summary"],
            name="train_fold_models",
        ),
    ])
