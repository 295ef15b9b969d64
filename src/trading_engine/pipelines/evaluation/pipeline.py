"""Evaluation: the model's predictions and the forecasting baselines traded with the shared rule
and costs, each with its rule chosen on validation rows, beside the position baselines, on the
walk-forward out-of-sample period and the holdout; metrics, significance, plots, report."""

from kedro.pipeline import Node, Pipeline

from trading_engine.pipelines.evaluation import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(
            func=nodes.forecast_baselines,
            inputs=["predictions", "model_input", "training_summary", "params:evaluation.settings"],
            outputs="baseline_forecasts",
            name="forecast_baselines",
        ),
        Node(
            func=nodes.select_trading_rules,
            inputs=["predictions", "baseline_forecasts", "model_input", "training_summary", "params:trading",
                    "params:evaluation.rule_selection", "params:tuning"],
            outputs="rule_selection",
            name="select_trading_rules",
        ),
        Node(
            func=nodes.count_configurations_tried,
            inputs=["params:tuning", "rule_selection", "training_summary"],
            outputs="configurations_tried",
            name="count_configurations_tried",
        ),
        Node(
            func=nodes.evaluate_strategies,
            inputs=["predictions", "baseline_forecasts", "model_input", "training_summary", "rule_selection",
                    "configurations_tried", "params:trading", "params:evaluation.settings"],
            outputs=["backtest_metrics", "backtest_daily_returns"],
            name="evaluate_strategies",
        ),
        Node(func=nodes.plot_timeline, inputs=["training_summary", "configurations_tried"],
             outputs="backtest_timeline_plot", name="plot_timeline"),
        Node(func=nodes.plot_equity_curves, inputs="backtest_daily_returns",
             outputs="backtest_equity_curves_plot", name="plot_equity_curves"),
        Node(func=nodes.plot_drawdown, inputs="backtest_daily_returns",
             outputs="backtest_drawdown_plot", name="plot_drawdown"),
        Node(func=nodes.plot_rolling_sharpe, inputs=["backtest_daily_returns", "params:evaluation.report"],
             outputs="backtest_rolling_sharpe_plot", name="plot_rolling_sharpe"),
        Node(func=nodes.plot_calibration, inputs="backtest_metrics",
             outputs="backtest_calibration_plot", name="plot_calibration"),
        Node(func=nodes.plot_coverage_precision, inputs="backtest_metrics",
             outputs="backtest_coverage_precision_plot", name="plot_coverage_precision"),
        Node(func=nodes.write_backtest_report, inputs="backtest_metrics", outputs="backtest_report",
             name="write_backtest_report"),
        # Depends on the report, so it runs after every plot: the last lines of `kedro run`.
        Node(func=nodes.log_backtest_summary,
             inputs=["backtest_metrics", "backtest_report", "params:evaluation.report"],
             outputs=None, name="log_backtest_summary"),
    ])
