"""`kedro run` as a user meets it (trading_engine/cli.py): a mistake gets one clear message, the
valid choices and no traceback, before anything runs; --verbose shows the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import copy_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("cli") / "project")


def kedro_run(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "200"}
    for name in ("KEDRO_LOGGING_CONFIG", "TRADING_ENGINE_VERBOSE"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "kedro", "run", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)


def stored_files(project: Path) -> list[Path]:
    return [path for path in (project / "data").rglob("*") if path.is_file()]


def test_bad_parameters_fail_before_any_node_with_one_message_and_no_traceback(project: Path) -> None:
    result = kedro_run(project, "--params", "training.model=lstm,training.max_epochs=abc")
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "training.max_epochs: 'abc' is not an integer" in output
    assert "training: unknown model 'lstm'; choose one of ['tcn', 'transformer']" in output
    assert "Traceback" not in output and "╭" not in output
    assert len(output.strip().splitlines()) <= 12, output
    assert not stored_files(project)  # ingestion did not run


def test_a_misspelt_pipeline_gets_kedros_did_you_mean_without_a_traceback(project: Path) -> None:
    result = kedro_run(project, "--pipelines", "evalution")
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "Failed to find the pipeline named 'evalution'" in output and "Did you mean" in output
    assert "    evaluation" in output
    assert "ImportError" not in output and "Traceback" not in output and "╭" not in output


def test_verbose_shows_the_traceback_of_a_mistake(project: Path) -> None:
    result = kedro_run(project, "--verbose", "--params", "training.model=lstm")
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "ParameterError" in output and ("Traceback" in output or "╭" in output)
