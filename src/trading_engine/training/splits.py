"""Walk-forward folds on a common time axis, purged, with a final holdout that training never reads.

Layout on the axis of T bars (every bar of every series of one timeframe), latest at the right:

    | train ......... | purge | validation | purge | test | ... next folds' tests ... | purge | holdout |
    |<------------ tuning window ------------>|

- The holdout is the last `holdout_fraction` of the bars. Only the evaluation reads it. It is
  traded by a model refitted on every bar before it, one purge before it (`holdout_refit`).
- The tuning window is every bar before the first test segment, one purge before it: the only
  bars a tuning trial may read, so that nothing the report calls out-of-sample has been used to
  choose the hyper-parameters (nested walk-forward). Trials lay their own validation folds inside
  it (`make_validation_folds`).
- The folds' test segments tile the bars just before the holdout's purge, fold 0 first, each
  `test_fraction` long; each fold's validation (`validation_fraction` long) sits one purge before
  its test, and its training rows end one purge before its validation. The training window starts
  at the first bar (expanding) or `rolling_train_fraction` of the bars before its end (rolling).
- A purge is at least the longest target horizon plus the sequence length, in bars: no label of a
  training row reaches into the validation, and no input window of a later segment starts inside
  an earlier one.

Segments are given by their first and last timestamps (both inclusive), so any table of the same
timeframe (e.g. the evaluation's baseline) can select the same rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from trading_engine.data.segments import Segment
from trading_engine.params import known_params

SEGMENTS = ("train", "validation", "test")
TRAIN_WINDOWS = ("expanding", "rolling")


@dataclass(frozen=True)
class FoldSettings:
    n_folds: int = 3
    train_window: str = "expanding"
    rolling_train_fraction: float | None = None  # train length of a rolling window, fraction of T
    validation_fraction: float = 0.08
    test_fraction: float = 0.08
    holdout_fraction: float = 0.15
    min_purge_bars: int = 0  # the purge is max(this, longest horizon + seq_len)

    def __post_init__(self) -> None:
        if self.n_folds < 1:
            raise ValueError(f"n_folds must be >= 1, got {self.n_folds}")
        if self.train_window not in TRAIN_WINDOWS:
            raise ValueError(f"train_window must be one of {TRAIN_WINDOWS}, got {self.train_window!r}")
        if self.train_window == "rolling" and not (self.rolling_train_fraction or 0) > 0:
            raise ValueError("a rolling train window needs rolling_train_fraction > 0")
        for name in ("validation_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must lie in (0, 1), got {getattr(self, name)}")
        if not 0 <= self.holdout_fraction < 1:
            raise ValueError(f"holdout_fraction must lie in [0, 1), got {self.holdout_fraction}")

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> FoldSettings:
        return cls(**known_params(params, cls, "fold parameters"))


@dataclass(frozen=True)
class Fold:
    index: int
    train: Segment
    validation: Segment | None  # None: a refit, trained for a number of epochs chosen elsewhere
    test: Segment | None  # None: a tuning fold, which reads its validation only

    def segment(self, name: str) -> Segment | None:
        if name not in SEGMENTS:
            raise ValueError(f"unknown segment {name!r}; one of {SEGMENTS}")
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return {"fold": self.index, **{name: segment.to_dict() for name in SEGMENTS
                                       if (segment := self.segment(name)) is not None}}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Fold:
        segments = {name: Segment.from_dict(values[name]) if values.get(name) else None for name in SEGMENTS}
        return cls(int(values["fold"]), **segments)


@dataclass(frozen=True)
class FoldLayout:
    folds: list[Fold]
    holdout: Segment | None
    purge_bars: int
    tuning_window: Segment | None = None  # every bar a tuning trial may read
    holdout_refit: Fold | None = None  # the holdout's model: trained on every bar before it, purged

    def to_dict(self) -> dict[str, Any]:
        return {
            "purge_bars": self.purge_bars,
            "folds": [fold.to_dict() for fold in self.folds],
            "holdout": self.holdout.to_dict() if self.holdout is not None else None,
            "tuning_window": self.tuning_window.to_dict() if self.tuning_window is not None else None,
            "holdout_refit": self.holdout_refit.to_dict() if self.holdout_refit is not None else None,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FoldLayout:
        def optional(key: str, build: Any) -> Any:
            return build(values[key]) if values.get(key) else None

        return cls([Fold.from_dict(fold) for fold in values["folds"]], optional("holdout", Segment.from_dict),
                   int(values["purge_bars"]), optional("tuning_window", Segment.from_dict),
                   optional("holdout_refit", Fold.from_dict))


def make_fold_layout(axis: pd.DatetimeIndex, settings: FoldSettings, purge_bars: int) -> FoldLayout:
    """Cut the sorted, unique time axis into purged walk-forward folds and a final holdout."""
    axis = pd.DatetimeIndex(axis)
    if not axis.is_monotonic_increasing or not axis.is_unique:
        raise ValueError("the time axis must be sorted and unique")
    purge_bars = max(int(purge_bars), int(settings.min_purge_bars))
    n = len(axis)
    holdout_bars = math.ceil(settings.holdout_fraction * n)
    validation_bars = max(1, round(settings.validation_fraction * n))
    test_bars = max(1, round(settings.test_fraction * n))
    # Exclusive end of the last fold's test segment.
    tests_stop = n - holdout_bars - purge_bars if holdout_bars else n

    def segment(start: int, stop: int) -> Segment:  # bars [start, stop)
        return Segment(axis[start], axis[stop - 1], stop - start)

    folds = []
    for k in range(settings.n_folds):
        test_stop = tests_stop - (settings.n_folds - 1 - k) * test_bars
        test_start = test_stop - test_bars
        validation_stop = test_start - purge_bars
        validation_start = validation_stop - validation_bars
        train_stop = validation_start - purge_bars
        if settings.train_window == "rolling":
            train_start = max(0, train_stop - round(settings.rolling_train_fraction * n))
        else:
            train_start = 0
        if train_stop - train_start < max(purge_bars, 1):
            raise ValueError(
                f"fold {k} would train on {train_stop - train_start} bars of {n}: too few. Use fewer "
                f"folds, shorter validation/test/holdout fractions or more data (purge {purge_bars} bars)")
        folds.append(Fold(k, segment(train_start, train_stop), segment(validation_start, validation_stop),
                          segment(test_start, test_stop)))
    holdout, refit = None, None
    if holdout_bars:
        holdout = segment(n - holdout_bars, n)
        refit_stop = n - holdout_bars - purge_bars
        refit_start = (max(0, refit_stop - round(settings.rolling_train_fraction * n))
                       if settings.train_window == "rolling" else 0)
        refit = Fold(settings.n_folds, segment(refit_start, refit_stop), None, holdout)
    first_test_start = tests_stop - settings.n_folds * test_bars
    tuning_window = segment(0, first_test_start - purge_bars)
    return FoldLayout(folds, holdout, purge_bars, tuning_window, refit)


def make_validation_folds(axis: pd.DatetimeIndex, settings: FoldSettings, purge_bars: int) -> list[Fold]:
    """Folds for tuning trials inside a window: their validation segments (`validation_fraction`
    of the window each) tile the window's end, each trained on the bars before it, one purge
    before it; no test segment and no holdout."""
    axis = pd.DatetimeIndex(axis)
    purge_bars = max(int(purge_bars), int(settings.min_purge_bars))
    n = len(axis)
    validation_bars = max(1, round(settings.validation_fraction * n))
    folds = []
    for k in range(settings.n_folds):
        validation_stop = n - (settings.n_folds - 1 - k) * validation_bars
        validation_start = validation_stop - validation_bars
        train_stop = validation_start - purge_bars
        train_start = (max(0, train_stop - round(settings.rolling_train_fraction * n))
                       if settings.train_window == "rolling" else 0)
        if train_stop - train_start < max(purge_bars, 1):
            raise ValueError(f"tuning fold {k} would train on {train_stop - train_start} bars of the {n} in the tuning "
                             f"window: too few. Use fewer tuning folds or a shorter validation_fraction")
        folds.append(Fold(k, Segment(axis[train_start], axis[train_stop - 1], train_stop - train_start),
                          Segment(axis[validation_start], axis[validation_stop - 1], validation_bars), None))
    return folds
