"""The features pipeline, run by Kedro on the project's own catalog and parameters (paths moved
to a temporary folder), on real candles and synthetic funding."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner

from tests.features.conftest import load_real
from trading_engine.features import FUNDING_FEATURE_NAMES, OHLCV_FEATURE_NAMES, feature_names
from trading_engine.pipelines.features import create_pipeline
from trading_engine.settings import CONFIG_LOADER_ARGS
from trading_engine.sources.synthetic import generate_candles, generate_funding_rates

DATASETS = ("candles", "funding_rates", "feature_tables", "model_input", "feature_report")


def project_config(project_root, tmp_path, env: str | None = None):
    """The features section of the catalog (paths under tmp_path) and its parameters, of the
    base environment or of `env` over it."""
    loader = OmegaConfigLoader(str(project_root / "conf"), env=env, **CONFIG_LOADER_ARGS)
    catalog = {}
    for name in DATASETS:
        entry = dict(loader["catalog"][name])
        key = "path" if "path" in entry else "filepath"
        entry[key] = str(tmp_path / entry[key])
        catalog[name] = entry
    return catalog, loader["parameters"]["features"]


def test_pipeline_writes_feature_tables_model_input_and_report(project_root, tmp_path, shared_data_dir):
    catalog_config, params = project_config(project_root, tmp_path, "binance")  # every group asked for
    catalog = DataCatalog.from_config(catalog_config)
    rows = 2_000
    candles = {key: load_real(shared_data_dir, key, rows).reset_index()
               for key in ("BTC_USDT_5m", "ETH_USDT_5m")}
    start, end = candles["BTC_USDT_5m"]["timestamp"].iloc[[0, -1]]
    funding = generate_funding_rates(["BTC/USDT", "ETH/USDT"], start, end)
    catalog.save("candles", candles)
    catalog.save("funding_rates", {"BTC_USDT": funding["BTC/USDT:USDT"], "ETH_USDT": funding["ETH/USDT:USDT"]})
    catalog["params:features"] = params

    SequentialRunner().run(create_pipeline(), catalog)

    tables = {key: load() for key, load in catalog.load("feature_tables").items()}
    inputs = {key: load() for key, load in catalog.load("model_input").items()}
    assert sorted(tables) == sorted(inputs) == ["BTC_USDT_5m", "ETH_USDT_5m"]
    warmup = params["warmup_bars"]
    names = [*OHLCV_FEATURE_NAMES, *FUNDING_FEATURE_NAMES]  # the shared 5m files have no order flow
    for key, table in inputs.items():
        assert [c for c in table.columns if c.startswith("feat_")] == names
        assert len(tables[key]) == rows and len(table) == rows - warmup
        assert isinstance(table.index, pd.DatetimeIndex) and str(table.index.tz) == "UTC"
        assert np.isfinite(table[names].to_numpy()).all()
        at_settlement = (table.index.hour % 8 == 0) & (table.index.minute == 0)
        assert at_settlement.sum() >= 4 and (table["funding_rate"][~at_settlement] == 0).all()
        rates = funding[key[:3] + "/USDT:USDT"].set_index("timestamp")["funding_rate"]
        np.testing.assert_array_equal(table["funding_rate"][at_settlement],
                                      rates.reindex(table.index[at_settlement]))
    # ETH's cross-asset features come from BTC, BTC's from itself
    btc_return = np.log(candles["BTC_USDT_5m"]["close"]).diff().to_numpy()[warmup:]
    np.testing.assert_allclose(inputs["ETH_USDT_5m"]["feat_ref_ret_1"], btc_return, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(inputs["BTC_USDT_5m"]["feat_ref_ret_1"], btc_return, rtol=1e-5, atol=1e-9)

    report = json.loads((tmp_path / catalog_config["feature_report"]["filepath"]).read_text())
    assert report["feature_count"] == len(names)
    assert set(report["nan_share_before_warmup_drop"]) == set(names)
    assert report["nan_share_before_warmup_drop"]["feat_ema_100"] > 0
    clusters = report["correlation_clusters"]
    assert all(len(group) >= 2 and set(group) <= set(names) for group in clusters)
    assert any({"feat_rsi_14", "feat_rsi_21"} <= set(group) for group in clusters)


def test_order_flow_reaches_model_input_and_is_left_out_everywhere_when_a_series_lacks_it(
    project_root, tmp_path, caplog
):
    catalog_config, params = project_config(project_root, tmp_path, "binance")
    start, end = pd.Timestamp("2025-01-01", tz="UTC"), pd.Timestamp("2025-01-04", tz="UTC")
    generated = generate_candles(["BTC/USDT", "ETH/USDT"], "5m", start, end, seed=3)
    candles = {f"{s.split('/')[0]}_USDT_5m": frame for s, frame in generated.items()}
    funding = generate_funding_rates(["BTC/USDT", "ETH/USDT"], start, end, seed=3)
    settlements = {f"{s.split('/')[0]}_USDT": frame for s, frame in funding.items()}

    def run(candle_partitions, feature_params=params) -> dict:
        catalog = DataCatalog.from_config(catalog_config)
        catalog.save("candles", candle_partitions)
        catalog.save("funding_rates", settlements)
        catalog["params:features"] = feature_params
        SequentialRunner().run(create_pipeline(), catalog)
        return {key: load() for key, load in catalog.load("model_input").items()}

    every = run(candles)
    for table in every.values():
        assert [c for c in table.columns if c.startswith("feat_")] == list(feature_names())
        assert np.isfinite(table[list(feature_names())].to_numpy()).all()

    ohlcv_only = {**candles, "ETH_USDT_5m": candles["ETH_USDT_5m"].iloc[:, :6]}  # e.g. a file
    with caplog.at_level("WARNING"):
        reduced = run(ohlcv_only)
    assert "ETH_USDT_5m has no order flow" in caplog.text
    for key, table in reduced.items():
        assert [c for c in table.columns if c.startswith("feat_")] == list(feature_names(order_flow=False))
        pd.testing.assert_frame_equal(table[list(OHLCV_FEATURE_NAMES)], every[key][list(OHLCV_FEATURE_NAMES)])
    # the demo's parameters (base) ask for neither group: OHLCV features only, data or not
    demo = run(candles, project_config(project_root, tmp_path / "demo")[1])
    for table in demo.values():
        assert [c for c in table.columns if c.startswith("feat_")] == list(OHLCV_FEATURE_NAMES)
