"""trading_engine.parameter_checks: every settings object the pipelines build, built from the
parameters before the first node runs; the registry follows the settings classes by itself."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import pkgutil
import re
import typing
from pathlib import Path

import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

import trading_engine
from tests.conftest import PROJECT_ROOT, make_test_project
from trading_engine.parameter_checks import (
    CHECKS,
    ParameterError,
    check_parameters,
    parameter_problems,
    section,
    sections_read,
    single_values_as_lists,
)
from trading_engine.settings import CONFIG_LOADER_ARGS


def project_parameters(env: str | None = None) -> dict:
    return OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)["parameters"]


def changed(params: dict, path: str, value) -> dict:
    params = copy.deepcopy(params)
    *parents, leaf = path.split(".")
    node = params
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return params


@pytest.mark.parametrize("env", [None, "binance", "seed_1m"])
def test_the_projects_parameters_pass_every_check(env) -> None:
    assert parameter_problems(project_parameters(env)) == []


COMPOSE_FILES = ("docker-compose.yml", "docker/smoke.compose.yml")


def compose_params() -> list[tuple[str, str, object]]:
    """(file, path, value) of every `--params` override in the compose files' commands; values
    taken from the environment (`$${...}`) are left out."""
    found = []
    for name in COMPOSE_FILES:
        for overrides in re.findall(r'--params \\?"([^"\\]+)', (PROJECT_ROOT / name).read_text()):
            for item in overrides.split(","):
                path, _, value = item.partition("=")
                if "$" not in value:
                    found.append((name, path, yaml.safe_load(value)))  # numbers as `kedro run --params` reads them
    return found


def test_the_compose_files_params_pass_every_check() -> None:
    # A renamed parameter left in a compose command fails only inside a container, minutes into a build.
    overrides = compose_params()
    assert any(path.startswith("evaluation.") for _, path, _ in overrides), overrides  # the smoke run's
    params = project_parameters()
    for _, path, value in overrides:
        params = changed(params, path, value)
    assert parameter_problems(params) == [], overrides


def test_every_settings_class_with_from_params_is_checked() -> None:
    # A settings class added later with its own from_params needs a check here, or this fails.
    classes = set()
    for module_info in pkgutil.walk_packages(trading_engine.__path__, "trading_engine."):
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if value.__module__ == module.__name__ and "from_params" in vars(value):
                classes.add(value)
    checked = {check.settings_class for check in CHECKS}
    unchecked = {cls.__qualname__ for cls in classes if dataclasses.is_dataclass(cls)} - {
        cls.__qualname__ for cls in checked if cls is not None}
    assert classes and not unchecked, f"settings classes no check builds: {sorted(unchecked)}"


def wrong_value_for(hint) -> object:
    """A value of another type than `hint` names."""
    return 12345 if str in _options(hint) else "not-a-value"


def _options(hint) -> tuple:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, __import__("types").UnionType) else (hint,)


def field_cases() -> list[tuple[str, str]]:
    """(check section, field) for every field of every checked dataclass that the project's
    parameters set; derived from the classes, so a new field is a new case."""
    params = project_parameters()
    cases = []
    for check in CHECKS:
        given = section(params, check.section)
        if check.settings_class is None or not isinstance(given, dict):
            continue
        hints = typing.get_type_hints(check.settings_class)
        cases.extend((check.section, field.name) for field in dataclasses.fields(check.settings_class)
                     if field.name in given and hints[field.name] is not typing.Any)
    return cases


@pytest.mark.parametrize(("where", "field"), field_cases())
def test_a_value_of_the_wrong_type_in_any_field_is_named(where: str, field: str) -> None:
    check = next(check for check in CHECKS if check.section == where)
    hint = typing.get_type_hints(check.settings_class)[field]
    problems = parameter_problems(changed(project_parameters(), f"{where}.{field}", wrong_value_for(hint)))
    assert any(problem.startswith(f"{where}.{field}") for problem in problems), problems


def test_typos_and_bad_values_are_named_with_the_valid_choices() -> None:
    params = changed(changed(project_parameters(), "training.model", "lstm"), "training.max_epochs", "abc")
    with pytest.raises(ParameterError) as raised:
        check_parameters(params)
    assert raised.value.problems == ["training.max_epochs: 'abc' is not an integer",
                                     "training: unknown model 'lstm'; choose one of ['tcn', 'transformer']"]
    problems = parameter_problems(changed(project_parameters(), "training.horizon", 45))
    assert problems == ["training.horizon: 45 is not a target horizon; choose one of features.targets.horizons "
                        "[5, 15, 30, 60]"]
    problems = parameter_problems(changed(project_parameters(), "training.learnin_rate", 0.1))
    assert len(problems) == 1 and "unknown training parameters ['learnin_rate']" in problems[0]
    assert "'learning_rate'" in problems[0]
    problems = parameter_problems(changed(project_parameters(), "ingestion.source", "binance"))
    assert problems == ["ingestion: unknown source 'binance'; choose one of ['synthetic', 'files', 'exchange', 'archive']"]


def test_only_the_sections_the_run_reads_are_checked() -> None:
    bad_training = changed(project_parameters(), "training.model", "lstm")
    bootstrap_project(PROJECT_ROOT)
    from kedro.framework.project import pipelines

    assert parameter_problems(bad_training, sections_read(pipelines["ingestion"].inputs())) == []
    assert parameter_problems(bad_training, sections_read(pipelines["training"].inputs()))
    assert parameter_problems(bad_training, sections_read(["parameters"]))  # a node reading every parameter


def test_a_single_value_for_a_list_parameter_becomes_a_one_element_list() -> None:
    configured = project_parameters()
    runtime = {"ingestion": {"symbols": "XRP/USDT:USDT", "timeframes": "15m", "start": "2025-01-01"},
               "features": {"targets": {"horizons": 60}}, "training": {"horizon": 60}}
    assert single_values_as_lists(runtime, configured) == {
        "ingestion": {"symbols": ["XRP/USDT:USDT"], "timeframes": ["15m"], "start": "2025-01-01"},
        "features": {"targets": {"horizons": [60]}}, "training": {"horizon": 60}}


def test_a_run_with_one_symbol_without_brackets_ingests_that_symbol(tmp_path: Path) -> None:
    project = make_test_project(tmp_path, {"ingestion": {"download": {"progress": False}}})
    bootstrap_project(project)
    runtime = {"ingestion": {"symbols": "XRP/USDT:USDT", "start": "2025-01-01", "end": "2025-01-03"}}
    with KedroSession.create(project_path=project, env="test", runtime_params=runtime) as session:
        session.run(pipeline_names=["ingestion"])
    assert sorted(path.name for path in (tmp_path / "data" / "raw" / "candles").iterdir()) == ["XRP_USDT_5m.parquet"]


def test_a_bad_parameter_stops_the_run_before_its_first_node(tmp_path: Path) -> None:
    project = make_test_project(tmp_path, {"training": {"max_epochs": "abc"}})
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="test") as session, pytest.raises(ParameterError):
        session.run()
    assert not (tmp_path / "data").exists() or not any(path.is_file() for path in (tmp_path / "data").rglob("*"))
