"""All series of one timeframe pooled into one feature table, and windows cut from it by indexing.

The series are stacked into one (N, F) table. A sample is named by the row of its last bar (its
"end row"); its window is rows end - seq_len + 1 .. end, gathered with one index:
`features.index_select(0, end_rows[:, None] + offsets)`. The (N, seq_len, F) array of all windows is never built:
on a GPU the (N, F) tensor sits on the device and each batch is gathered there. An end row
qualifies only when its whole window lies in its own series, so windows never cross series.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from trading_engine.data.schema import parse_series_key
from trading_engine.models.heads import IGNORE_CLASS

FEATURE_PREFIX = "feat_"
_TARGET_DIRECTION = re.compile(r"^target_dir_(\d+)$")
NO_LABEL_END = np.iinfo(np.int64).max  # label end of rows without a target


def feature_columns(frame: pd.DataFrame) -> list[str]:
    return [column for column in frame.columns if str(column).startswith(FEATURE_PREFIX)]


def target_horizons(frame: pd.DataFrame) -> list[int]:
    """The horizons h with a `target_dir_{h}` column, ascending."""
    return sorted(int(m.group(1)) for column in frame.columns if (m := _TARGET_DIRECTION.match(str(column))))


@dataclass(frozen=True)
class PooledSeries:
    keys: list[str]  # series keys, in stacking order
    symbols: list[str]
    timeframes: list[str]
    feature_names: list[str]
    features: np.ndarray  # (N, F) float32, unscaled
    timestamps: np.ndarray  # (N,) int64 nanoseconds UTC
    series_index: np.ndarray  # (N,) int64 position of the row's series in `keys`
    row_in_series: np.ndarray  # (N,) int64 position of the row inside its series
    target_class: np.ndarray  # (N,) int64: 0 down, 1 flat, 2 up, IGNORE_CLASS without target
    target_return: np.ndarray  # (N,) float32, NaN without target
    label_end: np.ndarray  # (N,) int64 ns: timestamp of the last bar the label looks at

    @classmethod
    def from_frames(cls, frames: Mapping[str, pd.DataFrame], horizon: int | None) -> PooledSeries:
        """Stack model-input frames (DatetimeIndex `timestamp`, feat_* columns, and the target
        columns of `horizon`; with horizon None the targets are left unknown, for prediction)."""
        if not frames:
            raise ValueError("no series to pool")
        keys = sorted(frames)
        feature_names = feature_columns(frames[keys[0]])
        if not feature_names:
            raise ValueError(f"series {keys[0]!r} has no {FEATURE_PREFIX}* columns")
        parts: dict[str, list[np.ndarray]] = {name: [] for name in (
            "features", "timestamps", "series_index", "row_in_series", "target_class", "target_return",
            "label_end")}
        for position, key in enumerate(keys):
            frame = frames[key]
            if feature_columns(frame) != feature_names:
                raise ValueError(f"series {key!r} has other feature columns than {keys[0]!r}")
            for column in () if horizon is None else (f"target_dir_{horizon}", f"target_ret_{horizon}"):
                if column not in frame.columns:
                    raise ValueError(f"series {key!r} lacks {column!r} (training.horizon = {horizon})")
            index = pd.DatetimeIndex(frame.index)
            if not index.is_monotonic_increasing or not index.is_unique:
                raise ValueError(f"series {key!r}: timestamps are not sorted and unique")
            features = frame[feature_names].to_numpy(dtype=np.float32)
            if not np.isfinite(features).all():
                bad = [name for name, ok in zip(feature_names, np.isfinite(features).all(axis=0), strict=True) if not ok]
                raise ValueError(f"series {key!r}: non-finite values in {bad}")
            timestamps = index.tz_convert("UTC").as_unit("ns").asi8 if index.tz else index.as_unit("ns").asi8
            n = len(frame)
            target_class = np.full(n, IGNORE_CLASS, dtype=np.int64)
            target_return = np.full(n, np.nan, dtype=np.float32)
            label_end = np.full(n, NO_LABEL_END, dtype=np.int64)
            if horizon is not None:
                direction = frame[f"target_dir_{horizon}"].to_numpy(dtype=np.float64)
                known = np.isfinite(direction)
                target_class[known] = np.sign(direction[known]).astype(np.int64) + 1  # -1, 0, 1 -> 0, 1, 2
                target_return[:] = frame[f"target_ret_{horizon}"].to_numpy(dtype=np.float32)
                label_end[: max(n - horizon, 0)] = timestamps[horizon:]
                label_end[~known] = NO_LABEL_END
            parts["features"].append(features)
            parts["timestamps"].append(timestamps)
            parts["series_index"].append(np.full(n, position, dtype=np.int64))
            parts["row_in_series"].append(np.arange(n, dtype=np.int64))
            parts["target_class"].append(target_class)
            parts["target_return"].append(target_return)
            parts["label_end"].append(label_end)
        symbols, timeframes = zip(*(parse_series_key(key) for key in keys), strict=True)
        return cls(keys=keys, symbols=list(symbols), timeframes=list(timeframes), feature_names=feature_names,
                   **{name: np.concatenate(arrays) for name, arrays in parts.items()})

    @property
    def n_features(self) -> int:
        return self.features.shape[1]

    def window_end_rows(self, seq_len: int) -> np.ndarray:
        """Boolean (N,): the row's window of seq_len bars lies inside its own series."""
        return self.row_in_series >= seq_len - 1


def window_offsets(seq_len: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(seq_len,) the row offsets of a window relative to its end row: -(L-1) .. 0."""
    return torch.arange(-(seq_len - 1), 1, device=device)


def gather_windows(features: torch.Tensor, end_rows: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(N, F) table, (B,) end rows, (L,) offsets -> (B, L, F) windows, gathered on the table's device."""
    rows = (end_rows.unsqueeze(1) + offsets).reshape(-1)  # (B * L,) row of every bar of every window
    # index_select is the fast path (several times faster on a CPU than table[rows_2d]).
    return features.index_select(0, rows).view(len(end_rows), len(offsets), features.shape[1])
