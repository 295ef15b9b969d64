"""The deployed model: a self-contained artifact read with weights_only=True, versioned by Kedro,
named by the `deployed` pointer; rolling back is one command."""

from __future__ import annotations

import dataclasses
import io
import json
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tests.conftest import make_test_project
from tests.live.conftest import COSTS, RULE, deploy, deployed_dataset
from trading_engine.live.deployment import NoDeploymentError, code_hash
from trading_engine.live.service import cli


def test_the_artifact_loads_with_weights_only_and_holds_everything_a_decision_needs(tmp_path, trained,
                                                                                   model_input):
    deployed = deploy(tmp_path, trained)
    path = deployed_dataset(tmp_path).registry.path_of(deployed.version)

    artifact = torch.load(io.BytesIO(path.read_bytes()), weights_only=True)

    assert path == tmp_path / "deployed_model.pt" / deployed.version / "deployed_model.pt"  # Kedro's versions
    model = artifact["model"]
    assert set(model["state_dict"]) and set(model["scaler"]) == {"center", "scale", "clip"}
    assert artifact["feature_names"] == model["feature_names"] == trained.feature_names
    assert artifact["rule"] == dataclasses.asdict(RULE) and artifact["costs"] == dataclasses.asdict(COSTS)
    assert {"reference_symbol", "order_flow", "funding", "warmup_bars"} <= set(artifact["features"])
    assert artifact["horizon"] == 5 and artifact["timeframe"] == "5m" and len(artifact["series"]) == 3
    assert artifact["data_range"] and artifact["evaluation"]["portfolio"]["sharpe"] == 1.0
    assert artifact["code_hash"] == code_hash() and len(artifact["config_hash"]) == 64
    # The loaded model forecasts exactly as the trained one.
    np.testing.assert_array_equal(deployed.model.predict(model_input)["pred_return"],
                                  trained.predict(model_input)["pred_return"])
    # The card is plain JSON without the weights; another rule gives another configuration hash.
    json.dumps(deployed.card)
    assert "state_dict" not in json.dumps(deployed.card)
    other = deploy(tmp_path / "other", trained, rule=dataclasses.replace(RULE, cost_multiple=2.0))
    assert other.card["config_hash"] != deployed.card["config_hash"]


def test_rollback_to_an_earlier_deployed_version_works(tmp_path, trained):
    first = deploy(tmp_path, trained)
    time.sleep(0.01)  # Kedro's versions are millisecond timestamps
    second = deploy(tmp_path, trained, rule=dataclasses.replace(RULE, cost_multiple=2.0))
    registry = deployed_dataset(tmp_path).registry
    assert registry.versions() == [first.version, second.version]
    assert deployed_dataset(tmp_path).load().version == second.version  # a deploy points at itself

    assert registry.roll_back() == first.version

    loaded = deployed_dataset(tmp_path).load()
    assert loaded.version == first.version and loaded.rule.cost_multiple == 1.0
    assert registry.roll_back(to=second.version) == second.version
    assert [entry["action"] for entry in registry.record()["history"]] == ["deploy", "deploy", "rollback", "rollback"]
    with pytest.raises(NoDeploymentError, match="no deployed-model version 'nope'"):
        registry.roll_back(to="nope")


def test_rollback_is_one_command(tmp_path, trained, monkeypatch):
    project = make_test_project(tmp_path, {})
    models = tmp_path / "data" / "models"  # the test environment's data/06_models
    first = deploy(models, trained)
    time.sleep(0.01)
    second = deploy(models, trained)
    monkeypatch.chdir(project)

    listed = CliRunner().invoke(cli, ["deployments", "--env", "test"])
    result = CliRunner().invoke(cli, ["rollback", "--env", "test"])

    assert listed.exit_code == 0 and f"* {second.version}" in listed.output
    assert result.exit_code == 0, result.output
    assert f"{second.version} -> {first.version}" in result.output
    assert deployed_dataset(models).load().version == first.version
