"""Tuning: an Optuna study over the training hyper-parameters and the confidence threshold,
scored by the walk-forward validation Sharpe; the holdout is never read. Not in __default__."""

from kedro.pipeline import Node, Pipeline

from trading_engine.pipelines.tuning import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(
            func=nodes.run_tuning_study,
            inputs=["model_input", "params:training", "params:trading", "params:tuning"],
            outputs=["tuning_study_trials", "tuning_summary"],
            name="run_tuning_study",
        ),
        Node(func=nodes.tabulate_trials, inputs="tuning_study_trials", outputs="tuning_trials",
             name="tabulate_trials"),
        Node(func=nodes.select_tuned_parameters, inputs="tuning_study_trials",
             outputs=["tuned_parameters", "tuned_parameters_overrides"], name="select_tuned_parameters"),
        Node(func=nodes.plot_optimisation_history, inputs="tuning_study_trials",
             outputs="tuning_optimisation_history_plot", name="plot_optimisation_history"),
        Node(func=nodes.plot_parameter_importances, inputs="tuning_study_trials",
             outputs="tuning_parameter_importances_plot", name="plot_parameter_importances"),
        Node(func=nodes.plot_parallel_coordinate, inputs="tuning_study_trials",
             outputs="tuning_parallel_coordinate_plot", name="plot_parallel_coordinate"),
    ])
