"""One signals run: the target position of every series for the last closed bar, decided as the
backtest decides it, written to the ledger.

    report = run_signals(feed, store, funding_store, deployed, ledger, SignalSettings())

1. Under the ledger's run lock (a second run waits, then fails clearly), bring the store up to
   date (`feed.sync`: over REST, incrementally, from the last stored candle) and read the
   exchange's clock. The newest closed bar must be there: a bar that closed more than
   `stale_tolerance_s` ago and has not arrived is a stale feed (refused).
2. Per series, the bars to decide: the newest bar, and the bars the ledger missed since its
   last row (up to `max_catch_up_bars`, so that a run after a failed one decides them in order
   and the rule's state stays the backtest's); the rule's state is carried from the ledger's
   last row when the same model version wrote it for the bar before, else the rule starts flat.
3. Read the trailing window only: `lead_bars` (`window.LEAD_BARS`, so that the features equal
   the whole history's) + the rows the model needs + the bars to decide. It must hold every bar
   of the model's own window (the warm-up + `seq_len` bars before the first bar to decide,
   through the newest): a gap there is refused.
4. The features of the window with the deployed recipe; their columns must be the deployed
   model's feature list (else refused); the model's forecast; the shared rule
   (`trading.portfolio.continue_rule_positions`, the rule, costs and sizes of the backtest)
   continued from the carried state; one ledger row per series and bar (idempotent).

A refusal (`SignalsRefused`) writes nothing to the ledger. No order is ever sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd

from trading_engine.data import quality
from trading_engine.data.schema import funding_key_of_series, parse_series_key, to_indexed
from trading_engine.data.storage import SeriesStore
from trading_engine.errors import UserError
from trading_engine.live.deployment import DeployedModel, code_hash
from trading_engine.live.ledger import Ledger, LedgerRow
from trading_engine.live.window import LEAD_BARS, rows_needed
from trading_engine.params import known_params
from trading_engine.sources import ExchangeSource, Window, download_settings, exchange_client
from trading_engine.trading.portfolio import continue_rule_positions
from trading_engine.trading.rule import FLAT, RuleState

logger = logging.getLogger(__name__)
FUNDING_LOOKBACK = pd.Timedelta(days=4)  # the funding features read the rate known 3 days before a bar
MAX_LISTED_BARS = 5


class SignalsRefused(UserError):
    """The run refused to decide; it wrote nothing to the ledger."""


class StaleFeedError(SignalsRefused):
    """The newest closed bar has not arrived, by the exchange's clock."""


class WindowGapError(SignalsRefused):
    """A bar of the model's window is missing (or was quarantined)."""


class FeatureMismatchError(SignalsRefused):
    """The features computed here are not the ones the deployed model was trained on."""


class NotEnoughHistoryError(SignalsRefused):
    """The store does not reach back as far as the model's window."""


@dataclass(frozen=True)
class SignalSettings:
    """`params:signals` (conf/base/parameters_signals.yml)."""

    lead_bars: int = LEAD_BARS  # candles before the first row a decision uses (window.LEAD_BARS)
    stale_tolerance_s: float = 30.0  # how long after a bar's close it may still be missing
    max_catch_up_bars: int = 12  # bars missed since the ledger's last row that a run still decides
    lock_timeout_s: float = 60.0  # how long a run waits for another one to finish
    sync_funding: bool = True  # keep the funding settlements up to date too (paper trading charges them)

    def __post_init__(self) -> None:
        if self.lead_bars < 0 or self.max_catch_up_bars < 0:
            raise ValueError("signals.lead_bars and signals.max_catch_up_bars must be >= 0")
        if self.stale_tolerance_s < 0 or self.lock_timeout_s < 0:
            raise ValueError("signals.stale_tolerance_s and signals.lock_timeout_s must be >= 0")

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> SignalSettings:
        return cls(**known_params(params, cls, "signals parameters"))


class MarketFeed(Protocol):
    """Where the newest candles come from, and whose clock says what "now" is."""

    def sync(self, store: SeriesStore, funding_store: SeriesStore | None, symbols: Sequence[str], timeframe: str,
             start: pd.Timestamp) -> None: ...

    def now(self) -> pd.Timestamp: ...


class ExchangeFeed:
    """The exchange's REST API (`sources.ExchangeSource`, the ingestion's client and checks):
    candles and funding settlements from the last stored one on; the exchange's clock."""

    def __init__(self, source: ExchangeSource, funding: bool = True) -> None:
        self.source = source
        self.funding = funding
        self._clock_measured = False

    @classmethod
    def from_params(cls, ingestion: Mapping[str, Any], funding: bool = True) -> ExchangeFeed:
        """The REST source of the `ingestion` parameters (exchange, api_url, retry, rate limit),
        whatever `ingestion.source` says (the archive has no bar that closed a minute ago)."""
        settings = replace(download_settings(ingestion), progress=False, empty_page_is_end=True)
        return cls(ExchangeSource(exchange_client(ingestion), settings), funding)

    def sync(self, store: SeriesStore, funding_store: SeriesStore | None, symbols: Sequence[str], timeframe: str,
             start: pd.Timestamp) -> None:
        self.source.sync(store, list(symbols), [timeframe], Window(start))  # measures the exchange's clock too
        self._clock_measured = True
        if self.funding and funding_store is not None:
            self.source.sync_funding(funding_store, list(symbols), Window(start))

    def now(self) -> pd.Timestamp:
        if not self._clock_measured:  # before the first sync: ask the exchange (one request)
            self.source.client.sync_clock()
            self._clock_measured = True
        return pd.Timestamp(self.source.client.now_ms(), unit="ms", tz="UTC")


@dataclass(frozen=True)
class Plan:
    """The bars of one series to decide in this run, and the rule's state before the first."""

    bars: list[pd.Timestamp]
    state: RuleState
    carried_from: pd.Timestamp | None  # the ledger bar whose state is continued


def run_signals(feed: MarketFeed, store: SeriesStore, funding_store: SeriesStore | None, deployed: DeployedModel,
                ledger: Ledger, settings: SignalSettings) -> dict[str, Any]:
    """One run (see the module's docstring). -> a report: what was decided and written."""
    started = time.perf_counter()
    keys = list(deployed.series)
    reference = deployed.features.reference_key(deployed.timeframe)
    read_keys = keys + ([reference] if reference and reference not in keys else [])
    with ledger.run_lock(settings.lock_timeout_s):
        now, newest = bring_up_to_date(feed, store, funding_store, deployed, read_keys, settings)
        last = ledger.last_rows(keys)
        plans = {key: plan_decisions(newest[key], last.get(key), deployed, settings) for key in keys}
        report = {"model_version": deployed.version, "exchange_time": now.isoformat(),
                  "newest_bar": {key: newest[key].isoformat() for key in keys}, "decisions": [], "written": 0}
        if not any(plan.bars for plan in plans.values()):
            logger.info("signals: every series is decided up to its newest bar; nothing to add")
            return {**report, "seconds": time.perf_counter() - started}
        frames = window_model_input(store, funding_store, deployed, read_keys, plans, newest, settings)
        predictions = deployed.model.predict(frames)
        rows = decide(predictions, frames, plans, deployed, feed.now())
        report["written"] = ledger.append(rows)
    report["decisions"] = [{"series": row.series, "bar_time": row.bar_time.isoformat(),
                            "target_position": row.target_position, "expected_return": row.expected_return,
                            "confidence": row.confidence} for row in rows]
    report["seconds"] = time.perf_counter() - started
    if deployed.card.get("code_hash") not in (None, code_hash()):
        logger.warning("the code changed since model %s was deployed (code hash %s...): its decisions may differ "
                       "from its backtest; deploy again to record the new code", deployed.version,
                       str(deployed.card["code_hash"])[:12])
    for row in rows:
        logger.info("%s %s: target position %+.4f (expected return %+.5f, confidence %.3f)", row.series,
                    row.bar_time.isoformat(), row.target_position, row.expected_return, row.confidence)
    logger.info("signals: %d rows written by model %s in %.2f s", report["written"], deployed.version,
                report["seconds"])
    return report


def bring_up_to_date(feed: MarketFeed, store: SeriesStore, funding_store: SeriesStore | None,
                     deployed: DeployedModel, keys: list[str], settings: SignalSettings,
                     ) -> tuple[pd.Timestamp, dict[str, pd.Timestamp]]:
    """Sync the store and check that every series has its newest closed bar, by the exchange's
    clock; waits (polling each second) while the bar closed less than `stale_tolerance_s` ago.
    -> (the exchange's time, the newest bar of each series)."""
    bar = deployed.bar
    symbols = sorted({parse_series_key(key)[0] for key in keys})
    stored_from = [store.first_timestamp(key) for key in keys]
    if all(first is not None for first in stored_from):
        start = min(stored_from)  # the sync resumes after the last stored candle of each series
    else:  # a new series: its trailing window (and the catch-up) is enough
        start = feed.now().floor(bar) - (settings.lead_bars + rows_needed(deployed.seq_len, deployed.rule)
                                         + settings.max_catch_up_bars + 2) * bar
    waited_until = None
    while True:
        feed.sync(store, funding_store, symbols, deployed.timeframe, start)
        now = feed.now()
        newest = {key: store.last_timestamp(key) for key in keys}
        expected = now.floor(bar) - bar  # the open time of the newest bar that has closed
        behind = [key for key in keys if newest[key] is None or newest[key] < expected]
        if not behind:
            return now, newest
        late = (now - (expected + bar)).total_seconds()  # since that bar closed
        if waited_until is None:
            waited_until = time.monotonic() + max(settings.stale_tolerance_s - late, 0.0)
        if time.monotonic() >= waited_until:
            described = "; ".join(f"{key} newest {newest[key].isoformat() if newest[key] is not None else 'none'}"
                                  for key in behind)
            raise StaleFeedError(
                f"stale feed: by the exchange's clock ({now.isoformat()}) the bar of {expected.isoformat()} closed "
                f"{late:.0f} s ago and has not arrived ({described}; signals.stale_tolerance_s = "
                f"{settings.stale_tolerance_s:g}). Nothing was written to the ledger.")
        time.sleep(min(1.0, max(waited_until - time.monotonic(), 0.0)))


def plan_decisions(newest: pd.Timestamp, last: LedgerRow | None, deployed: DeployedModel,
                   settings: SignalSettings) -> Plan:
    """The bars of a series to decide (see the module's docstring, step 2)."""
    bar = deployed.bar
    if last is not None and last.bar_time >= newest:
        return Plan([], FLAT, None)
    if last is not None and last.model_version == deployed.version:
        missed = int((newest - last.bar_time) / bar)
        if missed <= max(settings.max_catch_up_bars, 1):
            return Plan([last.bar_time + k * bar for k in range(1, missed + 1)], last.state, last.bar_time)
        logger.warning("%s: the ledger's last decision is %d bars old (signals.max_catch_up_bars = %d): the rule "
                       "starts flat at %s", last.series, missed, settings.max_catch_up_bars, newest.isoformat())
    elif last is not None:
        logger.info("%s: model %s takes over from %s: its rule starts flat", last.series, deployed.version,
                    last.model_version)
    return Plan([newest], FLAT, None)


def window_model_input(store: SeriesStore, funding_store: SeriesStore | None, deployed: DeployedModel,
                       keys: list[str], plans: Mapping[str, Plan], newest: Mapping[str, pd.Timestamp],
                       settings: SignalSettings) -> dict[str, pd.DataFrame]:
    """The model input of the trailing window of every series that has bars to decide (and of
    the reference series): candles read, validated and checked; features checked against the
    deployed list."""
    bar = deployed.bar
    first = min(plan.bars[0] for plan in plans.values() if plan.bars)
    before = rows_needed(deployed.seq_len, deployed.rule) - 1
    window_start = first - (settings.lead_bars + before) * bar
    # Every bar of the model's own window must be there: warm-up + seq_len bars up to the newest.
    needed_from = first - (deployed.features.warmup_bars + before) * bar
    candles = {}
    for key in keys:
        candles[key] = window_candles(store, key, window_start, newest[key] + bar, deployed.timeframe)
        check_window(key, candles[key], needed_from, newest[key], bar)
    funding = {key: window_funding(funding_store, key, window_start) for key in keys} \
        if deployed.features.funding else {}
    decided = [key for key in deployed.series if plans[key].bars]
    try:
        frames = deployed.features.model_input(decided, candles, funding, deployed.timeframe,
                                               first_row=window_start + settings.lead_bars * bar)
    except ValueError as error:  # e.g. candles without the order flow the model's features need
        raise FeatureMismatchError(f"the deployed model's features cannot be computed here: {error}. Nothing was "
                                   "written to the ledger.") from error
    for key, frame in frames.items():
        check_features(key, frame, deployed)
    return frames


def window_candles(store: SeriesStore, key: str, start: pd.Timestamp, end: pd.Timestamp,
                   timeframe: str) -> pd.DataFrame:
    """The stored candles of [start, end), validated as ingestion validates them (bad candles
    left out: they become gaps), indexed by timestamp."""
    clean, quarantined, _ = quality.validate_candles(store.read(key, start, end), timeframe)
    if len(quarantined):
        logger.warning("%s: %d candles in the window fail validation (%s) and are left out", key, len(quarantined),
                       ", ".join(sorted(set(quarantined["reason"]))))
    return to_indexed(clean)


def window_funding(funding_store: SeriesStore | None, key: str, start: pd.Timestamp) -> pd.DataFrame | None:
    """The funding settlements the funding features of the window read (from 4 days before)."""
    funding_key = funding_key_of_series(key)
    if funding_store is None or funding_store.provenance(funding_key) is None:
        return None
    return funding_store.read(funding_key, start - FUNDING_LOOKBACK, None)


def check_window(key: str, candles: pd.DataFrame, needed_from: pd.Timestamp, newest: pd.Timestamp,
                 bar: pd.Timedelta) -> None:
    """Every bar of [needed_from, newest] is in `candles`; else NotEnoughHistoryError (the store
    starts later) or WindowGapError (bars missing inside)."""
    expected = pd.date_range(needed_from, newest, freq=bar)
    present = pd.DatetimeIndex(candles.index).as_unit("ns")
    missing = expected.as_unit("ns").difference(present)
    if len(missing) == 0:
        return
    if len(present) == 0 or present[0] > needed_from:
        raise NotEnoughHistoryError(
            f"{key}: the model's window needs every bar from {needed_from.isoformat()} (warm-up + sequence), but "
            f"the store's candles start at {present[0].isoformat() if len(present) else 'none'}: run the ingestion "
            "(or wait for more bars). Nothing was written to the ledger.")
    listed = ", ".join(stamp.isoformat() for stamp in missing[:MAX_LISTED_BARS])
    raise WindowGapError(
        f"{key}: {len(missing)} bars missing inside the model's window ({needed_from.isoformat()} -> "
        f"{newest.isoformat()}): {listed}{' ...' if len(missing) > MAX_LISTED_BARS else ''}. The exchange has no "
        "candle there, or it failed validation; the model cannot decide until the window has passed the gap. "
        "Nothing was written to the ledger.")


def check_features(key: str, frame: pd.DataFrame, deployed: DeployedModel) -> None:
    """The feature columns computed for `key` are the deployed model's, in its order."""
    computed = [str(column) for column in frame.columns if str(column).startswith("feat_")]
    if computed == deployed.feature_names:
        return
    missing = [name for name in deployed.feature_names if name not in computed]
    extra = [name for name in computed if name not in deployed.feature_names]
    detail = (f"the model needs {missing} that are not computed here, and is given {extra} it never saw"
              if missing or extra else "the same features in another order")
    raise FeatureMismatchError(
        f"{key}: the features computed here differ from model {deployed.version}'s feature list: {detail}. "
        "The code or the feature parameters changed since it was deployed: retrain and deploy again. Nothing was "
        "written to the ledger.")


def decide(predictions: pd.DataFrame, frames: Mapping[str, pd.DataFrame], plans: Mapping[str, Plan],
           deployed: DeployedModel, decided_at: pd.Timestamp) -> list[LedgerRow]:
    """The ledger rows of the planned bars: the model's forecast and the shared rule, continued
    bar by bar from the carried state."""
    rows = []
    by_series = {key: part.set_index("timestamp") for key, part in predictions.groupby("series", sort=False)}
    for key, plan in plans.items():
        if not plan.bars:
            continue
        forecasts = by_series.get(key)
        missing = [b for b in plan.bars if forecasts is None or b not in forecasts.index]
        if missing:
            raise NotEnoughHistoryError(f"{key}: no model input row with a full window at {missing[0].isoformat()}. "
                                        "Nothing was written to the ledger.")
        frame, state = frames[key], plan.state
        for stamp in plan.bars:
            forecast = forecasts.loc[stamp]
            aligned = pd.DataFrame({"timestamp": [stamp], "series": [key], "open": [frame.at[stamp, "open"]],
                                    "close": [frame.at[stamp, "close"]], "segment_start": [False]})
            positions, state = continue_rule_positions(
                aligned, np.array([forecast["pred_return"]], dtype=np.float64), deployed.rule, deployed.costs,
                deployed.horizon, state, np.array([forecast["confidence"]], dtype=np.float64), {key: frame})
            rows.append(LedgerRow(
                series=key, symbol=str(forecast["symbol"]), timeframe=deployed.timeframe, bar_time=stamp,
                model_version=deployed.version, prob_down=float(forecast["prob_down"]),
                prob_flat=float(forecast["prob_flat"]), prob_up=float(forecast["prob_up"]),
                expected_return=float(forecast["pred_return"]), confidence=float(forecast["confidence"]),
                target_position=float(positions[0]), rule_direction=state.direction, rule_size=state.size,
                rule_age=state.age, decided_at=decided_at))
    return rows
