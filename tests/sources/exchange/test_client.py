"""The ccxt client's failures: an exchange that was never reached fails in seconds, naming its
host; one that answered before and then stumbles gets the full retries."""

from __future__ import annotations

import time

import pytest

from tests.sources.fixtures import FAST_RETRY
from trading_engine.data.storage import SeriesStore
from trading_engine.pipelines.ingestion.nodes import ingest_candles
from trading_engine.sources.exchange import (
    ExchangeClient,
    HostUnreachableError,
    RetriesExhaustedError,
    WeightBudget,
)

PARAMS = {"source": "exchange", "symbols": ["BTC/USDT"], "timeframes": ["1m"], "start": "2025-01-01",
          "end": None, "download": {"progress": False}}  # fmt: skip


@pytest.mark.parametrize(
    ("host", "reason"),
    [("127.0.0.1:{port}", "connection refused"), ("no-such-host.invalid", "name or service")],
    ids=["refused_connection", "dns_failure"],
)
def test_an_exchange_that_was_never_reached_fails_in_seconds_naming_the_host(
    closed_port, tmp_path, host, reason
):
    host = host.format(port=closed_port)

    began = time.monotonic()
    with pytest.raises(HostUnreachableError) as failure:
        ingest_candles(SeriesStore(tmp_path), {**PARAMS, "api_url": f"http://{host}"})  # default retries
    elapsed = time.monotonic() - began

    message = str(failure.value)
    assert f"cannot reach {host} ({reason}" in message and "3 attempts" in message
    assert "ingestion.api_url" in message and "Nothing was changed" in message
    assert failure.value.__cause__ is None  # one message, not a chain of tracebacks
    assert elapsed < 30  # the bound: 3 attempts 1 s apart (the old policy took 100 s)
    assert not any(tmp_path.iterdir())


def test_an_exchange_that_answered_and_then_went_away_gets_the_full_retries(
    exchange_server, btc_1m, tmp_path
):
    server = exchange_server({("BTCUSDT", "1m"): btc_1m.iloc[:100]})
    client = ExchangeClient(api_url=server.url, timeout_s=0.5, retry=FAST_RETRY,
                            budget=WeightBudget(limit=None), seed=0)  # fmt: skip
    client.load()
    server.stop()  # the exchange answered, then its connections are refused:
    client.exchange.session.close()  # its idle keep-alive connection is gone too

    with pytest.raises(RetriesExhaustedError, match=r"failed 6 times.*NetworkError"):
        client.fetch_candles("BTC/USDT", "1m", int(btc_1m["timestamp"].iloc[0].value // 1_000_000))

    assert client.stats.retries == FAST_RETRY.max_attempts - 1
