"""Import candles from a folder of files: our Parquet series and Binance's public-archive CSVs.

Recognised file names (one folder, not recursive):

* `BTC_USDT_5m.parquet` (or `.csv`): a series key (see `schema.series_key`);
* `BTC_USDT_USDT-5m-futures.parquet` / `BTC_USDT-5m.parquet`: freqtrade's naming;
* `BTCUSDT-5m-2024-11.csv` (or the archive's `.zip`): Binance's monthly or daily kline files.
  The pair is split at its quote asset (USDT, USDC, BUSD or FDUSD).

Every symbol is read as its perpetual ('BTCUSDT' -> 'BTC/USDT:USDT').

Contents: a table with a time column (`timestamp`, `open_time`, `date`, `datetime` or `time`) or a
DatetimeIndex, and `open, high, low, close, volume`; times may be datetimes (naive ones are read as
UTC), date strings or epoch integers whose unit (s, ms, us, ns) is told by magnitude. The
order-flow fields (`quote_volume`, `trade_count` or Binance's `count`, `taker_buy_volume`,
`taker_buy_quote_volume`) are read where the file has them and left null (NaN) where it does not:
nothing is invented. Binance kline files (12 columns: `open_time, open, high, low, close, volume,
close_time, quote_volume, count, taker_buy_volume, taker_buy_quote_volume, ignore`, with a header
row or, in archives before about 2022, without one; newer files may give times in microseconds)
are parsed by the archive's reader (`exchange.binance.read_klines_csv`).

Several files of one series (e.g. monthly CSVs) are concatenated, sorted by time and deduplicated
(the first file in name order wins; conflicting duplicates are logged). Nothing else is changed:
validation and quarantine are `trading_engine.data.quality`'s job.

`FilesSource` is `ingestion.source: files`: it stores the files' series in place of the old ones,
after checking that every requested series has candles in the window (else one message naming
the series, the window and the range the files hold). Files carry no funding rates.
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from trading_engine.data.schema import (
    CANDLE_COLUMNS,
    PRICE_COLUMNS,
    TIMESTAMP_DTYPE,
    epoch_to_timestamps,
    normalise_symbol,
    series_key,
    timeframe_to_milliseconds,
)
from trading_engine.data.storage import SeriesStore
from trading_engine.sources.base import (
    EmptyWindowError,
    Window,
    empty_window_message,
    replace_series,
)
from trading_engine.sources.exchange.binance import read_klines_csv

logger = logging.getLogger(__name__)

QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "BUSD")
# Other names of the order-flow fields in files (Binance's klines call the trade count `count`).
ORDER_FLOW_ALIASES = {"count": "trade_count", "number_of_trades": "trade_count"}
TIME_COLUMNS = ("timestamp", "open_time", "date", "datetime", "time")
SUFFIXES = (".parquet", ".csv", ".zip")

_SERIES_KEY = re.compile(
    r"^(?P<base>[A-Za-z0-9]+)_(?P<quote>[A-Za-z0-9]+)_(?P<timeframe>\d+[mhdw])$"
)
_FREQTRADE = re.compile(
    r"^(?P<base>[A-Za-z0-9]+)_(?P<quote>[A-Za-z0-9]+)(?:_(?P<settle>[A-Za-z0-9]+))?"
    r"-(?P<timeframe>\d+[mhdw])(?:-(?:futures|spot|mark|index|premiumIndex))?$"
)
_BINANCE_ARCHIVE = re.compile(
    r"^(?P<pair>[A-Za-z0-9]+)-(?P<timeframe>\d+[mhdw])-\d{4}-\d{2}(?:-\d{2})?$"
)


class FilesSource:
    """`ingestion.source: files`: the series of a folder of candle files (see the module doc)."""

    name = "files"
    has_funding = False

    def __init__(self, files_dir: str | Path, exchange: str | None = None) -> None:
        self.files_dir, self.exchange = Path(files_dir), exchange

    def sync(
        self, store: SeriesStore, symbols: Sequence[str], timeframes: Sequence[str], window: Window
    ) -> dict[str, dict]:
        """Store the files' series (whole, in place of the old ones); EmptyWindowError before
        anything is written when a requested series has no candle in the window."""
        imported = read_candle_files(self.files_dir, symbols, timeframes)
        frames, held = {}, {}
        for (symbol, timeframe), frame in imported.items():
            key = series_key(symbol, timeframe)
            frames[key] = (frame, self.provenance(symbol, timeframe))
            times = frame["timestamp"]
            inside = (times >= window.start) & (times < window.end_or_now())
            if not inside.any():
                held[key] = (
                    f"the files in {self.files_dir} hold {_short(times.iloc[0])} -> "
                    f"{_short(times.iloc[-1])} UTC"
                    if len(times)
                    else f"its files in {self.files_dir} hold no candle"
                )
        if held:
            raise EmptyWindowError(empty_window_message(list(held), window, held.__getitem__))
        return replace_series(store, frames, self.name)

    def sync_funding(
        self, store: SeriesStore, symbols: Sequence[str], window: Window
    ) -> dict[str, dict]:
        logger.warning("source 'files' has no funding rates: raw_funding_rates are empty tables")
        return {}

    def provenance(self, symbol: str, timeframe: str) -> dict:
        return {
            "kind": "candles",
            "source": self.name,
            "exchange": self.exchange,
            "files_dir": str(self.files_dir),
            "symbol": symbol,
            "timeframe": timeframe,
        }


def read_candle_files(
    files_dir: str | Path,
    symbols: Sequence[str] | None = None,
    timeframes: Sequence[str] | None = None,
) -> dict[tuple[str, str], pd.DataFrame]:
    """Every candle series in `files_dir`, keyed by (normalised symbol, timeframe), as candle
    tables (`data.schema.CANDLE_COLUMNS`: `timestamp` datetime64[us, UTC], OHLCV and the
    order-flow fields, float64, NaN where the files lack them; sorted, unique times).
    `symbols` / `timeframes` restrict the result; each requested symbol and timeframe (every
    combination when both are given) must have a file.

    Raises ValueError for a missing folder, a folder without candle files, an unreadable file
    (naming it and why) and a requested series without a file (listing those available)."""
    folder = Path(files_dir)
    if not folder.is_dir():
        raise ValueError(f"candle folder {folder} does not exist")
    found: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(folder.iterdir()):
        series = _series_of_file(path) if path.is_file() else None
        if series is not None:
            found.setdefault(series, []).append(path)
    if not found:
        raise ValueError(
            f"no candle files in {folder}: expected names like BTC_USDT_5m.parquet or "
            "BTCUSDT-5m-2024-11.csv"
        )
    wanted = _select(found, symbols, timeframes, folder)
    return {series: _read_series(found[series]) for series in wanted}


def _series_of_file(path: Path) -> tuple[str, str] | None:
    """(symbol, timeframe) from a file name, or None (with a log line) when it is not a candle
    file we recognise."""
    if path.suffix.lower() not in SUFFIXES:
        return None
    stem = path.name[: -len(path.suffix)]
    if match := _SERIES_KEY.match(stem):
        symbol = f"{match['base']}/{match['quote']}"
    elif match := _FREQTRADE.match(stem):
        symbol = f"{match['base']}/{match['quote']}:{match['settle'] or match['quote']}"
    elif match := _BINANCE_ARCHIVE.match(stem):
        pair = match["pair"].upper()
        quote = next((q for q in QUOTE_ASSETS if pair.endswith(q) and len(pair) > len(q)), None)
        if quote is None:
            logger.warning(
                "skipping %s: cannot tell the quote asset of %s (known: %s)",
                path.name,
                pair,
                ", ".join(QUOTE_ASSETS),
            )
            return None
        symbol = f"{pair[: -len(quote)]}/{quote}"
    else:
        logger.warning("skipping %s: not a candle file name we recognise", path.name)
        return None
    return normalise_symbol(symbol), match["timeframe"]


def _select(
    found: dict[tuple[str, str], list[Path]],
    symbols: Sequence[str] | None,
    timeframes: Sequence[str] | None,
    folder: Path,
) -> list[tuple[str, str]]:
    wanted_symbols = None if symbols is None else [normalise_symbol(s) for s in symbols]
    if timeframes is not None:
        for timeframe in timeframes:
            timeframe_to_milliseconds(timeframe)  # a clear error for a malformed one
    available = ", ".join(f"{s} {t}" for s, t in sorted(found))
    missing = []
    if wanted_symbols is not None and timeframes is not None:
        missing = [(s, t) for s in wanted_symbols for t in timeframes if (s, t) not in found]
    elif wanted_symbols is not None:
        missing = [(s, "any") for s in wanted_symbols if all(s != fs for fs, _ in found)]
    elif timeframes is not None:
        missing = [("any", t) for t in timeframes if all(t != ft for _, ft in found)]
    if missing:
        asked = ", ".join(f"{s} {t}" for s, t in missing)
        raise ValueError(f"no candle file in {folder} for {asked}; available: {available}")
    return [
        (s, t)
        for s, t in sorted(found)
        if (wanted_symbols is None or s in wanted_symbols)
        and (timeframes is None or t in timeframes)
    ]


def _read_series(paths: list[Path]) -> pd.DataFrame:
    frames = [_read_candle_file(path) for path in paths]
    candles = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    candles = candles.sort_values("timestamp", kind="stable", ignore_index=True)
    repeated = candles["timestamp"].duplicated(keep="first")
    if repeated.any():
        conflicting = int((repeated & ~candles.duplicated(keep="first")).sum())
        if conflicting:
            logger.warning(
                "%s: %d repeated candle times with different values; kept the first file's",
                ", ".join(p.name for p in paths),
                conflicting,
            )
        candles = candles[~repeated.to_numpy()].reset_index(drop=True)
    return candles


def _read_candle_file(path: Path) -> pd.DataFrame:
    """One file -> a candle table (not yet sorted or deduplicated)."""
    try:
        if _BINANCE_ARCHIVE.match(path.name[: -len(path.suffix)]) and path.suffix != ".parquet":
            return read_klines_csv(_file_bytes(path))
        raw = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
        return _standardise(raw)
    except Exception as error:  # every reader failure becomes one clear message
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"cannot read candle file {path}: {reason}") from error


def _file_bytes(path: Path) -> bytes:
    """A CSV's bytes, or those of the one CSV inside an archive zip."""
    if path.suffix.lower() != ".zip":
        data = path.read_bytes()
    else:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
            if len(names) != 1:
                raise ValueError(f"the zip holds {len(names)} CSV files, expected one")
            data = archive.read(names[0])
    if not data.strip():
        raise ValueError("the file has no rows")
    return data


def _standardise(raw: pd.DataFrame) -> pd.DataFrame:
    table = raw.rename(columns=lambda name: str(name).strip().lower())
    table = table.rename(columns=ORDER_FLOW_ALIASES)
    time_column = next((name for name in TIME_COLUMNS if name in table.columns), None)
    if time_column is not None:
        times = table[time_column]
    elif isinstance(table.index, pd.DatetimeIndex):
        times = table.index.to_series(index=range(len(table)))
    else:
        raise ValueError(f"no time column (one of {', '.join(TIME_COLUMNS)}) and no DatetimeIndex")
    missing = [name for name in (*PRICE_COLUMNS, "volume") if name not in table.columns]
    if missing:
        raise ValueError(
            f"missing column(s) {', '.join(missing)}; found {', '.join(map(str, table.columns))}"
        )
    candles = pd.DataFrame({"timestamp": _to_timestamps(times.reset_index(drop=True))})
    for name in CANDLE_COLUMNS[1:]:
        if name in table.columns:
            candles[name] = _to_float(table[name].reset_index(drop=True), name)
        else:  # an order-flow field the file does not have
            candles[name] = np.nan
    return candles


def _to_timestamps(times: pd.Series) -> pd.Series:
    if times.isna().any():
        raise ValueError(f"row {int(np.flatnonzero(times.isna())[0])} has no time")
    if isinstance(times.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(times):
        stamps = pd.DatetimeIndex(times)
        stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
        return pd.Series(stamps.as_unit("us"))
    if pd.api.types.is_numeric_dtype(times):
        if not np.all(np.mod(times.to_numpy(dtype="float64"), 1) == 0):
            raise ValueError("epoch times are not whole numbers")
        return pd.Series(epoch_to_timestamps(times.to_numpy(dtype="int64")))
    parsed = pd.to_datetime(times.astype(str), utc=True, errors="coerce", format="mixed")
    if parsed.isna().any():
        bad = int(np.flatnonzero(parsed.isna())[0])
        raise ValueError(f"row {bad} has an unreadable time {times.iloc[bad]!r}")
    return pd.Series(pd.DatetimeIndex(parsed).as_unit("us")).astype(TIMESTAMP_DTYPE)


def _to_float(values: pd.Series, name: str) -> pd.Series:
    """Numbers as float64; empty fields become NaN (for the validation to quarantine), any other
    non-number is an error."""
    numbers = pd.to_numeric(values, errors="coerce")
    garbage = numbers.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if garbage.any():
        bad = int(np.flatnonzero(garbage)[0])
        raise ValueError(f"column {name!r} row {bad} is not a number: {values.iloc[bad]!r}")
    return numbers.astype("float64")


def _short(moment: pd.Timestamp) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")
