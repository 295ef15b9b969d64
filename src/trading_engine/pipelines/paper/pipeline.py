"""Paper trading: the signal ledger's positions marked to market on the candles after each
decision (next-bar fills, fees, slippage, funding) by the backtest's engine and cost model,
beside the backtest of the same bars (`kedro run --pipelines paper`)."""

from kedro.pipeline import Node, Pipeline

from trading_engine.pipelines.paper import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(
            func=nodes.mark_to_market,
            inputs=["signal_ledger", "candle_store", "funding_store", "deployed_model", "params:signals"],
            outputs=["paper_bars", "paper_equity", "paper_metrics"],
            name="mark_to_market",
        ),
        Node(
            func=nodes.plot_paper_vs_backtest,
            inputs="paper_equity",
            outputs="paper_vs_backtest_plot",
            name="plot_paper_vs_backtest",
        ),
    ])
