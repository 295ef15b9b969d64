"""A segment of a time axis: its first and last bars (both inclusive), shared by the training
splits, the evaluation and the tuning window, so that any table of the same timeframe can select
the same rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Segment:
    start: pd.Timestamp  # first bar, inclusive
    end: pd.Timestamp  # last bar, inclusive
    bars: int  # bars of the common axis inside it

    def contains(self, timestamps: pd.DatetimeIndex | np.ndarray) -> np.ndarray:
        """Boolean mask of the timestamps that fall inside [start, end]."""
        values = as_nanoseconds(timestamps)
        return (values >= as_nanoseconds(self.start)) & (values <= as_nanoseconds(self.end))

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "bars": self.bars}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Segment:
        return cls(pd.Timestamp(values["start"]), pd.Timestamp(values["end"]), int(values.get("bars", 0)))


def as_nanoseconds(values: pd.Timestamp | pd.DatetimeIndex | np.ndarray) -> np.ndarray | int:
    """Nanoseconds since the epoch (UTC), whatever the unit of the input."""
    if isinstance(values, pd.Timestamp):
        return values.as_unit("ns").value
    if isinstance(values, np.ndarray) and values.dtype == np.int64:
        return values
    return pd.DatetimeIndex(values).as_unit("ns").asi8
