"""The training pipeline through the project's own catalog entries (real files in a temporary folder)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import torch
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from tests.training.conftest import make_model_input, tiny_config
from trading_engine.pipelines.training import create_pipeline
from trading_engine.training import LOG_COLUMNS, PREDICTION_COLUMNS, FoldModel

OUTPUTS = ("fold_layout", "fold_models", "fold_predictions", "holdout_model", "holdout_predictions", "predictions",
           "training_log", "training_summary")


def test_pipeline_writes_fold_models_predictions_log_and_summary(project_root, tmp_path, monkeypatch):
    loader = OmegaConfigLoader(str(project_root / "conf"), base_env="base", default_run_env="base")
    entries = {name: loader["catalog"][name] for name in ("model_input", *OUTPUTS)}
    monkeypatch.chdir(tmp_path)  # the catalog's relative data/ paths now point into tmp_path
    catalog = DataCatalog.from_config(entries)
    frames = make_model_input(n_bars=1500)
    catalog.save("model_input", frames)
    catalog["params:training"] = MemoryDataset(dataclasses.asdict(tiny_config(max_epochs=2, timeframe="1h")))
    catalog["params:trading"] = MemoryDataset(loader["parameters"]["trading"])

    SequentialRunner().run(create_pipeline(), catalog)

    assert sorted(catalog.load("fold_models")) == ["fold_0", "fold_1"]
    checkpoint_path = tmp_path / "data" / "06_models" / "fold_models" / "fold_1.pt"
    reloaded = FoldModel.from_checkpoint(torch.load(checkpoint_path, weights_only=True))
    predictions = catalog.load("predictions")
    assert list(predictions.columns) == list(PREDICTION_COLUMNS)
    assert set(predictions["segment"]) == {"validation", "test", "holdout"}
    ours = predictions[(predictions["fold"] == 1) & (predictions["segment"] == "test")]
    again = reloaded.predict(frames)
    merged = ours.merge(again, on=["series", "timestamp"], suffixes=("", "_again"))
    assert len(merged) == len(ours)
    pd.testing.assert_series_equal(merged["prob_up"], merged["prob_up_again"], check_names=False, rtol=1e-5)
    assert list(catalog.load("training_log").columns) == list(LOG_COLUMNS)
    summary = catalog.load("training_summary")
    assert summary["fold_layout"]["purge_bars"] == 15 + 8 and len(summary["folds"]) == 2
    assert catalog.load("fold_layout") == summary["fold_layout"]
    # The holdout is predicted by the refitted model, saved apart, trained for the last fold's best epochs.
    holdout = predictions[predictions["segment"] == "holdout"]
    assert set(holdout["fold"]) == {2}
    refit = FoldModel.from_checkpoint(catalog.load("holdout_model"))
    assert catalog.load("holdout_model")["epochs"] == summary["folds"][-1]["best_epoch"] == catalog.load("fold_models")["fold_1"]()["best_epoch"]
    again = refit.predict(frames).merge(holdout, on=["series", "timestamp"], suffixes=("_again", ""))
    assert len(again) == len(holdout)
    pd.testing.assert_series_equal(again["prob_up"], again["prob_up_again"], check_names=False, rtol=1e-5)
