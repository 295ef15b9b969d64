"""Walk-forward training end to end on small synthetic model input (real torch, real backtest)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.config import OmegaConfigLoader

from tests.training.conftest import make_model_input, tiny_config
from trading_engine.trading import CostModel, TradingRule
from trading_engine.training import (
    LOG_COLUMNS,
    PREDICTION_COLUMNS,
    EarlyStopping,
    FoldModel,
    TrainingConfig,
    make_walk_forward_layout,
    refit_for_holdout,
    trading_sharpe,
    train_walk_forward,
)
from trading_engine.training.checkpoint import TorchCheckpointDataset

RULE, COSTS = TradingRule(), CostModel()


def train(frames, **changes):
    return train_walk_forward(frames, tiny_config(**changes), RULE, COSTS)


@pytest.fixture(scope="module")
def trained(planted_model_input):
    return train(planted_model_input, max_epochs=4, patience=1)


def without_seconds(log: pd.DataFrame) -> pd.DataFrame:
    return log.drop(columns="seconds")


def test_predictions_follow_the_contract(trained, planted_model_input):
    predictions = trained.predictions
    assert list(predictions.columns) == list(PREDICTION_COLUMNS)
    assert str(predictions["timestamp"].dtype) == "datetime64[ns, UTC]"
    for column in ("prob_down", "prob_flat", "prob_up", "pred_return", "confidence"):
        assert predictions[column].dtype == np.float64 and np.isfinite(predictions[column]).all()
    np.testing.assert_allclose(predictions[["prob_down", "prob_flat", "prob_up"]].sum(axis=1), 1.0, rtol=1e-6)
    assert predictions["confidence"].between(0, 1).all()
    assert set(predictions["series"]) == set(planted_model_input)
    assert (predictions["symbol"] == predictions["series"].str.replace("_1h", "").str.replace("_", "/") + ":USDT").all()
    # Every bar of every fold's validation and test segments exactly once; the holdout is the refit's.
    layout = trained.layout
    for fold in layout.folds:
        of_fold = predictions[predictions["fold"] == fold.index]
        for name in ("validation", "test"):
            rows = of_fold[of_fold["segment"] == name]
            expected = sum(int(fold.segment(name).contains(frame.index).sum()) for frame in planted_model_input.values())
            assert len(rows) == expected and not rows.duplicated(["series", "timestamp"]).any()
    assert "holdout" not in set(predictions["segment"])


def test_log_has_one_row_per_fold_and_epoch(trained):
    log = trained.training_log
    assert list(log.columns) == list(LOG_COLUMNS)
    for fold in trained.folds:
        epochs = log.loc[log["fold"] == fold.fold.index, "epoch"].tolist()
        assert epochs == list(range(1, fold.epochs_run + 1))
    assert np.isfinite(log[["train_loss", "validation_loss", "validation_sharpe"]].to_numpy()).all()
    assert log["validation_accuracy"].between(0, 1).all()


def test_fold_model_is_the_best_epoch_and_training_stops_after_patience(trained, planted_model_input):
    log = trained.training_log
    for fold in trained.folds:
        of_fold = log[log["fold"] == fold.fold.index]
        best = of_fold.loc[of_fold["validation_sharpe"].idxmax()]
        assert fold.best_epoch == best["epoch"] and fold.validation_sharpe == best["validation_sharpe"]
        assert fold.epochs_run == min(4, fold.best_epoch + 1)  # max_epochs 4, patience 1
        # Trading the kept model's validation predictions again gives the best epoch's Sharpe.
        validation = fold.predictions[fold.predictions["segment"] == "validation"]
        assert trading_sharpe(validation, planted_model_input, RULE, COSTS, 5) == pytest.approx(fold.validation_sharpe,
                                                                                            rel=1e-9)


def test_early_stopping_restores_the_weights_of_the_best_epoch():
    model = torch.nn.Linear(2, 1)
    stopper = EarlyStopping(patience=2)
    weights = {}
    for epoch, score in enumerate([0.5, 1.5, float("nan"), 1.2], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        weights[epoch] = model.weight.clone()
        stopper.update(score, epoch, model)
        if stopper.should_stop:
            break
    assert epoch == 4 and stopper.best_epoch == 2 and stopper.best_score == 1.5
    stopper.restore(model)
    torch.testing.assert_close(model.weight, weights[2])


def test_saved_fold_model_reloads_with_weights_only_and_predicts_identically(trained, planted_model_input, tmp_path):
    fold = trained.folds[-1]
    dataset = TorchCheckpointDataset(filepath=str(tmp_path / "fold_models" / "fold_1.pt"))
    dataset.save(trained.checkpoints()["fold_1"])
    reloaded = FoldModel.from_checkpoint(torch.load(tmp_path / "fold_models" / "fold_1.pt", weights_only=True))
    assert dataset.load()["training_config"]["model"] == "transformer"

    original = fold.model.predict(planted_model_input)
    pd.testing.assert_frame_equal(reloaded.predict(planted_model_input), original, check_exact=True)
    # The same numbers as the predictions table (computed in other batches: equal to float precision).
    test_rows = fold.predictions[fold.predictions["segment"] == "test"]
    merged = test_rows.merge(original, on=["series", "timestamp"], suffixes=("", "_reloaded"))
    assert len(merged) == len(test_rows)
    for column in ("prob_up", "pred_return", "confidence"):
        np.testing.assert_allclose(merged[column], merged[f"{column}_reloaded"], rtol=1e-5, atol=1e-9)


def test_a_seeded_cpu_run_is_reproducible(trained, planted_model_input):
    again = train(planted_model_input, max_epochs=4, patience=1)
    pd.testing.assert_frame_equal(again.predictions, trained.predictions, check_exact=True)
    pd.testing.assert_frame_equal(without_seconds(again.training_log), without_seconds(trained.training_log))
    other_seed = train(planted_model_input, max_epochs=4, patience=1, seed=8)
    assert not np.array_equal(other_seed.predictions["prob_up"], trained.predictions["prob_up"])


def test_holdout_is_never_read_by_training(trained, planted_model_input):
    holdout = trained.layout.holdout
    scrambled = {}
    rng = np.random.default_rng(3)
    for key, frame in planted_model_input.items():
        frame = frame.copy()
        inside = holdout.contains(frame.index)
        numeric = [c for c in frame.columns if c.startswith(("feat_", "target_"))] + ["open", "high", "low", "close"]
        frame.loc[inside, numeric] = rng.permutation(frame.loc[inside, numeric].to_numpy()) * 3.0
        scrambled[key] = frame
    again = train(scrambled, max_epochs=4, patience=1)
    pd.testing.assert_frame_equal(without_seconds(again.training_log), without_seconds(trained.training_log))
    for fold, other in zip(trained.folds, again.folds, strict=True):
        for name, tensor in fold.model.model.state_dict().items():
            torch.testing.assert_close(other.model.model.state_dict()[name], tensor, rtol=0, atol=0)
    pd.testing.assert_frame_equal(again.predictions, trained.predictions, check_exact=True)
    # The holdout's refit reads every bar before the holdout, and none of it.
    refit, refit_again = (refit_for_holdout(frames, tiny_config(), trained.layout, epochs=2)
                          for frames in (planted_model_input, scrambled))
    for name, tensor in refit.model.model.state_dict().items():
        torch.testing.assert_close(refit_again.model.model.state_dict()[name], tensor, rtol=0, atol=0)
    assert not np.array_equal(refit.predictions["prob_up"], refit_again.predictions["prob_up"])


def test_the_holdout_model_trains_on_every_bar_up_to_a_purge_before_the_holdout(trained, planted_model_input):
    layout = trained.layout
    refit = layout.holdout_refit
    axis = planted_model_input[sorted(planted_model_input)[0]].index
    last_train, first_holdout = axis.get_loc(refit.train.end), axis.get_loc(layout.holdout.start)
    assert first_holdout - last_train - 1 == layout.purge_bars
    assert refit.train.start == axis[0] and refit.test == layout.holdout and refit.validation is None
    # It trains later than the last fold: on that fold's validation and test bars too.
    assert refit.train.end == layout.folds[-1].test.end
    result = refit_for_holdout(planted_model_input, tiny_config(), layout, epochs=3)
    assert result.epochs_run == 3 and set(result.predictions["segment"]) == {"holdout"}
    assert len(result.predictions) == sum(int(layout.holdout.contains(f.index).sum()) for f in planted_model_input.values())
    assert (result.predictions["fold"] == refit.index).all()


def test_prediction_for_a_bar_ignores_every_later_bar(trained, planted_model_input):
    model = trained.folds[0].model
    cut = planted_model_input[sorted(planted_model_input)[0]].index[1200]
    changed = {}
    for key, frame in planted_model_input.items():
        frame = frame.copy()
        later = frame.index > cut
        frame.loc[later, model.feature_names] = -frame.loc[later, model.feature_names].to_numpy() * 7.0
        changed[key] = frame
    before, after = model.predict(planted_model_input), model.predict(changed)
    up_to_cut = before["timestamp"] <= cut
    pd.testing.assert_frame_equal(after[up_to_cut], before[up_to_cut], check_exact=True)
    assert not np.array_equal(after.loc[~up_to_cut, "prob_up"], before.loc[~up_to_cut, "prob_up"])


def test_tcn_trains_and_predicts_through_the_same_path(planted_model_input):
    result = train(planted_model_input, model="tcn", max_epochs=2,
                   model_params={"channels": 8, "n_blocks": 2, "kernel_size": 3, "dropout": 0.0})
    assert list(result.predictions.columns) == list(PREDICTION_COLUMNS)
    assert set(result.predictions["segment"]) == {"validation", "test"}
    assert FoldModel.from_checkpoint(result.checkpoints()["fold_0"]).model_name == "tcn"


def test_on_fold_end_sees_each_fold_and_can_stop_the_run(planted_model_input):
    seen = []

    class Pruned(Exception):
        pass

    def prune_after_first_fold(fold: int, sharpe: float) -> None:
        seen.append((fold, sharpe))
        raise Pruned

    with pytest.raises(Pruned):
        train_walk_forward(planted_model_input, tiny_config(max_epochs=1), RULE, COSTS,
                           on_fold_end=prune_after_first_fold)
    assert len(seen) == 1 and seen[0][0] == 0 and np.isfinite(seen[0][1])


def test_a_subset_of_folds_trains_alone(planted_model_input):
    config = tiny_config(max_epochs=1)
    last = make_walk_forward_layout(planted_model_input, config).folds[-1:]
    result = train_walk_forward(planted_model_input, config, RULE, COSTS, folds=last)
    assert [fold.fold.index for fold in result.folds] == [1]
    assert set(result.predictions["segment"]) == {"validation", "test"}


def test_a_tuning_run_predicts_validation_rows_only(planted_model_input):
    config = tiny_config(max_epochs=1)
    result = train_walk_forward(planted_model_input, config, RULE, COSTS, predict_test=False)
    assert set(result.predictions["segment"]) == {"validation"}
    assert len(result.validation_sharpes) == len(result.folds) and np.isfinite(result.validation_sharpes).all()


def test_planted_signal_beats_a_random_walk_on_the_same_config():
    """The same tiny configuration on the same kind of data: a persistent planted drift is found
    and traded profitably after costs; a random walk (signal 0) is not."""
    changes = dict(max_epochs=6, patience=3)
    planted = train(make_model_input(signal=0.3, seed=11), **changes)
    random_walk = train(make_model_input(signal=0.0, seed=11), **changes)
    assert planted.mean_validation_sharpe > 5.0
    assert planted.mean_validation_sharpe > random_walk.mean_validation_sharpe + 5.0
    # Out of sample too: the test segments, which early stopping never saw.
    test_rows = planted.predictions[planted.predictions["segment"] == "test"]
    assert trading_sharpe(test_rows, make_model_input(signal=0.3, seed=11), RULE, COSTS, 5) > 2.0


def test_summary_holds_the_fold_layout_and_is_json(trained):
    summary = json.loads(json.dumps(trained.summary()))
    assert summary["fold_layout"]["purge_bars"] == 15 + 8
    assert [fold["fold"] for fold in summary["folds"]] == [0, 1]
    for fold, result in zip(summary["fold_layout"]["folds"], trained.folds, strict=True):
        assert pd.Timestamp(fold["train"]["end"]) == result.fold.train.end
        assert pd.Timestamp(fold["validation"]["start"]) == result.fold.validation.start
    assert pd.Timestamp(summary["fold_layout"]["holdout"]["start"]) == trained.layout.holdout.start
    assert summary["config"]["seq_len"] == 8


def test_parameter_files_build_the_demo_and_the_binance_configs(project_root):
    for env, d_model, max_epochs in (("base", 32, 4), ("binance", 128, 100)):
        loader = OmegaConfigLoader(str(project_root / "conf"), base_env="base", default_run_env=env,
                                   merge_strategy={"parameters": "soft"})
        config = TrainingConfig.from_params(loader["parameters"]["training"])
        assert config.model_params["d_model"] == d_model and config.max_epochs == max_epochs
        assert config.folds.holdout_fraction == 0.15
    assert config.learning_rate == 1e-4 and config.patience == 15 and config.model_params["n_layers"] == 4
    assert config.num_threads is None and config.batch_size == 256 and config.model == "transformer"
