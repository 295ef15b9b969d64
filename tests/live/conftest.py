"""A small live world for the live tests: nine days of synthetic 5m candles of three perpetuals
(with order flow) and their funding, served by the loopback Binance REST server; the model input
made by the features pipeline's own nodes; a tiny model refitted on all bars; deployments of it
with a trading rule that carries state (minimum hold, hysteresis, decisions every 2 bars,
volatility-targeted sizes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io.core import Version

from tests.conftest import make_test_project
from tests.sources.fixtures import FAST_RETRY
from tests.sources.loopback.binance_rest import BinanceFuturesServer, market_id
from trading_engine.data.schema import funding_key, series_key
from trading_engine.data.storage import SeriesStore
from trading_engine.features import compute_targets
from trading_engine.live.deployment import DeployedModel, DeployedModelDataset, build_artifact
from trading_engine.live.ledger import Ledger, sqlite_url
from trading_engine.live.replay import replay_signals
from trading_engine.live.signals import ExchangeFeed, SignalSettings
from trading_engine.live.window import FeatureRecipe
from trading_engine.pipelines.features.nodes import build_model_inputs, compute_feature_tables
from trading_engine.sources import ExchangeSource, Window
from trading_engine.sources.exchange import DownloadSettings, ExchangeClient, WeightBudget
from trading_engine.sources.synthetic import generate_candles, generate_funding_rates
from trading_engine.trading import CostModel, TradingRule
from trading_engine.training import FoldModel, FoldSettings, TrainingConfig, refit_on_all_bars

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")
TIMEFRAME = "5m"
BAR = pd.Timedelta(TIMEFRAME)
START = pd.Timestamp("2025-01-01", tz="UTC")
N_BARS = 2600  # lead (2000) + warm-up, training rows and the replayed stretch
HORIZON = 5
FEATURES = {"reference_symbol": "BTC/USDT:USDT", "reference_fill_limit": 0, "order_flow": True, "funding": False,
            "warmup_bars": 300,
            "targets": {"horizons": [HORIZON], "dead_zone_k": 0.35, "volatility_window": 100, "min_threshold": 0.0}}
# A rule whose state matters: hold 3 bars, keep while the forecast agrees, decide every 2 bars,
# sizes from a 12-bar EWMA volatility (97 closes behind each decision).
RULE = TradingRule(cost_multiple=1.0, exit_cost_multiple=0.0, min_holding_bars=3, decide_every=2,
                   target_volatility=0.5, volatility_halflife_bars=12, max_leverage=2.0)
COSTS = CostModel(taker_fee=0.0001, slippage_bps=0.0)  # a 2 bp round trip: the tiny model's forecasts trade
REPLAYED_BARS = 24
SETTINGS = SignalSettings(stale_tolerance_s=0.0, lock_timeout_s=30.0)


def tiny_config(**changes) -> TrainingConfig:
    return TrainingConfig(model="transformer",
                          model_params={"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "dropout": 0.0},
                          horizon=HORIZON, seq_len=8, batch_size=128, learning_rate=3e-3, weight_decay=0.0,
                          max_epochs=2, max_samples_per_epoch=1024, device="cpu", seed=7, progress=False,
                          num_threads=1, folds=FoldSettings(n_folds=2), **changes)


@pytest.fixture(scope="session")
def candles() -> dict[str, pd.DataFrame]:
    """Series key -> the candles (a `timestamp` column), order flow included."""
    frames = generate_candles(list(SYMBOLS), TIMEFRAME, START, START + N_BARS * BAR, seed=11, signal_strength=0.25)
    return {series_key(symbol, TIMEFRAME): frame for symbol, frame in frames.items()}


@pytest.fixture(scope="session")
def funding() -> dict[str, pd.DataFrame]:
    """Funding key (BTC_USDT) -> settlements."""
    frames = generate_funding_rates(list(SYMBOLS), START, START + N_BARS * BAR, seed=11)
    return {funding_key(symbol): frame for symbol, frame in frames.items()}


@pytest.fixture(scope="session")
def model_input(candles, funding) -> dict[str, pd.DataFrame]:
    """The features pipeline's model input of the whole history (its own nodes)."""
    candle_parts = {key: (lambda frame=frame: frame) for key, frame in candles.items()}
    funding_parts = {key: (lambda frame=frame: frame) for key, frame in funding.items()}
    tables = compute_feature_tables(candle_parts, FEATURES, funding_parts)
    return {key: load() for key, load in build_model_inputs(tables, candle_parts, funding_parts, FEATURES).items()}


@pytest.fixture(scope="session")
def trained(model_input) -> FoldModel:
    """A tiny transformer refitted on all bars (purged at the end)."""
    return refit_on_all_bars(model_input, tiny_config(), epochs=2).model


def recipe_of(model: FoldModel) -> FeatureRecipe:
    return FeatureRecipe.of_trained_features(FEATURES, model.feature_names)


def deploy(folder: Path, model: FoldModel, rule: TradingRule = RULE, costs: CostModel = COSTS,
           recipe: FeatureRecipe | None = None) -> DeployedModel:
    """Save a deployment of `model` under `folder` (deployed_model.pt/<version>/, pointer
    deployed.json) and load it back as the signals run does. A `recipe` of a subclass (a planted
    bug) replaces the loaded one: the artifact keeps the settings, not the code."""
    artifact = build_artifact(model.to_checkpoint(), series=sorted(series_key(s, TIMEFRAME) for s in SYMBOLS),
                              timeframe=TIMEFRAME, horizon=HORIZON, rule=rule, costs=costs,
                              features=recipe or recipe_of(model), data_range={"train": "test"},
                              evaluation={"portfolio": {"sharpe": 1.0}}, training=tiny_config().to_dict())
    deployed_dataset(folder).save(artifact)
    loaded = deployed_dataset(folder).load()
    return loaded if recipe is None else dataclasses.replace(loaded, features=recipe)


def deployed_dataset(folder: Path) -> DeployedModelDataset:
    return DeployedModelDataset(filepath=str(folder / "deployed_model.pt"), pointer=str(folder / "deployed.json"),
                                version=Version(None, None))


def serve(candles: dict[str, pd.DataFrame], funding: dict[str, pd.DataFrame] | None = None,
          now: pd.Timestamp | None = None) -> BinanceFuturesServer:
    """A started loopback exchange serving the candles (and funding), its clock at `now`."""
    server = BinanceFuturesServer({(market_id(key.rsplit("_", 1)[0]), TIMEFRAME): frame for key, frame in candles.items()},
                                  {market_id(key): frame for key, frame in (funding or {}).items()})
    if now is not None:
        set_clock(server, now)
    return server.start()


def set_clock(server: BinanceFuturesServer, moment: pd.Timestamp) -> None:
    server.now_ms = int(moment.value // 1_000_000)


def rest_feed(server: BinanceFuturesServer) -> ExchangeFeed:
    """The real REST path (ccxt, our client and download) against the loopback server."""
    client = ExchangeClient(api_url=server.url, timeout_s=2.0, retry=FAST_RETRY, budget=WeightBudget(limit=None), seed=0)
    return ExchangeFeed(ExchangeSource(client, DownloadSettings(progress=False, max_workers=1, empty_page_is_end=True)))


def warm_stores(folder: Path, server: BinanceFuturesServer) -> tuple[SeriesStore, SeriesStore]:
    """Candle and funding stores filled over REST up to the server's clock (a warm store)."""
    store, funding_store = SeriesStore(folder / "candles"), SeriesStore(folder / "funding")
    feed = rest_feed(server)
    feed.source.sync(store, list(SYMBOLS), [TIMEFRAME], Window(START))
    feed.source.sync_funding(funding_store, list(SYMBOLS), Window(START))
    return store, funding_store


def replay_stretch(n_bars: int = REPLAYED_BARS, end_offset: int = 2) -> list[pd.Timestamp]:
    """The last bars of the history but `end_offset`, `n_bars` of them."""
    last = START + (N_BARS - 1 - end_offset) * BAR
    return list(pd.date_range(last - (n_bars - 1) * BAR, last, freq=BAR))


def replay_through_rest(folder: Path, deployed: DeployedModel, candles, funding, bars: list[pd.Timestamp],
                        settings: SignalSettings = SETTINGS) -> Ledger:
    """The stretch replayed one bar at a time through the signals run over REST, the server's
    clock a second after each bar's close; a warm store up to the stretch. -> the ledger."""
    server = serve(candles, funding, now=bars[0])
    try:
        store, funding_store = warm_stores(folder, server)
        ledger = Ledger(sqlite_url(folder / "signal_ledger.db"))
        replay_signals(rest_feed(server), lambda moment: set_clock(server, moment), bars, store, funding_store,
                       deployed, ledger, settings)
    finally:
        server.stop()
    return ledger


@pytest.fixture(scope="session")
def replayed(tmp_path_factory, trained, candles, funding):
    """The model deployed with RULE and REPLAYED_BARS bars replayed through REST: (deployment,
    ledger, the folder of its stores, the stretch)."""
    folder = tmp_path_factory.mktemp("replayed")
    deployed = deploy(folder / "models", trained)
    bars = replay_stretch()
    ledger = replay_through_rest(folder, deployed, candles, funding, bars)
    return deployed, ledger, folder, bars


def targets_of(candles: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {key: compute_targets(frame.set_index("timestamp"), **FEATURES["targets"]) for key, frame in candles.items()}


def one_bar_look_ahead(recipe: FeatureRecipe) -> FeatureRecipe:
    """The recipe with a planted look-ahead: a copy of the 1-bar return that reads the NEXT bar
    (the last bar, which has no next one, keeps its own)."""

    class LookAhead(type(recipe)):
        def feature_table(self, key, candles, funding, timeframe) -> pd.DataFrame:
            table = super().feature_table(key, candles, funding, timeframe)
            copy = table["feat_roc_1"].to_numpy()
            leaked = np.concatenate([copy[1:], copy[-1:]])
            return table.assign(feat_roc_1_copy=leaked.astype(np.float32))

    return LookAhead(**recipe.to_dict())


@pytest.fixture(scope="session")
def leaky(candles, trained) -> tuple[FeatureRecipe, dict[str, pd.DataFrame], FoldModel]:
    """A model trained with the planted look-ahead: (the leaky recipe, its model input of the
    whole history (the backtest's), the model)."""
    recipe = one_bar_look_ahead(recipe_of(trained))
    indexed = {key: frame.set_index("timestamp") for key, frame in candles.items()}
    frames = recipe.model_input(sorted(indexed), indexed, {}, TIMEFRAME)
    targets = targets_of(candles)
    frames = {key: frame.join(targets[key]) for key, frame in frames.items()}
    model = refit_on_all_bars(frames, tiny_config(), epochs=2).model
    return recipe, frames, model


@pytest.fixture
def make_server() -> Iterator[Callable[..., BinanceFuturesServer]]:
    servers = []

    def make(*args, **kwargs) -> BinanceFuturesServer:
        server = serve(*args, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


LIVE_CUT = 2500  # the exchange of `live_world` has bars 0 .. LIVE_CUT - 1
SECOND = pd.Timedelta(seconds=1)


def live_project(tmp_path: Path, server_url: str) -> Path:
    """A project copy whose `test` environment writes under tmp_path/data and reads the loopback
    exchange (fast retries: a failing exchange fails a run in well under a second)."""
    return make_test_project(tmp_path, {
        "ingestion": {"source": "exchange", "api_url": server_url, "symbols": list(SYMBOLS),
                      "timeframes": [TIMEFRAME], "start": START.isoformat(), "end": None,
                      "download": {"progress": False, "timeout_s": 2, "max_workers": 1},
                      "retry": {"max_attempts": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.02,
                                "unreached_attempts": 1, "unreached_delay_s": 0.01},
                      "rate_limit": {"enabled": False}},
        "signals": {"stale_tolerance_s": 0, "lock_timeout_s": 10},
    })


@pytest.fixture
def live_world(tmp_path, trained, candles, funding, make_server):
    """(project, server, deployment): a warm store up to bar LIVE_CUT - 4, the model deployed in the
    project's data/06_models."""
    server = make_server({key: frame.iloc[:LIVE_CUT] for key, frame in candles.items()}, funding,
                         now=START + (LIVE_CUT - 3) * BAR + SECOND)
    project = live_project(tmp_path, server.url)
    warm_stores(tmp_path / "data" / "raw" / "store", server)
    deployed = deploy(tmp_path / "data" / "models", trained)
    return project, server, deployed
