"""The live pipelines through Kedro: signals and paper in a project whose exchange is the loopback
Binance server (the catalog's deployed model, candle store and ledger); deploy and replay on a
copy of the demo run, as the README runs them."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.conftest import kedro_command
from tests.live.conftest import BAR, LIVE_CUT, SECOND, START, set_clock
from trading_engine.live.ledger import Ledger, sqlite_url


def test_signals_then_paper_run_through_the_catalog(tmp_path, live_world):
    project, server, deployed = live_world
    bootstrap_project(project)
    for bar in (LIVE_CUT - 4, LIVE_CUT - 3, LIVE_CUT - 2):
        set_clock(server, START + (bar + 1) * BAR + SECOND)
        with KedroSession.create(project_path=project, env="test") as session:
            session.run(pipeline_names=["signals"])
    with KedroSession.create(project_path=project, env="test") as session:
        session.run(pipeline_names=["paper"])

    ledger = Ledger(sqlite_url(tmp_path / "data" / "model_output" / "signal_ledger.db")).read()
    assert len(ledger) == 9 and (ledger["model_version"] == deployed.version).all()
    report = json.loads((tmp_path / "data" / "reporting" / "signals_report.json").read_text())
    assert report["written"] == 3 and report["model_version"] == deployed.version
    metrics = json.loads((tmp_path / "data" / "reporting" / "paper_metrics.json").read_text())
    assert metrics["comparison"]["positions_equal"] and metrics["comparison"]["bars"] == 9
    assert metrics["ledger"]["rows_per_model_version"] == {deployed.version: 9}
    assert (tmp_path / "data" / "reporting" / "paper_vs_backtest.png").stat().st_size > 0
    assert len(pd.read_parquet(tmp_path / "data" / "model_output" / "paper_bars.parquet")) == 9


@pytest.mark.slow
def test_deploy_then_replay_on_the_demo_run(demo_project, tmp_path):
    project = tmp_path / "demo"
    shutil.copytree(demo_project, project, ignore=shutil.ignore_patterns("*.log"))

    kedro_command(project, "run", "--pipelines", "deploy,replay", "--params", "replay.bars=3")

    models = project / "data" / "06_models"
    pointer = json.loads((models / "deployed.json").read_text())
    version = pointer["version"]
    assert (models / "deployed_model.pt" / version / "deployed_model.pt").is_file()
    card = json.loads((models / "deployed_model_card.json" / version / "deployed_model_card.json").read_text())
    summary = json.loads((project / "data" / "06_models" / "training_summary.json").read_text())
    assert card["feature_names"] == summary["feature_names"] and card["horizon"] == summary["config"]["horizon"]
    assert card["data_range"]["train"]["end"] < card["data_range"]["model_input"]["end"]  # purged at the end
    assert {"code_hash", "config_hash", "rule", "costs", "evaluation"} <= set(card)
    report = json.loads((project / "data" / "08_reporting" / "replay_report.json").read_text())
    assert report["parity"] and report["bars"] == 3 * 3 and report["model_version"] == version
