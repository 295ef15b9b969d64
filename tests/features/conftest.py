"""Real Binance candles for the feature tests (read from ../shared/data, never copied)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from trading_engine.data.schema import to_indexed
from trading_engine.sources.files import read_candle_files
from trading_engine.sources.synthetic import generate_funding_rates


def load_real(shared_data_dir: Path, name: str, rows: int | None = None) -> pd.DataFrame:
    folder = "binance_futures_" + name.rsplit("_", 1)[1]
    candles = to_indexed(pd.read_parquet(shared_data_dir / folder / f"{name}.parquet"))
    return candles if rows is None else candles.iloc[:rows]


@pytest.fixture(scope="session")
def eth_5m(shared_data_dir: Path) -> pd.DataFrame:
    """20,000 real ETH 5m candles, including the feed's zero-volume flat candles (row 8369)."""
    return load_real(shared_data_dir, "ETH_USDT_5m", 20_000)


@pytest.fixture(scope="session")
def btc_5m(shared_data_dir: Path) -> pd.DataFrame:
    """All real BTC 5m candles: the cross-asset reference (it extends past eth_5m)."""
    return load_real(shared_data_dir, "BTC_USDT_5m")


@pytest.fixture(scope="session")
def archive_5m(shared_data_dir: Path) -> dict[str, pd.DataFrame]:
    """Real BTC and ETH 5m candles of 2024-11 and 2024-12 with their real order flow (Binance's
    archive files), indexed, keyed 'BTC' and 'ETH'."""
    series = read_candle_files(shared_data_dir / "binance_archive_csv", timeframes=["5m"])
    return {symbol.split("/")[0]: to_indexed(frame) for (symbol, _), frame in series.items()}


@pytest.fixture(scope="session")
def funding_5m(archive_5m) -> pd.DataFrame:
    """Synthetic funding settlements (00, 08, 16 UTC) over the archive candles' two months, as
    the exchange stamps them (a few ms after the hour)."""
    index = archive_5m["ETH"].index
    rates = generate_funding_rates(["ETH/USDT"], index[0], index[-1], seed=9)["ETH/USDT:USDT"]
    return rates.assign(timestamp=rates["timestamp"] + pd.Timedelta(milliseconds=3))
