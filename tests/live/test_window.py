"""The trailing window's decision: features computed from LEAD_BARS candles before a row equal
the whole history's, float32 for float32; from the warm-up alone they do not (the exponential
averages depend on where they start)."""

from __future__ import annotations

import numpy as np

from tests.live.conftest import FEATURES, N_BARS, TIMEFRAME
from trading_engine.live.window import LEAD_BARS, FeatureRecipe


def features_at(recipe: FeatureRecipe, candles, start: int, end: int) -> dict[str, np.ndarray]:
    window = {key: frame.set_index("timestamp").iloc[start:end] for key, frame in candles.items()}
    return {key: recipe.feature_table(key, window, None, TIMEFRAME).to_numpy() for key in sorted(window)}


def test_trailing_window_features_equal_the_whole_historys(candles):
    recipe = FeatureRecipe.of_trained_features(FEATURES, [])
    whole = features_at(recipe, candles, 0, N_BARS)
    for end in (LEAD_BARS + 1, N_BARS - 300, N_BARS):
        window = features_at(recipe, candles, end - LEAD_BARS - 1, end)
        for key in whole:
            np.testing.assert_array_equal(window[key][-1], whole[key][end - 1], err_msg=f"{key} at bar {end - 1}")


def test_a_window_of_only_the_warm_up_gives_other_features(candles):
    recipe = FeatureRecipe.of_trained_features(FEATURES, [])
    whole = features_at(recipe, candles, 0, N_BARS)
    window = features_at(recipe, candles, N_BARS - FEATURES["warmup_bars"] - 1, N_BARS)
    assert any((window[key][-1] != whole[key][-1]).any() for key in whole)
