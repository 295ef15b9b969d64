"""Training: the fold layout; one pooled model per walk-forward fold, early-stopped on the
validation Sharpe; the holdout's model refitted on every bar before it; their predictions."""

from kedro.pipeline import Node, Pipeline

from trading_engine.pipelines.training import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(
            func=nodes.lay_out_folds,
            inputs=["model_input", "params:training"],
            outputs="fold_layout",
            name="lay_out_folds",
        ),
        Node(
            func=nodes.train_fold_models,
            inputs=["model_input", "fold_layout", "params:training", "params:trading"],
            outputs=["fold_models", "fold_predictions", "training_log", "training_summary"],
            name="train_fold_models",
        ),
        Node(
            func=nodes.refit_holdout_model,
            inputs=["model_input", "fold_layout", "fold_models", "params:training"],
            outputs=["holdout_model", "holdout_predictions"],
            name="refit_holdout_model",
        ),
        Node(
            func=nodes.combine_predictions,
            inputs=["fold_predictions", "holdout_predictions"],
            outputs="predictions",
            name="combine_predictions",
        ),
    ])
