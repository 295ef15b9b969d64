"""Replay: history replayed one bar at a time through the signals run, against the backtest of
the same bars by the deployed model (`kedro run --pipelines replay`): the positions must be
equal, bar for bar and exactly."""

from kedro.pipeline import Node, Pipeline

from trading_engine.pipelines.replay import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(
            func=nodes.replay_deployed_model,
            inputs=["candle_store", "funding_store", "model_input", "deployed_model", "params:replay",
                    "params:signals"],
            outputs=["replay_decisions", "replay_report"],
            name="replay_deployed_model",
        ),
        Node(
            func=nodes.check_replay_parity,
            inputs="replay_report",
            outputs=None,
            name="check_replay_parity",
        ),
    ])
