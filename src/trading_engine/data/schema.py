"""The candle schema and the names of series, shared by every layer.

A stored candle table has the columns `timestamp` (datetime64 UTC, the candle's open time),
`open`, `high`, `low`, `close`, `volume` (float64, base asset), then the order-flow fields that
every Binance kline carries (float64): `quote_volume` (quote asset), `trade_count`,
`taker_buy_volume` (base asset bought by takers) and `taker_buy_quote_volume`. A source that does
not have them (an OHLCV file) leaves them null (NaN): nothing is invented. In memory, for the
features, the same table is indexed by `timestamp` (see `to_indexed`).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

PRICE_COLUMNS = ("open", "high", "low", "close")
OHLCV_COLUMNS = ("timestamp", *PRICE_COLUMNS, "volume")  # required of every candle
ORDER_FLOW_COLUMNS = ("quote_volume", "trade_count", "taker_buy_volume", "taker_buy_quote_volume")
CANDLE_COLUMNS = (*OHLCV_COLUMNS, *ORDER_FLOW_COLUMNS)  # the stored table, in this order
# In memory and in Parquet (pandas 3 round-trips give microseconds) candle times are
# datetime64[us, UTC].
TIMESTAMP_DTYPE = "datetime64[us, UTC]"

_TIMEFRAME = re.compile(r"^(\d+)([mhdw])$")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def timeframe_to_milliseconds(timeframe: str) -> int:
    """'1m' -> 60000, '5m' -> 300000, '1h' -> 3600000."""
    match = _TIMEFRAME.match(str(timeframe))
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"unparseable timeframe {timeframe!r}; expected e.g. '1m', '5m', '1h', '1d'")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def timeframe_to_timedelta(timeframe: str) -> pd.Timedelta:
    return pd.Timedelta(milliseconds=timeframe_to_milliseconds(timeframe))


def timeframe_offset_milliseconds(timeframe: str) -> int:
    """Candles open at `offset + k * timeframe` milliseconds after the epoch. The offset is 0,
    except for weekly candles, which open on Mondays (1970-01-01 was a Thursday)."""
    return 4 * _UNIT_MS["d"] if timeframe_to_milliseconds(timeframe) % _UNIT_MS["w"] == 0 else 0


def normalise_symbol(symbol: str) -> str:
    """Accept 'BTC/USDT', 'BTC/USDT:USDT' or 'BTCUSDT'-like 'BTC_USDT'; return the ccxt
    perpetual symbol 'BTC/USDT:USDT'."""
    text = str(symbol).strip().upper()
    if "/" not in text and "_" in text:
        text = text.replace("_", "/", 1)
    if "/" not in text:
        raise ValueError(f"symbol {symbol!r} is not of the form BASE/QUOTE (e.g. BTC/USDT)")
    base, rest = text.split("/", 1)
    quote, _, settle = rest.partition(":")
    if not base or not quote:
        raise ValueError(f"symbol {symbol!r} is not of the form BASE/QUOTE (e.g. BTC/USDT)")
    return f"{base}/{quote}:{settle or quote}"


def series_key(symbol: str, timeframe: str) -> str:
    """The file stem of a series: ('BTC/USDT:USDT', '1m') -> 'BTC_USDT_1m'."""
    base, rest = normalise_symbol(symbol).split("/", 1)
    quote = rest.split(":", 1)[0]
    timeframe_to_milliseconds(timeframe)
    return f"{base}_{quote}_{timeframe}"


def funding_key(symbol: str) -> str:
    """The key of a perpetual's funding series: 'BTC/USDT:USDT' -> 'BTC_USDT'."""
    return series_key(symbol, "1m").rsplit("_", 1)[0]


def funding_key_of_series(key: str) -> str:
    """'BTC_USDT_5m' -> 'BTC_USDT', the funding series of a candle series."""
    return key.rsplit("_", 1)[0]


def parse_series_key(key: str) -> tuple[str, str]:
    """'BTC_USDT_1m' -> ('BTC/USDT:USDT', '1m')."""
    parts = str(key).split("_")
    if len(parts) != 3:
        raise ValueError(f"series key {key!r} is not of the form BASE_QUOTE_TIMEFRAME")
    base, quote, timeframe = parts
    timeframe_to_milliseconds(timeframe)
    return f"{base}/{quote}:{quote}", timeframe


def to_indexed(candles: pd.DataFrame) -> pd.DataFrame:
    """A stored candle table (timestamp column) -> the same table indexed by timestamp."""
    if "timestamp" in candles.columns:
        candles = candles.set_index("timestamp")
    if not isinstance(candles.index, pd.DatetimeIndex):
        raise TypeError("candles need a 'timestamp' column or a DatetimeIndex")
    return candles


def with_order_flow_columns(candles: pd.DataFrame) -> pd.DataFrame:
    """The candle table with every column of `CANDLE_COLUMNS`, in order: order-flow fields that
    the source lacks are added as null (NaN) columns; other columns are dropped."""
    missing = [name for name in ORDER_FLOW_COLUMNS if name not in candles.columns]
    if missing:
        candles = candles.assign(**{name: np.nan for name in missing})
    return candles[list(CANDLE_COLUMNS)]


def has_order_flow(candles: pd.DataFrame) -> bool:
    """True when every order-flow column is present and filled on every row."""
    return len(candles) > 0 and all(
        name in candles.columns and candles[name].notna().all() for name in ORDER_FLOW_COLUMNS
    )


def epoch_to_timestamps(values, unit: str | None = None) -> pd.DatetimeIndex:
    """Epoch integers -> a UTC DatetimeIndex of dtype `TIMESTAMP_DTYPE`.

    With `unit=None` the unit of each value is told by its magnitude: a time after 1973 is
    >= 1e11 in ms, >= 1e14 in us and >= 1e17 in ns, while seconds stay below 1e11 until the year
    5138. So a Binance kline time in milliseconds and a newer spot-archive time in microseconds
    give the same instant."""
    array = np.asarray(values, dtype="int64")
    if unit is not None:
        return pd.DatetimeIndex(pd.to_datetime(array, unit=unit, utc=True)).as_unit("us")
    magnitude = np.abs(array)
    micros = np.select(
        [magnitude >= 10**17, magnitude >= 10**14, magnitude >= 10**11],
        [array // 1_000, array, array * 1_000],
        default=array * 1_000_000,
    )
    return pd.DatetimeIndex(micros.astype("datetime64[us]")).tz_localize("UTC")
