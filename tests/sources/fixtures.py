"""Fixtures of the sources and ingestion tests (a plugin of tests/conftest.py): real candles (or
random-walk ones when the shared data are absent), with order flow; the loopback Binance REST and
archive servers; a client tuned for tests (no throttle, fast backoff)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pandas as pd
import pytest

from tests.sources.loopback.binance_archive import BinanceArchiveServer
from tests.sources.loopback.binance_rest import (
    BinanceFuturesServer,
    add_order_flow,
    random_walk_candles,
)
from trading_engine.data.schema import TIMESTAMP_DTYPE
from trading_engine.sources.exchange import ExchangeClient, RetryPolicy, WeightBudget
from trading_engine.sources.files import read_candle_files
from trading_engine.sources.synthetic import generate_candles, generate_funding_rates

FAST_RETRY = RetryPolicy(
    max_attempts=6, backoff_base_s=0.01, backoff_max_s=0.05, max_retry_after_s=5.0
)
CLIENT_TIMEOUT_S = 0.5


def _real_or_random(request: pytest.FixtureRequest, name: str, seed: int) -> pd.DataFrame:
    try:
        folder = request.getfixturevalue("shared_data_dir")
        frame = pd.read_parquet(folder / "binance_futures_1m" / f"{name}_USDT_1m.parquet")
        frame = add_order_flow(frame, seed)  # the shared files have OHLCV only
    except pytest.skip.Exception:
        frame = random_walk_candles(43_200, "1m", start="2025-05-25 10:33", seed=seed)
    frame["timestamp"] = frame["timestamp"].astype(TIMESTAMP_DTYPE)
    return frame.reset_index(drop=True)


@pytest.fixture(scope="session")
def btc_1m(request: pytest.FixtureRequest) -> pd.DataFrame:
    """A month of BTC perpetual 1m candles (43,199 real ones from ../shared/data when present),
    with order-flow fields (made up: the shared 1m files have none)."""
    return _real_or_random(request, "BTC", seed=1)


@pytest.fixture(scope="session")
def eth_1m(request: pytest.FixtureRequest) -> pd.DataFrame:
    return _real_or_random(request, "ETH", seed=2)


@pytest.fixture(scope="session")
def funding(btc_1m: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Funding settlements over the candles' month, keyed by market id (BTCUSDT, ETHUSDT)."""
    start, end = btc_1m["timestamp"].iloc[0], btc_1m["timestamp"].iloc[-1]
    rates = generate_funding_rates(["BTC/USDT", "ETH/USDT"], start, end, seed=3)
    return {symbol.split("/")[0] + "USDT": frame for symbol, frame in rates.items()}


def _started_servers(server_class) -> Iterator[Callable]:
    servers = []

    def make(candles, funding=None, **options):
        server = server_class(candles, funding, **options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def exchange_server() -> Iterator[Callable[..., BinanceFuturesServer]]:
    """make(candles, funding=None, **options) -> a started loopback server, stopped afterwards."""
    yield from _started_servers(BinanceFuturesServer)


@pytest.fixture
def client_for() -> Callable[..., ExchangeClient]:
    """client_for(server, budget=None) -> the real ccxt client against the loopback server, with
    no throttle (unless a budget is given) and millisecond backoff."""

    def make(server: BinanceFuturesServer, budget: WeightBudget | None = None) -> ExchangeClient:
        return ExchangeClient(
            api_url=server.url,
            timeout_s=CLIENT_TIMEOUT_S,
            retry=FAST_RETRY,
            budget=budget or WeightBudget(limit=None),
            seed=0,
        )

    return make


@pytest.fixture(scope="session")
def archive_candles(request: pytest.FixtureRequest) -> dict[tuple[str, str], pd.DataFrame]:
    """Two months (2024-11, 2024-12) of BTC and ETH 5m candles keyed like the servers'
    (('BTCUSDT', '5m'), ...): the real ones of Binance's archive files in ../shared/data, with
    their real order flow, else synthetic ones."""
    try:
        folder = request.getfixturevalue("shared_data_dir") / "binance_archive_csv"
        series = read_candle_files(folder, timeframes=["5m"])
    except pytest.skip.Exception:
        series = {
            (symbol, "5m"): frame
            for symbol, frame in generate_candles(
                ["BTC/USDT", "ETH/USDT"], "5m", "2024-11-01", "2025-01-01", seed=4
            ).items()
        }
    return {(symbol.split("/")[0] + "USDT", tf): frame for (symbol, tf), frame in series.items()}


@pytest.fixture(scope="session")
def archive_funding() -> dict[str, pd.DataFrame]:
    """Funding settlements of 2024-11 and 2024-12, keyed by market id."""
    rates = generate_funding_rates(["BTC/USDT", "ETH/USDT"], "2024-11-01", "2025-01-01", seed=5)
    return {symbol.split("/")[0] + "USDT": frame for symbol, frame in rates.items()}


@pytest.fixture
def archive_server() -> Iterator[Callable[..., BinanceArchiveServer]]:
    """make(candles, funding=None, **options) -> a started loopback archive, stopped afterwards."""
    yield from _started_servers(BinanceArchiveServer)


@pytest.fixture
def closed_port() -> int:
    """A loopback port that nothing listens on: a connection to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
