"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# MLflow run tracking is off for the suite's runs; the demo run and tests/test_tracking.py switch it on.
os.environ.setdefault("TRADING_ENGINE_TRACKING", "0")

# The loopback exchange and archive servers and the candles they serve (sources and ingestion tests).
pytest_plugins = ["tests.sources.fixtures"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Real Binance candles live beside the project (never in it): ../shared/data
SHARED_DATA_DIR = Path(os.environ.get("TRADING_ENGINE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The folder of real candles; the test is skipped cleanly when it is absent."""
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"real candles not found at {SHARED_DATA_DIR}")
    return SHARED_DATA_DIR


LAYERS = ("raw", "intermediate", "primary", "feature", "model_input", "models", "model_output", "reporting")


def make_test_project(tmp_path: Path, parameters: dict) -> Path:
    """A copy of the project's base configuration with a `test` environment that writes every
    data layer under tmp_path/data/<layer> and overrides `parameters` (merged softly). The package
    itself is the installed one. Run it with `KedroSession.create(project_path=..., env="test")`."""
    import yaml

    project = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT / "conf" / "base", project / "conf" / "base")
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project / "pyproject.toml")
    (project / "src").mkdir()
    (project / "conf" / "local").mkdir()
    test_env = project / "conf" / "test"
    test_env.mkdir()
    paths = {layer: str(tmp_path / "data" / layer) for layer in LAYERS}
    (test_env / "globals.yml").write_text(yaml.safe_dump({"paths": paths}))
    (test_env / "parameters_test.yml").write_text(yaml.safe_dump(parameters))
    return project


# The demo run of `demo_project`: the default pipeline on the offline synthetic data, shrunk to
# seconds (60 days instead of the demo's year, one short epoch, two folds, fewer random baselines
# and bootstrap resamples); its output is a pipe, as in CI. The outputs have every dataset and
# column of a full run; only the numbers are from a smaller model on less data.
DEMO_RUN_PARAMS = {
    "ingestion.end": "2025-03-02",
    "training.max_epochs": 1,
    "training.max_samples_per_epoch": 1024,
    "training.folds.n_folds": 2,
    "evaluation.settings.random_seeds": 20,
    "evaluation.settings.baseline_max_train_rows": 20000,
    "evaluation.settings.bootstrap_resamples": 200,
}


def copy_project(destination: Path) -> Path:
    """A runnable copy of the project at `destination`: conf (without conf/local), pyproject.toml,
    notebooks and the empty data layer folders. `src/` is an empty folder: Kedro only checks that
    it exists, and the package is imported from the editable install."""
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PROJECT_ROOT / "pyproject.toml", destination / "pyproject.toml")
    shutil.copytree(PROJECT_ROOT / "conf", destination / "conf", ignore=shutil.ignore_patterns("local"))
    (destination / "conf" / "local").mkdir()
    shutil.copytree(PROJECT_ROOT / "notebooks", destination / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (destination / "src").mkdir()
    for layer in sorted((PROJECT_ROOT / "data").glob("0*_*")):
        (destination / "data" / layer.name).mkdir(parents=True)
    return destination


def kedro_command(project: Path, *args: str, timeout: float = 600,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`kedro ARGS` run in `project` with this interpreter (`env`: extra environment variables);
    fails the test with the log on error."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "200", **(env or {})}
    env.pop("KEDRO_LOGGING_CONFIG", None)
    result = subprocess.run([sys.executable, "-m", "kedro", *args], cwd=project, env=env,
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"kedro {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project in which `kedro run` (the default pipeline, base env) has run once
    per test session, with DEMO_RUN_PARAMS and MLflow tracking on, as for a user; its log is
    demo_run.log. Tests read its data/ and must not change it."""
    project = copy_project(tmp_path_factory.mktemp("demo") / "trading_engine")
    params = ",".join(f"{key}={value}" for key, value in DEMO_RUN_PARAMS.items())
    result = kedro_command(project, "run", "--params", params, env={"TRADING_ENGINE_TRACKING": "1"})
    (project / "demo_run.log").write_text(result.stdout + result.stderr)
    return project
