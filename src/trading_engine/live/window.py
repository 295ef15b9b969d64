"""How a deployed model's features are computed, and the trailing window a live decision reads.

`FeatureRecipe` holds what the features pipeline was told when the model's features were made
(the reference series, its fill limit, the order-flow and funding groups, the warm-up) and
computes the model input of any stretch of candles with the features pipeline's own functions
(`compute_features`, `build_model_input`): the signals run and paper trading's backtest
call it.

**The trailing window and replay parity.** Most features have a finite lookback, but the
exponential averages (EMA 5-100, MACD, Wilder's RSI, ATR, ADX) depend on where their recursion
starts: computed from a window of only the warm-up (300 bars) they differ from the whole
history's (measured on the real BTC, ETH and SOL 5m candles, `bench/bench_signals.py`: 710 of
7,440 float32 feature values of a window's last row differ, 32 at 1,000 bars, none at 1,500,
2,000 or 2,500; `feat_ema_100` by up to 350 % of its value). A signals run therefore reads
`lead_bars` (`LEAD_BARS` = 2,000) candles before the first row it uses, + the rows the model
needs (`seq_len`, or the volatility target's 8 half-lives) + the bars it decides, never more:
the work and the memory do not grow with the history (docs/live.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from trading_engine.data.schema import series_key, timeframe_to_timedelta
from trading_engine.features import (
    FUNDING_FEATURE_NAMES,
    ORDER_FLOW_FEATURE_NAMES,
    build_model_input,
    compute_features,
)
from trading_engine.trading.rule import TradingRule

logger = logging.getLogger(__name__)

#: Bars of candles before the first row a live decision uses, so that its features equal the
#: whole history's (measured: see the module's docstring and docs/live.md).
LEAD_BARS = 2000


@dataclass(frozen=True)
class FeatureRecipe:
    """The features pipeline's settings a deployed model was trained with."""

    reference_symbol: str | None = None  # the cross-asset reference (features.reference_symbol)
    reference_fill_limit: int = 0
    order_flow: bool = False  # the order-flow group is in the model's features
    funding: bool = False  # the funding group is in the model's features
    warmup_bars: int = 300  # rows dropped at a series' start and after each gap (features.warmup_bars)

    @classmethod
    def of_trained_features(cls, features: Mapping[str, Any], feature_names: list[str]) -> FeatureRecipe:
        """From `params:features` and the features the model was trained on (the groups that the
        features pipeline actually computed: it leaves a group out when a series lacks its data)."""
        return cls(reference_symbol=features.get("reference_symbol"),
                   reference_fill_limit=int(features.get("reference_fill_limit", 0)),
                   order_flow=any(name in ORDER_FLOW_FEATURE_NAMES for name in feature_names),
                   funding=any(name in FUNDING_FEATURE_NAMES for name in feature_names),
                   warmup_bars=int(features["warmup_bars"]))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FeatureRecipe:
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def reference_key(self, timeframe: str) -> str | None:
        return series_key(self.reference_symbol, timeframe) if self.reference_symbol else None

    def feature_table(self, key: str, candles: Mapping[str, pd.DataFrame], funding: pd.DataFrame | None,
                      timeframe: str) -> pd.DataFrame:
        """The features of series `key` (candles indexed by timestamp), as the features pipeline
        computes them: the reference series' candles of the same stretch, the funding
        settlements when the model uses the funding group."""
        reference_key = self.reference_key(timeframe)
        reference = None
        if reference_key is not None and reference_key != key:
            if reference_key in candles:
                reference = candles[reference_key]
            else:
                logger.warning("no reference series %s for %s: its cross-asset features use itself", reference_key,
                               key)
        return compute_features(candles[key], reference, reference_fill_limit=self.reference_fill_limit,
                                funding=funding if self.funding else None,
                                timeframe=timeframe_to_timedelta(timeframe), order_flow=self.order_flow)

    def model_input(self, keys: list[str], candles: Mapping[str, pd.DataFrame],
                    funding: Mapping[str, pd.DataFrame | None], timeframe: str,
                    first_row: pd.Timestamp | None = None) -> dict[str, pd.DataFrame]:
        """Model-input frames (features and market columns, docs/architecture.md) of `keys`
        from candles indexed by timestamp: warm-up rows dropped as the features pipeline drops
        them, and rows before `first_row` dropped too (the lead of a trailing window)."""
        frames = {}
        for key in keys:
            table = self.feature_table(key, candles, funding.get(key), timeframe)
            frame = build_model_input(candles[key], table, funding.get(key), warmup_bars=self.warmup_bars,
                                      timeframe=timeframe_to_timedelta(timeframe))
            frames[key] = frame if first_row is None else frame.loc[frame.index >= first_row]
        return frames


def rows_needed(seq_len: int, rule: TradingRule) -> int:
    """Model-input rows a decision reads at and before its bar: the model's window, and the
    closes of the volatility target's EWMA (8 half-lives, `trading.rule.ewma_volatility`)."""
    sizing = 8 * rule.volatility_halflife_bars + 1 if rule.target_volatility is not None else 1
    return max(int(seq_len), sizing)

