"""The exchange: a ccxt client with market lookup, our own paging loop, retries and the
request-weight budget, and the incremental download of candles and funding rates into the store.

* `budget`: `WeightBudget`, the request-weight pacer shared by every connection;
* `client`: `ExchangeClient` (one ccxt connection: markets, clock, retries, malformed pages);
* `history`: the paging loops (`candle_pages`, `funding_rate_pages`);
* `download`: `sync_candles`, `sync_funding_rates` (store up to date, chunked commits, progress).
"""

from trading_engine.exchange.budget import WeightBudget
from trading_engine.exchange.client import (
    ExchangeClient,
    MalformedResponseError,
    RetriesExhaustedError,
    RetryPolicy,
    UnknownTimeframeError,
)
from trading_engine.exchange.download import (
    DownloadSettings,
    SeriesReport,
    funding_key,
    sync_candles,
    sync_funding_rates,
)

__all__ = [
    "DownloadSettings",
    "ExchangeClient",
    "MalformedResponseError",
    "RetriesExhaustedError",
    "RetryPolicy",
    "SeriesReport",
    "UnknownTimeframeError",
    "WeightBudget",
    "funding_key",
    "sync_candles",
    "sync_funding_rates",
]
