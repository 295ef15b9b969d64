"""Baselines: causal (truncation-invariant), the random signal has the model's turnover, the fitted
baselines learn only from each fold's training rows, the trend follower targets its volatility."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from tests.evaluation.builders import HORIZON, evaluation_inputs, market_frame
from trading_engine.evaluation.backtest import (
    DailyPortfolio,
    EvaluationSettings,
    fit_baseline_forecasts,
)
from trading_engine.evaluation.baselines import (
    LogisticBaseline,
    SlopeForecast,
    TurnoverProfile,
    last_return,
    random_positions,
    trend_following_positions,
)
from trading_engine.trading import CostModel
from trading_engine.trading.engine import simulate
from trading_engine.trading.metrics import daily_returns, sharpe_ratio
from trading_engine.trading.portfolio import align_market, portfolio_returns, trade_positions


def test_signals_and_trend_following_are_invariant_to_truncation() -> None:
    frame = market_frame(40_000, seed=0, freq="15min")  # about 400 days
    close = frame["close"]
    for signal in (lambda c: last_return(c, 5), lambda c: last_return(c, 1), trend_following_positions):
        full = signal(close)
        truncated = signal(close.iloc[:30_000])
        np.testing.assert_array_equal(full.iloc[:30_000].to_numpy(), truncated.to_numpy())
    trend = trend_following_positions(close)
    assert trend.iloc[: 84 * 96].eq(0).all()  # flat until the 12-week trend is known
    assert trend.abs().max() <= 2.0 and trend.ne(0).mean() > 0.5


def test_random_signal_has_the_models_turnover_and_state_shares() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    model = np.repeat(rng.choice([-1.0, 0.0, 1.0], n // 20, p=[0.3, 0.4, 0.3]), 20)  # changes every ~20 bars
    starts = np.zeros(n, dtype=bool)
    starts[[0, n // 2]] = True
    profile = TurnoverProfile.of(model, starts)
    draws = random_positions(profile, starts, rng)
    changes = np.mean(draws[1:] != draws[:-1])
    assert abs(changes - profile.change_probability) < 0.1 * profile.change_probability
    shares = np.bincount(np.sign(draws).astype(int) + 1, minlength=3) / n
    np.testing.assert_allclose(shares, profile.state_shares, atol=0.03)


def test_perfect_foresight_is_huge_and_a_random_signal_loses_its_costs() -> None:
    frame = market_frame(20_000, seed=1)
    open_, close = frame["open"].to_numpy(), frame["close"].to_numpy()
    next_move = np.sign(np.append(open_[2:] / open_[1:-1] - 1.0, [0.0, 0.0]))  # the bar the position is held in
    foresight = simulate(next_move, open_, close, CostModel())
    assert sharpe_ratio(foresight.net_return, 365 * 288) > 50
    rng = np.random.default_rng(2)
    noise = rng.choice([-1.0, 1.0], len(open_))
    gross = simulate(noise, open_, close, CostModel.free()).net_return
    net = simulate(noise, open_, close, CostModel()).net_return
    assert abs(gross.mean()) < 3 * gross.std() / np.sqrt(len(gross))  # about zero before costs
    # after costs it loses about one turnover's worth of fees and slippage per bar
    assert net.mean() < gross.mean() - 0.9 * 0.0006 * np.abs(np.diff(noise)).mean()


def test_logistic_baseline_learns_a_planted_feature_from_training_rows_only() -> None:
    frame = market_frame(4000, seed=3)
    train = frame.iloc[:2000].dropna(subset=[f"target_binary_{HORIZON}"])
    features = ["feat_noise", "feat_hint"]
    model = LogisticBaseline.fit(train[features], train[f"target_binary_{HORIZON}"].to_numpy())
    test = frame.iloc[2500:3900]
    up = model.probability_up(test[features].to_numpy())
    accuracy = np.mean((up > 0.5) == (test[f"target_binary_{HORIZON}"].to_numpy() == 1))
    assert accuracy > 0.65
    changed = frame.copy()
    changed.iloc[2000:, :2] = 0.0  # later rows do not enter the fit
    refit = LogisticBaseline.fit(changed.iloc[:2000].dropna(subset=[f"target_binary_{HORIZON}"])[features],
                                 train[f"target_binary_{HORIZON}"].to_numpy())
    np.testing.assert_allclose(refit.probability_up(test[features].to_numpy()), up)
    one_class = LogisticBaseline.fit(train[features].iloc[:10], np.ones(10))
    assert (one_class.probability_up(test[features].to_numpy()) == 1.0).all()


def test_fast_daily_portfolio_equals_the_shared_portfolio_returns() -> None:
    predictions, market, _ = evaluation_inputs()
    aligned = align_market(predictions.loc[predictions["segment"] == "test"], market)
    positions = np.random.default_rng(4).choice([-1.0, 0.0, 1.0], len(aligned))
    bars = trade_positions(aligned, positions, CostModel())
    expected = daily_returns(portfolio_returns(bars)).to_numpy()
    np.testing.assert_allclose(DailyPortfolio(aligned).daily(bars["net_return"].to_numpy()), expected, atol=1e-15)


def test_fitted_baselines_read_only_each_folds_training_and_validation_rows() -> None:
    predictions, market, summary = evaluation_inputs()
    settings = EvaluationSettings(horizon=HORIZON, baseline_max_train_rows=10_000)
    forecasts = fit_baseline_forecasts(predictions, market, summary, settings)
    assert set(forecasts["strategy"]) == {"momentum", "mean_reversion", "logistic", "gradient_boosting"}
    assert len(forecasts) == 4 * len(predictions)
    fold_0 = summary["fold_layouts"]["5m"]["folds"][0]
    validation_end = pd.Timestamp(fold_0["validation"]["end"])
    changed = {}
    for series, frame in market.items():
        frame = frame.copy()
        later = frame.index > validation_end
        frame.loc[later, ["feat_noise", "feat_hint"]] = 7.0
        frame.loc[later, [f"target_ret_{HORIZON}", "close"]] *= 3.0
        changed[series] = frame
    again = fit_baseline_forecasts(predictions, changed, summary, settings)
    keys = ["strategy", "series", "fold", "segment", "timestamp"]
    before, after = (f.sort_values(keys).reset_index(drop=True) for f in (forecasts, again))
    fold_0_validation = ((before["fold"] == 0) & (before["segment"] == "validation")).to_numpy()
    np.testing.assert_array_equal(after["pred_return"][fold_0_validation], before["pred_return"][fold_0_validation])
    later_fold = (before["fold"] == 1).to_numpy() & (before["strategy"] == "gradient_boosting").to_numpy()
    assert not np.allclose(after["pred_return"][later_fold], before["pred_return"][later_fold])


def test_slope_forecasts_keep_their_sign() -> None:
    rng = np.random.default_rng(5)
    past = rng.standard_normal(5000)
    future = 0.3 * past + rng.standard_normal(5000)
    assert SlopeForecast.fit(past, future, 5, +1.0).slope == pytest.approx(0.3, abs=0.05)
    assert SlopeForecast.fit(past, future, 1, -1.0).slope == 0.0  # a trend is no reversal: it never trades
    assert SlopeForecast.fit(past, -future, 1, -1.0).slope == pytest.approx(-0.3, abs=0.05)


def test_trend_following_targets_its_volatility() -> None:
    frame = market_frame(200_000, seed=6, freq="15min", drift=0.0, volatility=0.004)  # about 5.7 years
    close = frame["close"]
    positions = trend_following_positions(close, target_volatility=0.2, max_leverage=10.0)
    # The target changes only at a day's last bar.
    changed = positions.ne(positions.shift()).to_numpy().copy()
    changed[0] = False
    index = pd.DatetimeIndex(close.index)
    last_of_day = np.asarray((index + pd.Timedelta(minutes=15)).floor("D") != index.floor("D"))
    assert changed.sum() > 1000 and np.all(last_of_day[changed])
    active = positions.iloc[100 * 96:]
    bars = simulate(active.to_numpy(), frame["open"].iloc[100 * 96:].to_numpy(), close.iloc[100 * 96:].to_numpy(),
                    CostModel.free())
    realised = daily_returns(pd.Series(bars.net_return, index=active.index)).std() * np.sqrt(365)
    # The position is the mean of three trend signs, so it targets 20 % only when they agree.
    assert 0.05 < realised < 0.25


def test_logistic_baseline_converges_on_the_projects_correlated_features() -> None:
    # The 62 features are strongly collinear (several RSI, EMA and volatility windows): lbfgs at
    # its default 200 iterations stopped short of the optimum ("lbfgs failed to converge").
    from sklearn.exceptions import ConvergenceWarning

    from trading_engine.data.schema import to_indexed
    from trading_engine.features import compute_features, compute_targets
    from trading_engine.sources.synthetic import generate_candles

    candles = generate_candles(["BTC/USDT:USDT", "ETH/USDT:USDT"], "5m", pd.Timestamp("2025-01-01", tz="UTC"),
                               pd.Timestamp("2025-02-05", tz="UTC"), seed=7, signal_strength=0.25)
    reference = to_indexed(candles["BTC/USDT:USDT"])
    blocks = []
    for frame in candles.values():
        series = to_indexed(frame)
        blocks.append(pd.concat([compute_features(series, reference), compute_targets(series, [60])], axis=1).iloc[300:])
    rows = pd.concat(blocks).dropna(subset=["target_binary_60"])
    features = [column for column in rows.columns if column.startswith("feat_")]
    assert len(rows) > 15_000 and len(features) > 50
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = LogisticBaseline.fit(rows[features], rows["target_binary_60"].to_numpy())
    assert model.model is not None and model.model.n_iter_.max() < model.model.max_iter
