"""The replay: a stretch of history run one bar at a time through the signals run, and compared
with the backtest of the same bars by the same model.

* The live side: a clock advances to one second after each bar's close; a feed that serves
  what the exchange had at that moment (`ReplayFeed`: the candles of a history store that have
  closed by the clock; the tests use the loopback Binance server instead, with its clock moved
  bar by bar) fills a fresh store; `run_signals` decides the bar into a fresh ledger, from
  the trailing window only, the rule's state carried from the ledger.
* The backtest side (`backtest_decisions`): the model input of the whole history (the features
  pipeline's), the deployed model's forecasts, the shared rule from flat at the stretch's first
  bar, as the evaluation trades (`align_market`, `rule_positions`).
* `compare_decisions`: the target positions must be equal, bar for bar and exactly; the
  forecasts equal up to the float32 rounding of a batch of another size (`FORECAST_TOLERANCE`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trading_engine.data.schema import funding_key, series_key, timeframe_to_timedelta
from trading_engine.data.storage import SeriesStore
from trading_engine.live.deployment import DeployedModel
from trading_engine.live.ledger import Ledger, sqlite_url
from trading_engine.live.signals import MarketFeed, SignalSettings, run_signals
from trading_engine.live.window import rows_needed
from trading_engine.params import known_params
from trading_engine.trading.portfolio import align_market, model_forecast, rule_positions

logger = logging.getLogger(__name__)

#: Largest difference allowed between a live and a backtest forecast (expected return, in return
#: units): the model's float32 outputs differ in their last bits with the batch size (measured:
#: 1.2e-7 of a head's output), and return_scale turns that into ~1e-9. A planted look-ahead
#: moves forecasts by orders of magnitude more.
FORECAST_TOLERANCE = 1e-6
DECISION_DELAY = pd.Timedelta(seconds=1)  # the replay's clock: a second after each bar's close


class ReplayFeed:
    """What the exchange had at the replay clock's time: the candles (and funding settlements)
    of a history store that have closed (settled) by then."""

    def __init__(self, history: SeriesStore, history_funding: SeriesStore | None = None,
                 clock: pd.Timestamp | None = None) -> None:
        self.history = history
        self.history_funding = history_funding
        self.clock = clock

    def advance(self, moment: pd.Timestamp) -> None:
        self.clock = moment

    def now(self) -> pd.Timestamp:
        if self.clock is None:
            raise RuntimeError("the replay clock has not been set")
        return self.clock

    def sync(self, store: SeriesStore, funding_store: SeriesStore | None, symbols: Sequence[str], timeframe: str,
             start: pd.Timestamp) -> None:
        bar = timeframe_to_timedelta(timeframe)
        closed_before = self.now() - bar + pd.Timedelta(1, "ns")  # a candle has closed when open + bar <= now
        for symbol in symbols:
            key = series_key(symbol, timeframe)
            _copy(self.history, store, key, start, closed_before, bar)
            if funding_store is not None and self.history_funding is not None:
                _copy(self.history_funding, funding_store, funding_key(symbol), start, self.now() + pd.Timedelta(1, "ns"),
                      pd.Timedelta(1, "ns"))


def _copy(source: SeriesStore, target: SeriesStore, key: str, start: pd.Timestamp, end: pd.Timestamp,
          step: pd.Timedelta) -> None:
    provenance = source.provenance(key)
    if provenance is None:
        return
    last = target.last_timestamp(key)
    since = start if last is None else max(start, last + step)
    rows = source.read(key, since, end)
    if len(rows):
        target.append(key, rows, {k: v for k, v in provenance.items() if k not in ("created", "updated", "sources")})


def replay_signals(feed: MarketFeed, advance: Callable[[pd.Timestamp], None], bars: Sequence[pd.Timestamp],
                   store: SeriesStore, funding_store: SeriesStore | None, deployed: DeployedModel, ledger: Ledger,
                   settings: SignalSettings) -> list[dict[str, Any]]:
    """Run the signals once per bar of `bars`, the clock `advance`d to a second after each bar's
    close. -> the run reports."""
    reports = []
    started = time.perf_counter()
    for position, stamp in enumerate(bars):
        advance(stamp + deployed.bar + DECISION_DELAY)
        reports.append(run_signals(feed, store, funding_store, deployed, ledger, settings))
        if position % 50 == 49:
            logger.info("replay: %d of %d bars, %.1f s", position + 1, len(bars), time.perf_counter() - started)
    return reports


def backtest_decisions(deployed: DeployedModel, model_input: Mapping[str, pd.DataFrame], start: pd.Timestamp,
                       end: pd.Timestamp) -> pd.DataFrame:
    """The backtest's decisions on the bars [start, end] of every deployed series: the deployed
    model's forecasts on `model_input` (features of the whole history), traded by the shared
    rule and costs from flat at `start`, as the evaluation trades. Columns: series, timestamp,
    the forecast (prob_*, pred_return, confidence), target_position."""
    before = rows_needed(deployed.seq_len, deployed.rule) - 1
    frames = {}
    for key in deployed.series:
        if key not in model_input:
            raise KeyError(f"the model input has no series {key!r} (the deployed model trades {deployed.series})")
        frame = model_input[key]
        first = max(int(np.searchsorted(frame.index, start)) - before, 0)
        frames[key] = frame.iloc[first: int(np.searchsorted(frame.index, end, side="right"))]
    predictions = deployed.model.predict(frames)
    stamps = pd.DatetimeIndex(predictions["timestamp"])
    predictions = predictions.loc[(stamps >= start) & (stamps <= end)].assign(fold=0, segment="backtest")
    if predictions.empty:
        raise ValueError(f"the model input has no bar between {start} and {end} to backtest")
    aligned = align_market(predictions, frames)
    expected_return, confidence = model_forecast(aligned)
    aligned["target_position"] = rule_positions(aligned, expected_return, deployed.rule, deployed.costs,
                                                deployed.horizon, confidence, frames)
    return aligned[["series", "timestamp", "prob_down", "prob_flat", "prob_up", "pred_return", "confidence",
                    "target_position"]]


def compare_decisions(live: pd.DataFrame, backtest: pd.DataFrame,
                      tolerance: float = FORECAST_TOLERANCE) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Live decisions (ledger rows) against the backtest's, bar for bar. -> (one row per series
    and bar: both positions and forecasts; the verdict). Parity: every backtest bar has a live
    row, the positions are equal exactly, the forecasts within `tolerance`."""
    live = live.rename(columns={"bar_time": "timestamp", "target_position": "live_position",
                                "expected_return": "live_expected_return", "confidence": "live_confidence"})
    backtest = backtest.rename(columns={"target_position": "backtest_position",
                                        "pred_return": "backtest_expected_return",
                                        "confidence": "backtest_confidence"})
    table = backtest[["series", "timestamp", "backtest_position", "backtest_expected_return",
                      "backtest_confidence"]].merge(
        live[["series", "timestamp", "model_version", "live_position", "live_expected_return", "live_confidence"]],
        on=["series", "timestamp"], how="outer", indicator=True)
    table = table.sort_values(["series", "timestamp"], kind="stable").reset_index(drop=True)
    both = (table["_merge"] == "both").to_numpy()
    table["position_equal"] = both & (table["live_position"].to_numpy() == table["backtest_position"].to_numpy())
    return_gap = np.abs(table["live_expected_return"] - table["backtest_expected_return"]).to_numpy()
    confidence_gap = np.abs(table["live_confidence"] - table["backtest_confidence"]).to_numpy()
    differing = table.loc[both & ~table["position_equal"].to_numpy()]
    missing_live = int((table["_merge"] == "left_only").sum())
    max_return_gap = float(np.nanmax(return_gap)) if both.any() else None
    max_confidence_gap = float(np.nanmax(confidence_gap)) if both.any() else None
    report = {
        "bars": int(both.sum()),
        "series": sorted(table["series"].unique().tolist()),
        "from": table["timestamp"].min().isoformat() if len(table) else None,
        "to": table["timestamp"].max().isoformat() if len(table) else None,
        "positions_equal": bool(len(differing) == 0 and missing_live == 0 and both.any()),
        "bars_differing": int(len(differing)),
        "bars_without_live_decision": missing_live,
        "live_rows_without_backtest": int((table["_merge"] == "right_only").sum()),
        "bars_in_a_position": int((np.abs(table["backtest_position"].fillna(0.0)) > 0).sum()),
        "max_expected_return_difference": max_return_gap,
        "max_confidence_difference": max_confidence_gap,
        "forecast_tolerance": tolerance,
        "first_differences": [
            {"series": row.series, "bar_time": row.timestamp.isoformat(), "live_position": row.live_position,
             "backtest_position": row.backtest_position, "live_expected_return": row.live_expected_return,
             "backtest_expected_return": row.backtest_expected_return}
            for row in differing.head(10).itertuples()],
    }
    report["forecasts_equal"] = bool(max_return_gap is not None and max_return_gap <= tolerance
                                     and max_confidence_gap <= tolerance)
    report["parity"] = bool(report["positions_equal"] and report["forecasts_equal"])
    return table.drop(columns="_merge"), report


@dataclass(frozen=True)
class ReplaySettings:
    """`params:replay` (conf/base/parameters_replay.yml)."""

    bars: int = 48  # the last bars of the model input replayed, one signals run each
    end: str | None = None  # the last bar replayed (UTC); None: the model input's last bar

    def __post_init__(self) -> None:
        if self.bars < 1:
            raise ValueError(f"replay.bars must be >= 1, got {self.bars}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> ReplaySettings:
        return cls(**known_params(params, cls, "replay parameters"))

    def stretch(self, model_input: Mapping[str, pd.DataFrame]) -> list[pd.Timestamp]:
        """The bars to replay: the last `bars` bars of the model input's time axis up to `end`."""
        axis = pd.DatetimeIndex(sorted(set().union(*(frame.index for frame in model_input.values()))))
        if self.end is not None:
            end = pd.Timestamp(self.end)
            axis = axis[axis <= (end.tz_localize("UTC") if end.tzinfo is None else end)]
        if len(axis) == 0:
            raise ValueError(f"the model input has no bar up to replay.end = {self.end}")
        return list(axis[-self.bars:])


class ReplayParityError(RuntimeError):
    """The live path and the backtest disagree on some bar."""


def replay_against_backtest(history: SeriesStore, history_funding: SeriesStore | None,
                            model_input: Mapping[str, pd.DataFrame], deployed: DeployedModel,
                            settings: ReplaySettings, signal_settings: SignalSettings,
                            ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Replay the stretch of `settings` from the `history` store through the signals run (a fresh
    store and ledger in a temporary folder) and compare with the backtest on `model_input`.
    -> (the bar-by-bar table, the report)."""
    bars = settings.stretch({key: model_input[key] for key in deployed.series})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="replay-") as folder:
        feed = ReplayFeed(history, history_funding)
        ledger = Ledger(sqlite_url(Path(folder) / "signal_ledger.db"))
        reports = replay_signals(feed, feed.advance, bars, SeriesStore(Path(folder) / "candles"),
                                 SeriesStore(Path(folder) / "funding"), deployed, ledger, signal_settings)
        live = ledger.read()
    seconds = time.perf_counter() - started
    backtest = backtest_decisions(deployed, model_input, bars[0], bars[-1])
    table, report = compare_decisions(live, backtest)
    report.update({
        "model_version": deployed.version,
        "rule": deployed.rule.describe(deployed.horizon),
        "rule_trades": not deployed.rule.flat,
        "lead_bars": signal_settings.lead_bars,
        "window_bars": signal_settings.lead_bars + rows_needed(deployed.seq_len, deployed.rule),
        "signals_runs": len(reports),
        "seconds_per_run": float(np.median([r["seconds"] for r in reports])) if reports else None,
        "seconds": seconds,
    })
    return table, report


def parity_verdict(report: Mapping[str, Any]) -> str:
    """One line for people; ReplayParityError when parity does not hold."""
    if not report["parity"]:
        raise ReplayParityError(
            f"replay parity does not hold for model {report.get('model_version')}: {report['bars_differing']} of "
            f"{report['bars']} positions differ, {report['bars_without_live_decision']} bars without a live decision, "
            f"largest forecast difference {report['max_expected_return_difference']} (tolerance "
            f"{report['forecast_tolerance']}); first differences: {report['first_differences'][:3]}")
    line = (f"replay parity holds for model {report.get('model_version')}: {report['bars']} decisions "
            f"({len(report['series'])} series, {report['from']} -> {report['to']}) equal to the backtest's, "
            f"{report['bars_in_a_position']} of them in a position; largest forecast difference "
            f"{report['max_expected_return_difference']:.1e}")
    if not report.get("rule_trades", True):
        line += ". The deployed rule never trades: its positions are 0 by construction, only the forecasts compare"
    return line
