"""Real Binance candles for the feature tests (read from ../shared/data, never copied)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from trading_engine.data.schema import to_indexed


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
