"""Walk-forward folds: ordered, purged, a holdout nobody trains on, scalers fitted on training rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.training.conftest import make_model_input, tiny_config
from trading_engine.training import (
    FoldLayout,
    FoldSettings,
    fit_scaling,
    fold_rows,
    make_fold_layout,
    make_validation_folds,
    make_walk_forward_layout,
)
from trading_engine.training.windows import PooledSeries

AXIS = pd.date_range("2025-01-01", periods=5000, freq="5min", tz="UTC")


def bars_between(first: pd.Timestamp, last: pd.Timestamp) -> int:
    """Bars of AXIS strictly between two bars."""
    return AXIS.get_loc(last) - AXIS.get_loc(first) - 1


@pytest.mark.parametrize("train_window", ["expanding", "rolling"])
def test_segments_are_ordered_and_separated_by_the_purge(train_window):
    settings = FoldSettings(n_folds=4, train_window=train_window, rolling_train_fraction=0.3,
                            validation_fraction=0.05, test_fraction=0.05, holdout_fraction=0.15)
    layout = make_fold_layout(AXIS, settings, purge_bars=92)
    assert len(layout.folds) == 4 and layout.purge_bars == 92
    for fold in layout.folds:
        assert bars_between(fold.train.end, fold.validation.start) == 92
        assert bars_between(fold.validation.end, fold.test.start) == 92
        assert bars_between(fold.test.end, layout.holdout.start) >= 92
        assert fold.validation.bars == fold.test.bars == 250
        if train_window == "expanding":
            assert fold.train.start == AXIS[0]
        else:
            assert fold.train.bars == 1500


def test_test_segments_tile_the_bars_before_the_holdout():
    layout = make_fold_layout(AXIS, FoldSettings(n_folds=3), purge_bars=50)
    for earlier, later in zip(layout.folds, layout.folds[1:], strict=False):
        assert AXIS.get_loc(later.test.start) == AXIS.get_loc(earlier.test.end) + 1
    assert bars_between(layout.folds[-1].test.end, layout.holdout.start) == 50


def test_holdout_is_the_last_fraction_of_the_bars():
    layout = make_fold_layout(AXIS, FoldSettings(holdout_fraction=0.15), purge_bars=10)
    assert layout.holdout.end == AXIS[-1]
    assert layout.holdout.bars == math.ceil(0.15 * len(AXIS))
    for fold in layout.folds:
        for name in ("train", "validation", "test"):
            assert fold.segment(name).end < layout.holdout.start


def test_purge_covers_the_longest_horizon_plus_the_window():
    frames = make_model_input(n_bars=1500)  # targets at horizons 5 and 15
    config = tiny_config(horizon=5, seq_len=8)
    assert make_walk_forward_layout(frames, config).purge_bars == 15 + 8


def test_a_layout_without_room_to_train_is_an_error():
    with pytest.raises(ValueError, match="too few"):
        make_fold_layout(AXIS, FoldSettings(n_folds=16, validation_fraction=0.05, test_fraction=0.05),
                         purge_bars=100)


def test_training_labels_end_before_the_validation_even_across_a_gap():
    frames = make_model_input(n_bars=1500)
    # A hole in one series: its rows' horizons span more time than the bars of the common axis.
    key = sorted(frames)[0]
    config = tiny_config()
    layout = make_walk_forward_layout(frames, config)
    fold = layout.folds[0]
    hole = (frames[key].index > fold.train.end - pd.Timedelta("30h")) & (frames[key].index < fold.validation.start)
    frames[key] = frames[key][~hole]
    pooled = PooledSeries.from_frames(frames, config.horizon)
    rows = fold_rows(pooled, fold, config.seq_len)
    assert pooled.label_end[rows.train].max() < fold.validation.start.value
    assert (pooled.row_in_series[rows.train] >= config.seq_len - 1).all()  # whole windows only
    assert fold.train.contains(pooled.timestamps[rows.train]).all()


def test_scaler_is_fitted_on_the_training_rows_only():
    frames = make_model_input(n_bars=1500)
    config = tiny_config()
    fold = make_walk_forward_layout(frames, config).folds[0]

    def scaling(changed_frames):
        pooled = PooledSeries.from_frames(changed_frames, config.horizon)
        return fit_scaling(pooled, fold_rows(pooled, fold, config.seq_len), config.scaler_clip)

    scaler, return_scale = scaling(frames)
    for segment in (fold.validation, fold.test):
        changed = {key: frame.copy() for key, frame in frames.items()}
        for frame in changed.values():
            inside = segment.contains(frame.index)
            frame.loc[inside, ["feat_drift", "feat_return_1", "target_ret_5"]] *= 1000.0
        moved, moved_return_scale = scaling(changed)
        np.testing.assert_array_equal(moved.center, scaler.center)
        np.testing.assert_array_equal(moved.scale, scaler.scale)
        assert moved_return_scale == return_scale
    # The same change on training rows does move it: the check above can fail.
    changed = {key: frame.copy() for key, frame in frames.items()}
    for frame in changed.values():
        frame.loc[fold.train.contains(frame.index), "feat_drift"] *= 1000.0
    assert not np.array_equal(scaling(changed)[0].scale, scaler.scale)


def test_the_tuning_window_ends_a_purge_before_the_first_test_bar_and_the_refit_before_the_holdout():
    layout = make_fold_layout(AXIS, FoldSettings(n_folds=3, validation_fraction=0.05, test_fraction=0.05,
                                                 holdout_fraction=0.15), purge_bars=92)
    window = layout.tuning_window
    assert window.start == AXIS[0]
    assert bars_between(window.end, layout.folds[0].test.start) == 92
    assert window.end == layout.folds[0].validation.end  # tuning may read fold 0's validation, not its test
    refit = layout.holdout_refit
    assert refit.index == 3 and refit.validation is None and refit.test == layout.holdout
    assert bars_between(refit.train.end, layout.holdout.start) == 92
    assert FoldLayout.from_dict(layout.to_dict()) == layout


def test_validation_folds_tile_the_end_of_a_window_and_train_before_it():
    window = AXIS[:5000]
    folds = make_validation_folds(window, FoldSettings(n_folds=2, validation_fraction=0.1), purge_bars=50)
    assert folds[-1].validation.end == window[-1] and all(fold.test is None for fold in folds)
    assert folds[0].validation.bars == folds[1].validation.bars == 500
    for fold in folds:
        assert bars_between(fold.train.end, fold.validation.start) == 50
    assert bars_between(folds[0].validation.end, folds[1].validation.start) == 0
