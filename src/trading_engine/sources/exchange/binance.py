"""Everything that is Binance's own (USDT-M perpetual futures): the REST API's page caps, request
weights and klines layout, and the public archive's file layout. A second exchange is a second
module like this one, named in `VENUES` (`sources/exchange/client.py`).

REST (`https://fapi.binance.com`, reached through ccxt's `binanceusdm`):

* `GET /fapi/v1/klines?symbol&interval&startTime[&endTime]&limit`: at most 1500 candles a
  request, weighed by `limit` (<100: 1, <500: 2, <=1000: 5, more: 10); each candle is 12 fields
  (`KLINE_FIELDS`), numbers as strings. ccxt's `fetch_ohlcv` keeps the first six, so candles are
  fetched through ccxt's implicit method for the raw endpoint (`fapiPublicGetKlines`), which goes
  through the same throttle, error mapping and weight table.
* `GET /fapi/v1/fundingRate`: at most 1000 settlements a request (weight 1).
* Every answer carries the IP's weight used in the current minute (`X-MBX-USED-WEIGHT-1M`; 2400
  a minute on USDT-M futures), and a 429/418 a `Retry-After`.

Archive (`https://data.binance.vision`): zipped CSVs of the same klines, one per month
(`monthly/klines/{SYMBOL}/{interval}/{SYMBOL}-{interval}-{YYYY}-{MM}.zip`, published in the first
days of the next month) and one per day (`daily/...-{YYYY}-{MM}-{DD}.zip`, published the next
day), each beside a `.CHECKSUM` file (`<sha256>  <file name>`); funding settlements per month
(`monthly/fundingRate/{SYMBOL}/{SYMBOL}-fundingRate-{YYYY}-{MM}.zip`, CSV
`calc_time,funding_interval_hours,last_funding_rate`). Older kline files have no header row, and
some newer files give times in microseconds.
"""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pyarrow import csv as pacsv

from trading_engine.data.schema import CANDLE_COLUMNS, epoch_to_timestamps

EXCHANGE_ID = "binanceusdm"
ARCHIVE_BASE_URL = "https://data.binance.vision"
WEIGHT_LIMIT_PER_MINUTE = 2400
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
CANDLES_PER_REQUEST = 1000  # weight 5; the endpoint takes up to 1500 (weight 10)
MAX_CANDLES_PER_REQUEST = 1500
FUNDING_RATES_PER_REQUEST = 1000

# The fields of a kline, in REST answers and in the archive's CSVs (with or without this header).
KLINE_FIELDS = (
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
    "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore",
)  # fmt: skip
# The positions of the stored candle columns (data.schema.CANDLE_COLUMNS) in a kline.
KLINE_CANDLE_FIELDS = (0, 1, 2, 3, 4, 5, 7, 8, 9, 10)
FUNDING_FIELDS = ("calc_time", "funding_interval_hours", "last_funding_rate")
# Intervals the archive publishes klines for.
ARCHIVE_INTERVALS = (
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
)  # fmt: skip
_ARCHIVE_ROOT = "data/futures/um"


class MalformedKlines(ValueError):
    """Klines rows that are not 12 finite numbers each."""


def klines_weight(limit: int) -> int:
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def klines_request(
    market_id: str, interval: str, since_ms: int, until_ms: int | None, limit: int
) -> dict[str, Any]:
    """The query of one page of raw klines from `since_ms` (open time), at most `limit`."""
    if not 1 <= limit <= MAX_CANDLES_PER_REQUEST:
        raise ValueError(f"klines limit must be in 1..{MAX_CANDLES_PER_REQUEST}, got {limit}")
    request = {"symbol": market_id, "interval": interval, "startTime": int(since_ms), "limit": limit}
    if until_ms is not None:
        request["endTime"] = int(until_ms)
    return request


def fetch_klines(exchange: Any, request: dict[str, Any]) -> Any:
    """One raw klines request through ccxt's implicit API (throttled and error-mapped by ccxt)."""
    return exchange.fapiPublicGetKlines(request)


def klines_to_candles(rows: Any) -> np.ndarray:
    """Raw klines rows -> float64 array (n, 10) in the order of `data.schema.CANDLE_COLUMNS`:
    open time (ms), open, high, low, close, volume, quote volume, trade count, taker-buy volume,
    taker-buy quote volume. MalformedKlines unless every row has the 12 fields as finite numbers."""
    if not isinstance(rows, list):
        raise MalformedKlines(f"klines gave {type(rows).__name__}, not rows")
    if not rows:
        return np.empty((0, len(KLINE_CANDLE_FIELDS)))
    try:
        array = np.asarray(rows, dtype="float64")  # numbers or numeric strings
    except (TypeError, ValueError) as error:
        raise MalformedKlines(f"klines rows do not parse as numbers ({error})") from error
    if array.ndim != 2 or array.shape[1] != len(KLINE_FIELDS):
        raise MalformedKlines(f"klines rows are not {len(KLINE_FIELDS)} fields each")
    array = array[:, KLINE_CANDLE_FIELDS]
    if not np.isfinite(array).all():
        raise MalformedKlines("klines rows hold values that are not finite numbers")
    return array


# ------------------------------------------------------------------ the archive


def monthly_klines_path(market_id: str, interval: str, year: int, month: int) -> str:
    name = f"{market_id}-{interval}-{year:04d}-{month:02d}.zip"
    return f"{_ARCHIVE_ROOT}/monthly/klines/{market_id}/{interval}/{name}"


def daily_klines_path(market_id: str, interval: str, year: int, month: int, day: int) -> str:
    name = f"{market_id}-{interval}-{year:04d}-{month:02d}-{day:02d}.zip"
    return f"{_ARCHIVE_ROOT}/daily/klines/{market_id}/{interval}/{name}"


def monthly_funding_path(market_id: str, year: int, month: int) -> str:
    name = f"{market_id}-fundingRate-{year:04d}-{month:02d}.zip"
    return f"{_ARCHIVE_ROOT}/monthly/fundingRate/{market_id}/{name}"


def checksum_path(path: str) -> str:
    return path + ".CHECKSUM"


def parse_checksum(text: str, file_name: str) -> str:
    """The SHA-256 (hex) in a `.CHECKSUM` file (`<sha256>  <file name>`); ValueError when the
    file does not hold one for `file_name`."""
    parts = text.strip().split()
    if not parts or len(parts[0]) != 64 or any(c not in "0123456789abcdefABCDEF" for c in parts[0]):
        raise ValueError(f"{file_name}.CHECKSUM holds no SHA-256: {text[:80]!r}")
    if len(parts) > 1 and parts[1].lstrip("*") != file_name:
        raise ValueError(f"{file_name}.CHECKSUM is for {parts[1]!r}")
    return parts[0].lower()


def read_klines_csv(data: bytes) -> pd.DataFrame:
    """An archive klines CSV (with or without its header row; times in ms or in us) -> a candle
    table (`data.schema.CANDLE_COLUMNS`), parsed by pyarrow's multithreaded CSV reader.
    ValueError when the rows are not klines."""
    columns = [KLINE_FIELDS[i] for i in KLINE_CANDLE_FIELDS]
    types = {name: pa.float64() for name in columns} | {"open_time": pa.int64()}
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(
                column_names=list(KLINE_FIELDS), skip_rows=1 if _has_header(data) else 0
            ),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=columns),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ValueError(f"not Binance klines rows: {_csv_error(error, KLINE_FIELDS)}") from error
    times = epoch_to_timestamps(table.column("open_time").to_numpy())  # ms or us, by magnitude
    frame = {"timestamp": times}
    for name, stored in zip(columns[1:], CANDLE_COLUMNS[1:], strict=True):
        frame[stored] = table.column(name).to_numpy()
    return pd.DataFrame(frame)


def read_funding_csv(data: bytes) -> pd.DataFrame:
    """An archive fundingRate CSV -> `timestamp` (the settlement time), `funding_rate`."""
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(
                column_names=list(FUNDING_FIELDS), skip_rows=1 if _has_header(data) else 0
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={"calc_time": pa.int64(), "last_funding_rate": pa.float64()},
                include_columns=["calc_time", "last_funding_rate"],
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ValueError(f"not Binance funding rows: {_csv_error(error, FUNDING_FIELDS)}") from error
    return pd.DataFrame(
        {
            "timestamp": epoch_to_timestamps(table.column("calc_time").to_numpy()),
            "funding_rate": table.column("last_funding_rate").to_numpy(),
        }
    )


def _csv_error(error: Exception, fields: tuple[str, ...]) -> str:
    """pyarrow's 'In CSV column #4: ... invalid value 'oops'' -> "column 'close' is not a
    number: 'oops'"; other messages: their first line."""
    text = str(error).splitlines()[0]
    match = re.search(r"column #(\d+).*invalid value '(.*)'", text)
    if match and int(match.group(1)) < len(fields):
        return f"column {fields[int(match.group(1))]!r} is not a number: {match.group(2)!r}"
    return text


def _has_header(data: bytes) -> bool:
    """Whether the first line is a header (its first field is not a number)."""
    first = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return not first[:1].isdigit()
