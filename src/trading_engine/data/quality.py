"""Validation of candles and funding rates: clean rows, quarantined rows, and a report.

Bad rows are never repaired: they go to the quarantine table with a `reason` (the names of every
check they fail, joined by ';'), and the report counts them. The checks on candles, in order:

| reason | the row fails when |
| --- | --- |
| `missing_timestamp` | the time is missing (NaT) |
| `misaligned_timestamp` | the time is not a candle open time of the timeframe |
| `non_finite_price` | a price is NaN or infinite |
| `non_positive_price` | a price is zero or negative |
| `high_below_low` | high < low |
| `low_above_open_or_close` | low > min(open, close) |
| `high_below_open_or_close` | high < max(open, close) |
| `non_finite_volume` | the volume is NaN or infinite |
| `negative_volume` | the volume is negative |
| `inconsistent_order_flow` | an order-flow field is negative or infinite, or the taker-buy volume exceeds the volume (or its quote value the quote volume) |
| `duplicate_timestamp` | an earlier row that passed every check above has the same time |

Order-flow fields (`data.schema.ORDER_FLOW_COLUMNS`) may be null: a source that lacks them (an
OHLCV file) leaves them NaN, which is not a failure; missing columns are added as NaN, and the
report counts the clean candles that have every field (`order_flow_candles`).

So the first good occurrence of a time is kept and later ones are quarantined. The clean table is
sorted by time (the report says whether the input was). Gaps are measured on the clean table:
missing candles, number of gaps, the longest one, and the first `MAX_LISTED_GAPS` gaps, each as the
open times of its first and last missing candle. Zero-volume candles (real exchange outages) stay
clean and are counted. Reports hold only str, int, float, bool, None, lists and dicts (JSON).

`compare_candles` compares two sources' copies of the same candles (the archive's and the REST
API's): how many they share, how many differ, in which columns, with a few examples.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from trading_engine.data.schema import (
    CANDLE_COLUMNS,
    OHLCV_COLUMNS,
    ORDER_FLOW_COLUMNS,
    PRICE_COLUMNS,
    timeframe_offset_milliseconds,
    timeframe_to_milliseconds,
)

MAX_LISTED_GAPS = 100
FUNDING_COLUMNS = ("timestamp", "funding_rate")
# A funding settlement beyond +-5 % is not a market: Binance caps rates at a few percent.
MAX_PLAUSIBLE_FUNDING_RATE = 0.05

CANDLE_CHECKS = (
    "missing_timestamp",
    "misaligned_timestamp",
    "non_finite_price",
    "non_positive_price",
    "high_below_low",
    "low_above_open_or_close",
    "high_below_open_or_close",
    "non_finite_volume",
    "negative_volume",
    "inconsistent_order_flow",
    "duplicate_timestamp",
)
# Relative tolerance of the order-flow consistency checks and of the comparison of two sources'
# copies of a candle (both print decimal strings of the same numbers: they agree exactly).
_RELATIVE_TOLERANCE = 1e-9
MAX_LISTED_DISAGREEMENTS = 10
FUNDING_CHECKS = ("missing_timestamp", "non_finite_rate", "implausible_rate", "duplicate_timestamp")


def validate_candles(
    candles: pd.DataFrame, timeframe: str
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(clean, quarantined, report) for one candle series.

    `clean` has the candle schema (`data.schema.CANDLE_COLUMNS`: `timestamp`, float64 OHLCV
    and order-flow fields, NaN where the source lacks them), sorted, unique, aligned;
    `quarantined` has the same columns plus `source_row` (the row's position in the input) and
    `reason`. Raises ValueError for missing OHLCV columns, a non-numeric column, or times that
    are not timezone-aware datetimes."""
    step_ms = timeframe_to_milliseconds(timeframe)
    table = _typed_table(candles, OHLCV_COLUMNS, "candles", optional=ORDER_FLOW_COLUMNS)
    times = table["timestamp"]
    prices = table[list(PRICE_COLUMNS)].to_numpy()
    open_, high, low, close = prices.T
    volume = table["volume"].to_numpy()

    origin = pd.Timestamp(timeframe_offset_milliseconds(timeframe), unit="ms", tz="UTC")
    offsets = (times - origin) % pd.Timedelta(milliseconds=step_ms)
    with np.errstate(invalid="ignore"):
        failures = {
            "missing_timestamp": times.isna().to_numpy(),
            "misaligned_timestamp": (times.notna() & (offsets != pd.Timedelta(0))).to_numpy(),
            "non_finite_price": ~np.isfinite(prices).all(axis=1),
            "non_positive_price": (prices <= 0).any(axis=1),
            "high_below_low": high < low,
            "low_above_open_or_close": low > np.minimum(open_, close),
            "high_below_open_or_close": high < np.maximum(open_, close),
            "non_finite_volume": ~np.isfinite(volume),
            "negative_volume": volume < 0,
            "inconsistent_order_flow": _inconsistent_order_flow(table),
        }
    clean, quarantined, checks, order = _split(table, failures)

    report = {
        "timeframe": timeframe,
        **_split_summary(table, clean, quarantined, checks, order),
        "zero_volume_candles": int((clean["volume"] == 0).sum()),
        "order_flow_candles": int(clean[list(ORDER_FLOW_COLUMNS)].notna().all(axis=1).sum()),
        **_gaps(clean["timestamp"], step_ms),
    }
    return clean, quarantined, report


def validate_funding_rates(funding: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(clean, quarantined, report) for one funding series (`timestamp`, `funding_rate`).

    Settlement times are not required to be on a grid (exchanges stamp them a few ms late and
    change intervals), so the report gives the longest interval between settlements instead of
    gaps."""
    table = _typed_table(funding, FUNDING_COLUMNS, "funding rates")
    rate = table["funding_rate"].to_numpy()
    with np.errstate(invalid="ignore"):
        failures = {
            "missing_timestamp": table["timestamp"].isna().to_numpy(),
            "non_finite_rate": ~np.isfinite(rate),
            "implausible_rate": np.abs(rate) > MAX_PLAUSIBLE_FUNDING_RATE,
        }
    clean, quarantined, checks, order = _split(table, failures)
    rates = clean["funding_rate"]
    intervals_hours = clean["timestamp"].diff().dropna() / pd.Timedelta(hours=1)
    report = {
        **_split_summary(table, clean, quarantined, checks, order),
        "mean_rate": float(rates.mean()) if len(clean) else None,
        "negative_share": float((rates < 0).mean()) if len(clean) else None,
        "max_abs_rate": float(rates.abs().max()) if len(clean) else None,
        "median_interval_hours": float(intervals_hours.median()) if len(intervals_hours) else None,
        "longest_interval_hours": float(intervals_hours.max()) if len(intervals_hours) else None,
    }
    return clean, quarantined, report


def quality_report(
    reports: Mapping[str, dict], funding_reports: Mapping[str, dict] | None = None
) -> dict:
    """The catalog's `data_quality_report`: every series' report (keyed by series key) and the
    totals; funding reports (keyed like `BTC_USDT`) likewise when given."""
    funding_reports = dict(funding_reports or {})
    combined = {"series": dict(reports), "totals": _totals(reports)}
    if funding_reports:
        combined["funding"] = funding_reports
        combined["funding_totals"] = _totals(funding_reports)
    return combined


def format_quality_summary(report: dict) -> str:
    """One line per series (and per funding series) for the log; accepts the combined report of
    `quality_report` or a single series report."""
    if "series" not in report:
        return (
            _candle_line("candles", report)
            if "timeframe" in report
            else _funding_line("funding", report)
        )
    lines = [_candle_line(key, series) for key, series in report["series"].items()]
    lines += [_funding_line(key, series) for key, series in report.get("funding", {}).items()]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ internals


def compare_candles(stored: pd.DataFrame, incoming: pd.DataFrame) -> dict:
    """Two sources' copies of candles: those with the same open time are compared column by
    column (equal within a relative 1e-9; two nulls are equal). -> {candles_compared,
    candles_differing, columns: {name: count}, examples: [{timestamp, column, stored,
    incoming}, ...] (the first MAX_LISTED_DISAGREEMENTS)}."""
    both = stored.merge(incoming, on="timestamp", suffixes=("_stored", "_incoming"))
    differing = np.zeros(len(both), dtype=bool)
    columns, examples = {}, []
    for name in CANDLE_COLUMNS[1:]:
        if f"{name}_stored" not in both.columns or f"{name}_incoming" not in both.columns:
            continue
        a = both[f"{name}_stored"].to_numpy(dtype="float64")
        b = both[f"{name}_incoming"].to_numpy(dtype="float64")
        with np.errstate(invalid="ignore"):
            same = (np.abs(a - b) <= _RELATIVE_TOLERANCE * np.maximum(np.abs(a), np.abs(b))) | (
                np.isnan(a) & np.isnan(b)
            )
        if (~same).any():
            columns[name] = int((~same).sum())
            differing |= ~same
            for i in np.flatnonzero(~same)[: MAX_LISTED_DISAGREEMENTS - len(examples)]:
                examples.append(
                    {
                        "timestamp": _iso(both["timestamp"].iloc[i]),
                        "column": name,
                        "stored": None if np.isnan(a[i]) else float(a[i]),
                        "incoming": None if np.isnan(b[i]) else float(b[i]),
                    }
                )
    return {
        "candles_compared": len(both),
        "candles_differing": int(differing.sum()),
        "columns": columns,
        "examples": examples,
    }


def merge_comparisons(total: dict | None, part: dict) -> dict:
    """The sum of two `compare_candles` results (examples: the first ones)."""
    if total is None:
        return part
    columns = dict(total["columns"])
    for name, count in part["columns"].items():
        columns[name] = columns.get(name, 0) + count
    return {
        "candles_compared": total["candles_compared"] + part["candles_compared"],
        "candles_differing": total["candles_differing"] + part["candles_differing"],
        "columns": columns,
        "examples": (total["examples"] + part["examples"])[:MAX_LISTED_DISAGREEMENTS],
    }


def format_disagreement(comparison: dict) -> str:
    """One line for the log: 'archive and REST differ on 3 of 1,440 candles (close 2, ...)'."""
    columns = ", ".join(f"{name} {count:,}" for name, count in comparison["columns"].items())
    return (
        f"archive and REST differ on {comparison['candles_differing']:,} of "
        f"{comparison['candles_compared']:,} candles they both hold"
        + (f" ({columns}); the archive's values were kept" if columns else "")
    )


def _inconsistent_order_flow(table: pd.DataFrame) -> np.ndarray:
    """Rows whose order-flow fields (where present) are negative, infinite, or larger than what
    they are part of; null fields pass."""
    flow = table[list(ORDER_FLOW_COLUMNS)].to_numpy()
    volume, quote, _, buy, buy_quote = (
        table[name].to_numpy() for name in ("volume", *ORDER_FLOW_COLUMNS)
    )
    with np.errstate(invalid="ignore"):
        bad = (flow < 0).any(axis=1) | np.isinf(flow).any(axis=1)
        bad |= (buy > volume * (1 + _RELATIVE_TOLERANCE)) & (volume >= 0)
        bad |= buy_quote > quote * (1 + _RELATIVE_TOLERANCE)
    return bad


def _typed_table(
    frame: pd.DataFrame, columns: tuple[str, ...], what: str, optional: tuple[str, ...] = ()
) -> pd.DataFrame:
    """The required columns (then the optional ones, NaN where absent), times as UTC datetimes
    and values as float64, or a clear error."""
    if "timestamp" not in frame.columns and isinstance(frame.index, pd.DatetimeIndex):
        frame = frame.rename_axis("timestamp").reset_index()
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} are missing column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns))}"
        )
    times = frame["timestamp"]
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        raise ValueError(
            f"{what}: 'timestamp' must be a timezone-aware (UTC) datetime column, got {times.dtype}"
        )
    table = pd.DataFrame({"timestamp": times.dt.tz_convert("UTC").reset_index(drop=True)})
    for name in optional:
        if name not in frame.columns:
            table[name] = np.nan
    for name in (*columns[1:], *(n for n in optional if n in frame.columns)):
        values = frame[name]
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            raise ValueError(f"{what}: column {name!r} must be numeric, got {values.dtype}")
        table[name] = values.to_numpy(dtype="float64", na_value=np.nan)
    return table[list(columns + optional)]


def _split_summary(
    table: pd.DataFrame, clean: pd.DataFrame, quarantined: pd.DataFrame, checks: dict, order: dict
) -> dict:
    """The part of a report that candles and funding rates share: counts, span, checks, order."""
    return {
        "rows": len(table),
        "rows_clean": len(clean),
        "rows_quarantined": len(quarantined),
        "first_timestamp": _iso(clean["timestamp"].iloc[0]) if len(clean) else None,
        "last_timestamp": _iso(clean["timestamp"].iloc[-1]) if len(clean) else None,
        "checks": checks,
        **order,
    }


def _split(
    table: pd.DataFrame, failures: dict[str, np.ndarray]
) -> tuple[pd.DataFrame, pd.DataFrame, dict, dict]:
    """Adds the duplicate check to the row checks; returns clean (sorted), quarantined (input
    order, with reasons), the count per check and the ordering facts of the input."""
    flags = np.column_stack([*failures.values(), np.zeros(len(table), dtype=bool)])
    times = table["timestamp"]
    passed = ~flags.any(axis=1)
    flags[passed, -1] = times[passed].duplicated(keep="first").to_numpy()
    names = np.array([*failures, "duplicate_timestamp"], dtype=object)

    bad = flags.any(axis=1)
    quarantined = table[bad].copy()
    quarantined.insert(len(quarantined.columns), "source_row", np.flatnonzero(bad).astype("int64"))
    # the names of every failed check, built for the bad rows only (column by column)
    reasons = np.full(int(bad.sum()), "", dtype=object)
    for column, name in enumerate(names):
        failed = flags[bad, column]
        reasons[failed] = reasons[failed] + (";" + name)
    quarantined["reason"] = pd.Series(reasons, dtype="str").str.lstrip(";").to_numpy()
    quarantined = quarantined.reset_index(drop=True)
    clean = table[~bad].sort_values("timestamp", kind="stable", ignore_index=True)
    known = times.dropna()
    out_of_order = int((known.diff() < pd.Timedelta(0)).sum())
    order = {"was_sorted": out_of_order == 0, "out_of_order_rows": out_of_order}
    counts = {str(name): int(count) for name, count in zip(names, flags.sum(axis=0), strict=True)}
    return clean, quarantined, counts, order


def _gaps(times: pd.Series, step_ms: int) -> dict:
    """Missing candles between the first and the last clean candle."""
    step = pd.Timedelta(milliseconds=step_ms)
    if len(times) == 0:
        return {
            "expected_candles": 0,
            "missing_candles": 0,
            "gap_count": 0,
            "completeness": None,
            "longest_gap": None,
            "gaps": [],
            "gaps_truncated": False,
        }
    steps = (times.diff().iloc[1:] / step).to_numpy().astype("int64")  # clean times are aligned
    after = np.flatnonzero(steps > 1)  # the gap lies between candle i and candle i + 1
    missing = steps[after] - 1
    expected = int((times.iloc[-1] - times.iloc[0]) / step) + 1

    def gap(i: int) -> dict:
        return {
            "missing_candles": int(steps[i] - 1),
            "first_missing": _iso(times.iloc[i] + step),
            "last_missing": _iso(times.iloc[i + 1] - step),
        }

    return {
        "expected_candles": expected,
        "missing_candles": int(missing.sum()),
        "gap_count": len(after),
        "completeness": len(times) / expected,
        "longest_gap": gap(int(after[np.argmax(missing)])) if len(after) else None,
        "gaps": [gap(int(i)) for i in after[:MAX_LISTED_GAPS]],
        "gaps_truncated": len(after) > MAX_LISTED_GAPS,
    }


def _iso(moment: pd.Timestamp) -> str:
    return moment.isoformat()


def _totals(reports: Mapping[str, dict]) -> dict:
    """Sums of every integer count (top level and per check) over the series."""
    totals: dict = {"series": len(reports)}
    checks: dict[str, int] = {}
    for report in reports.values():
        for name, value in report.items():
            if isinstance(value, int) and not isinstance(value, bool):
                totals[name] = totals.get(name, 0) + value
        for name, value in report.get("checks", {}).items():
            checks[name] = checks.get(name, 0) + value
    totals["checks"] = checks
    return totals


def _short_time(iso: str | None) -> str:
    return "-" if iso is None else pd.Timestamp(iso).strftime("%Y-%m-%d %H:%M")


def _quarantine_text(report: dict) -> str:
    failed = [f"{name} {count:,}" for name, count in report.get("checks", {}).items() if count]
    return f"quarantined {report['rows_quarantined']:,}" + (
        f" ({', '.join(failed)})" if failed else ""
    )


def _candle_line(key: str, report: dict) -> str:
    longest = report["longest_gap"]
    gaps = f"missing {report['missing_candles']:,} in {report['gap_count']:,} gaps"
    if longest:
        gaps += f" (longest {longest['missing_candles']:,} from {_short_time(longest['first_missing'])})"
    return (
        f"{key}: {report['rows_clean']:,} clean candles "
        f"{_short_time(report['first_timestamp'])} -> {_short_time(report['last_timestamp'])} UTC | "
        f"{_quarantine_text(report)} | {gaps} | zero-volume {report['zero_volume_candles']:,}"
        + _order_flow_text(report)
        + (
            ""
            if report["was_sorted"]
            else f" | input unsorted ({report['out_of_order_rows']:,} rows)"
        )
    )


def _order_flow_text(report: dict) -> str:
    with_flow = report.get("order_flow_candles")
    if with_flow is None or with_flow == report["rows_clean"]:
        return ""
    return " | no order flow" if with_flow == 0 else f" | order flow on {with_flow:,} only"


def _funding_line(key: str, report: dict) -> str:
    mean = report["mean_rate"]
    stats = (
        "no rates"
        if mean is None
        else (
            f"mean {mean:.2e}, negative {report['negative_share']:.1%}, "
            f"longest interval {report['longest_interval_hours'] or 0:g} h"
        )
    )
    return (
        f"funding {key}: {report['rows_clean']:,} settlements "
        f"{_short_time(report['first_timestamp'])} -> {_short_time(report['last_timestamp'])} UTC | "
        f"{_quarantine_text(report)} | {stats}"
    )
