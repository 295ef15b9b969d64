"""The exchange's REST API: a ccxt client with market lookup, our own paging loop, retries and
the request-weight budget, and the incremental download of candles and funding rates.

* `binance`: what is Binance's own (endpoints, page caps, weights, klines and archive layouts);
* `budget`: `WeightBudget`, the request-weight pacer shared by every connection;
* `client`: `ExchangeClient` (one ccxt connection: markets, clock, retries, malformed pages,
  fast failure of a host that never answers);
* `history`: the paging loops (`candle_pages`, `funding_rate_pages`);
* `download`: `ExchangeSource`, `sync_candles`, `sync_funding_rates` (store up to date, chunked
  commits, progress) and the REST legs the archive source reuses.
"""

from trading_engine.sources.exchange.budget import WeightBudget
from trading_engine.sources.exchange.client import (
    ExchangeClient,
    HostUnreachableError,
    MalformedResponseError,
    RetriesExhaustedError,
    RetryPolicy,
    UnknownTimeframeError,
)
from trading_engine.sources.exchange.download import (
    DownloadSettings,
    ExchangeSource,
    sync_candles,
    sync_funding_rates,
)

__all__ = [
    "DownloadSettings",
    "ExchangeClient",
    "ExchangeSource",
    "HostUnreachableError",
    "MalformedResponseError",
    "RetriesExhaustedError",
    "RetryPolicy",
    "UnknownTimeframeError",
    "WeightBudget",
    "sync_candles",
    "sync_funding_rates",
]
