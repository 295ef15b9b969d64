"""What every source shares: the window asked for, the protocol, the per-series report, and the
check that a window holds candles.

A source brings the store up to date for the series asked for:

    source.sync(store, symbols, timeframes, window) -> {series key: report}
    source.sync_funding(store, symbols, window) -> {funding key: report}

Sources: `synthetic` (the offline demo), `files` (a folder of Parquet or archive CSV files),
`exchange` (the REST API through ccxt) and `archive` (the exchange's public archive of zipped
CSVs, then REST for what it does not have yet). Each checks what it can before any download
(unknown symbols, timeframes, dates, a store that holds another market) and fails with one
message; after its work, a requested series without a candle in the window is an error too
(`EmptyWindowError`), naming the series, the window and what the source holds.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import pandas as pd

from trading_engine.data.storage import SeriesStore

logger = logging.getLogger(__name__)
MAX_LISTED_GAPS = 100


class EmptyWindowError(ValueError):
    """A requested series has no candle in the requested window."""


@dataclass(frozen=True)
class Window:
    """Candles opening in [start, end), UTC; `end=None` is the source's now."""

    start: pd.Timestamp
    end: pd.Timestamp | None = None

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any]) -> Window:
        """From `ingestion.start` / `ingestion.end`; ValueError for a missing or unparseable date
        or a start that is not before the end (before any request)."""
        start = _parse_time(params.get("start"), "start")
        if start is None:
            raise ValueError("ingestion.start is required, e.g. '2020-01-01'")
        end = _parse_time(params.get("end"), "end")
        if end is not None and start >= end:
            raise ValueError(
                f"ingestion.start ({start.isoformat()}) must be before ingestion.end "
                f"({end.isoformat()})"
            )
        return cls(start, end)

    @property
    def start_ms(self) -> int:
        return int(self.start.value // 1_000_000)

    @property
    def end_ms(self) -> int | None:
        return None if self.end is None else int(self.end.value // 1_000_000)

    def end_or_now(self) -> pd.Timestamp:
        return self.end if self.end is not None else pd.Timestamp.now(tz="UTC")

    def __str__(self) -> str:
        end = "now" if self.end is None else _short(self.end)
        return f"{_short(self.start)} -> {end} UTC"


class Source(Protocol):
    """A place candles and funding rates come from (see the module docstring)."""

    name: str
    has_funding: bool  # False: the source has no funding rates (the tables are empty)

    def sync(
        self,
        store: SeriesStore,
        symbols: Sequence[str],
        timeframes: Sequence[str],
        window: Window,
    ) -> dict[str, dict]: ...

    def sync_funding(
        self, store: SeriesStore, symbols: Sequence[str], window: Window
    ) -> dict[str, dict]: ...


@dataclass
class SeriesReport:
    """What one run did to one stored series (JSON-ready through `to_dict`)."""

    key: str
    kind: str  # "candles" | "funding_rates"
    source: str
    added: int = 0
    stored_from: str | None = None
    stored_to: str | None = None
    seconds: float = 0.0
    requests: int = 0  # REST requests
    retries: int = 0
    archive_files: int = 0  # archive files downloaded and verified
    archive_bytes: int = 0
    archive_not_published: int = 0  # archive files answered 404 (then daily files or REST)
    rest_candles: int = 0  # candles (or settlements) fetched over REST
    gap_count: int = 0
    missing_candles: int = 0
    longest_gap: int = 0  # in candles
    gaps: list[dict] = field(default_factory=list)  # the first MAX_LISTED_GAPS: {"from", "missing"}
    # candles both the archive and REST gave, and where they differ (data.quality.compare_candles)
    disagreements: dict | None = None

    def record_gap(self, first_missing: str, missing: int) -> None:
        self.gap_count += 1
        self.missing_candles += missing
        self.longest_gap = max(self.longest_gap, missing)
        if len(self.gaps) < MAX_LISTED_GAPS:
            self.gaps.append({"from": first_missing, "missing": missing})

    def finish(self, store: SeriesStore, began: float, now: float) -> None:
        self.seconds = now - began
        first, last = store.first_timestamp(self.key), store.last_timestamp(self.key)
        self.stored_from = None if first is None else first.isoformat()
        self.stored_to = None if last is None else last.isoformat()

    def line(self) -> str:
        rate = self.added / self.seconds if self.seconds > 0 else 0.0
        unit = "candles" if self.kind == "candles" else "funding rates"
        stored = (
            f"stored {self.stored_from} -> {self.stored_to}" if self.stored_from else "nothing stored"
        )
        parts = [f"{self.key}: +{self.added:,} {unit} in {self.seconds:.1f} s ({rate:,.0f}/s)"]
        if self.archive_files or self.archive_not_published:
            parts.append(
                f"{self.archive_files} archive files ({self.archive_bytes / 1e6:,.1f} MB), "
                f"{self.archive_not_published} not published yet"
            )
        if self.requests:
            parts.append(
                f"{self.requests} requests ({self.rest_candles:,} over REST), {self.retries} retries"
            )
        parts.append(stored)
        if self.kind == "candles":
            gaps = f"{self.gap_count} gaps"
            if self.gap_count:
                gaps += f" ({self.missing_candles:,} candles missing, longest {self.longest_gap:,})"
            parts.append(gaps)
        if self.disagreements and self.disagreements.get("candles_differing"):
            parts.append(
                f"archive and REST differ on {self.disagreements['candles_differing']:,} of "
                f"{self.disagreements['candles_compared']:,} candles"
            )
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


def replace_series(
    store: SeriesStore, frames: dict[str, tuple[pd.DataFrame, dict]], source: str
) -> dict[str, dict]:
    """Replace whole series (a regenerated or re-imported source); every series' provenance is
    checked before the first one is written. -> the report per series."""
    for key, (_, provenance) in frames.items():
        store.check_provenance(key, provenance)
    reports = {}
    for key, (frame, provenance) in frames.items():
        report = SeriesReport(key, provenance["kind"], source)
        report.added = store.replace(key, frame, provenance)
        reports[key] = report.to_dict()
        logger.info("%s: %s rows from source %r", key, f"{report.added:,}", source)
    return reports


def require_candles_in_window(
    store: SeriesStore, keys: Sequence[str], window: Window, held: Callable[[str], str]
) -> None:
    """EmptyWindowError, naming every requested series without a candle in `window`, the window
    and what the source holds (`held(key)`, e.g. 'the files hold 2024-11-01 -> 2024-12-31')."""
    empty = [key for key in keys if not store.has_rows(key, window.start, window.end)]
    if empty:
        raise EmptyWindowError(empty_window_message(empty, window, held))


def checked_reports(
    store: SeriesStore, reports: Sequence[SeriesReport], window: Window, held: Callable[[str], str]
) -> dict[str, dict]:
    """{key: report} of a sync, after `require_candles_in_window` on its series."""
    require_candles_in_window(store, [r.key for r in reports], window, held)
    return {report.key: report.to_dict() for report in reports}


def empty_window_message(keys: Sequence[str], window: Window, held: Callable[[str], str]) -> str:
    series = "; ".join(f"{key} ({held(key)})" for key in keys)
    return (
        f"no candle in the window asked for ({window}; ingestion.start / ingestion.end) for "
        f"{series}. Change the window or the source: nothing downstream would have data."
    )


def stored_range(store: SeriesStore, key: str) -> str:
    """'stored 2024-11-01 00:00 -> 2024-12-31 23:55 UTC' or 'nothing stored'."""
    first, last = store.first_timestamp(key), store.last_timestamp(key)
    if first is None:
        return "nothing stored"
    return f"stored {_short(first)} -> {_short(last)} UTC"


def _short(moment: pd.Timestamp) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def _parse_time(value: Any, name: str) -> pd.Timestamp | None:
    if value is None:
        return None
    if not isinstance(value, str | dt.date | pd.Timestamp):
        raise ValueError(
            f"ingestion.{name} = {value!r} is not a date; write it like '2020-01-01' or "
            "'2020-01-01T12:00:00Z'"
        )
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"ingestion.{name} = {value!r} is not a date ({error}); write it like '2020-01-01'"
        ) from error
    if pd.isna(stamp):
        raise ValueError(f"ingestion.{name} = {value!r} is not a date; write it like '2020-01-01'")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
