"""Paper trading: the replayed ledger's positions marked to market by the backtest's engine and
cost model give, bar for bar, the equity of the backtest of the same bars: both the paper
pipeline's own backtest and the evaluation's path on the whole history's model input."""

from __future__ import annotations

import numpy as np

from trading_engine.data.storage import SeriesStore
from trading_engine.live.replay import backtest_decisions
from trading_engine.pipelines.paper.nodes import mark_to_market, plot_paper_vs_backtest
from trading_engine.trading.metrics import equity_curve
from trading_engine.trading.portfolio import align_market, portfolio_returns, trade_positions


def test_paper_equity_equals_the_backtests_on_the_same_bars(replayed, model_input):
    deployed, ledger, folder, bars = replayed

    paper_bars, equity, metrics = mark_to_market(ledger, SeriesStore(folder / "candles"),
                                                 SeriesStore(folder / "funding"), deployed, {})

    comparison = metrics["comparison"]
    assert comparison["positions_equal"] and comparison["bars"] == len(ledger.read())
    assert comparison["max_equity_difference"] == 0.0
    np.testing.assert_array_equal(equity["paper_equity"], equity["backtest_equity"])
    # The same as the evaluation's path: the backtest's positions on the whole history's model
    # input, traded by trade_positions (equal here too; 1e-12 allows for its funding, a difference
    # of running sums where paper reads the settled rates).
    backtest = backtest_decisions(deployed, model_input, bars[0], bars[-1]).assign(fold=0, segment="evaluation")
    aligned = align_market(backtest, model_input)
    evaluated = portfolio_returns(trade_positions(aligned, aligned["target_position"].to_numpy(), deployed.costs))
    np.testing.assert_allclose(equity["paper_equity"], equity_curve(evaluated.to_numpy()), rtol=0, atol=1e-12)
    # Real trading, costs and funding: the paper metrics are the backtest's metrics.
    paper = metrics["paper"]
    assert paper["n_trades"] > 3 and paper["fees"] > 0 and paper["funding"] != 0
    assert set(paper) == set(comparison["backtest"])
    assert (paper_bars["turnover"] > 0).sum() > 3
    assert plot_paper_vs_backtest(equity).axes
