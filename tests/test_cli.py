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


def invoke_run(project: Path, monkeypatch: pytest.MonkeyPatch, *args: str):
    """`kedro run ARGS` in this process (click's test runner): the message, the exit status and
    the exception it ended with."""
    from click.testing import CliRunner
    from kedro.framework.startup import bootstrap_project

    from trading_engine.cli import run

    bootstrap_project(project)
    monkeypatch.chdir(project)
    return CliRunner().invoke(run, list(args))


def test_a_misspelt_pipeline_gets_kedros_did_you_mean_without_a_traceback(project: Path, monkeypatch) -> None:
    # find_pipelines(raise_errors=True) turned it into "ImportError: An error occurred while importing
    # the 'trading_engine.pipelines.evalution' module" under a traceback of 112 lines.
    result = invoke_run(project, monkeypatch, "--pipelines", "evalution")
    assert result.exit_code == 1
    assert "Failed to find the pipeline named 'evalution'" in result.output and "Did you mean" in result.output
    assert "    evaluation" in result.output
    assert "ImportError" not in result.output and isinstance(result.exception, SystemExit)


def test_verbose_shows_the_traceback_of_a_mistake(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trading_engine.cli import VERBOSE_VARIABLE
    from trading_engine.parameter_checks import ParameterError

    monkeypatch.setenv(VERBOSE_VARIABLE, "0")  # restored afterwards: --verbose sets it for the run
    quiet = invoke_run(project, monkeypatch, "--params", "training.model=lstm")
    assert quiet.exit_code == 1 and "unknown model 'lstm'" in quiet.output
    assert not isinstance(quiet.exception, ParameterError)  # a message, not the exception
    verbose = invoke_run(project, monkeypatch, "--verbose", "--params", "training.model=lstm")
    assert isinstance(verbose.exception, ParameterError)  # raised: Python prints its traceback
