"""The project as a whole: the pipeline registry, the catalog against the pipelines, the layout
of the data folders per environment, the parameter merge, the kedro-viz graph, and the Docker
files against the project. Nothing here runs a pipeline."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.framework.startup import bootstrap_project
from omegaconf import OmegaConf

from tests.conftest import PROJECT_ROOT, copy_project, kedro_command

STUDY_PIPELINES = ("ingestion", "features", "training", "evaluation")
ALL_PIPELINES = {*STUDY_PIPELINES, "tuning", "__default__"}

# Node outputs deliberately kept in memory (docs/architecture.md, "Datasets in memory").
MEMORY_DATASETS = {
    "candle_ingestion_report", "funding_ingestion_report", "candle_quality", "funding_quality",
    "configurations_tried", "tuning_study_trials", "deployment_choice", "deployed_weights",
}
DATA_LAYER_PATH = re.compile(r"^data/0\d_[a-z_]+(/|$)")


@pytest.fixture(scope="module")
def registry() -> dict:
    bootstrap_project(PROJECT_ROOT)
    from kedro.framework.project import pipelines

    return dict(pipelines)


@pytest.fixture(scope="module")
def conf_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's conf/ with an empty conf/local, so a developer's local overrides don't count."""
    return copy_project(tmp_path_factory.mktemp("conf") / "project") / "conf"


def config_loader(conf_source: Path, env: str | None = None) -> OmegaConfigLoader:
    from trading_engine import settings

    return OmegaConfigLoader(conf_source=str(conf_source), env=env, **settings.CONFIG_LOADER_ARGS)


def catalog_locations(conf_source: Path, env: str | None) -> dict[str, PurePosixPath]:
    """Dataset name -> its `filepath` or `path`, as configured (relative to the project root)."""
    catalog = config_loader(conf_source, env)["catalog"]
    locations = {}
    for name, entry in catalog.items():
        if name.startswith("_") or not isinstance(entry, dict):
            continue
        location = entry.get("filepath") or entry.get("path")
        if location is not None:
            locations[name] = PurePosixPath(location)
    return locations


def pipeline_datasets(pipeline) -> set[str]:
    return {name for name in pipeline.datasets() if not name.startswith("params:") and name != "parameters"}


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def raw_parameters(env_folder: Path) -> dict[str, object]:
    """The flattened parameters of one environment's files, as written (no merge, no interpolation)."""
    flat: dict[str, object] = {}
    for path in sorted(env_folder.glob("parameters*.yml")):
        flat.update(flatten(yaml.safe_load(path.read_text()) or {}))
    return flat


# ------------------------------------------------------------------------------ pipelines


def test_registry_has_every_pipeline(registry) -> None:
    assert ALL_PIPELINES <= set(registry)
    for name in ALL_PIPELINES:
        assert registry[name].nodes, f"pipeline {name} has no nodes"


def test_default_pipeline_is_the_study_without_tuning(registry) -> None:
    default = {node.name for node in registry["__default__"].nodes}
    study = {node.name for name in STUDY_PIPELINES for node in registry[name].nodes}
    tuning = {node.name for node in registry["tuning"].nodes}
    assert default == study
    assert not default & tuning


def test_every_dataset_of_every_pipeline_is_in_the_catalog_or_documented_in_memory(registry, conf_copy) -> None:
    catalog = config_loader(conf_copy)["catalog"]
    used = set().union(*(pipeline_datasets(pipeline) for pipeline in registry.values()))
    undeclared = used - set(catalog) - MEMORY_DATASETS
    assert not undeclared, f"datasets used by a pipeline but not in conf/base/catalog.yml: {sorted(undeclared)}"
    assert MEMORY_DATASETS <= used, f"documented in-memory datasets no pipeline uses: {sorted(MEMORY_DATASETS - used)}"
    assert not MEMORY_DATASETS & set(catalog)
    architecture = (PROJECT_ROOT / "docs" / "architecture.md").read_text()
    assert all(f"`{name}`" in architecture for name in MEMORY_DATASETS)


def test_every_catalog_entry_is_used_by_a_pipeline(registry, conf_copy) -> None:
    used = set().union(*(pipeline_datasets(pipeline) for pipeline in registry.values()))
    unused = set(catalog_locations(conf_copy, None)) - used
    assert not unused, f"catalog entries no pipeline reads or writes: {sorted(unused)}"


# ------------------------------------------------------------------------------ data folders


def test_every_partitioned_output_is_overwritten_so_a_run_holds_only_its_own_series(registry, conf_copy) -> None:
    # Without overwrite, a run with other ingestion.symbols / .timeframes leaves its partitions behind
    # and the next run reads series that no longer exist upstream (KeyError: 'ETH_USDT_15m').
    catalog = config_loader(conf_copy)["catalog"]
    outputs = set().union(*(pipeline.all_outputs() for pipeline in registry.values()))
    partitioned = {name for name, entry in catalog.items()
                   if isinstance(entry, dict) and str(entry.get("type", "")).endswith("PartitionedDataset")}
    assert {"raw_candles", "candles", "feature_tables", "model_input", "fold_models"} <= partitioned & outputs
    kept = sorted(name for name in partitioned & outputs if catalog[name].get("overwrite") is not True)
    assert not kept, f"partitioned outputs that keep earlier runs' partitions: {kept}"


@pytest.mark.parametrize("env", [None, "binance"])
def test_every_catalog_entry_has_the_kedro_viz_layer_of_its_data_folder(conf_copy, env) -> None:
    catalog = config_loader(conf_copy, env)["catalog"]
    entries = {name: entry for name, entry in catalog.items() if not name.startswith("_") and isinstance(entry, dict)}
    assert entries
    for name, entry in entries.items():
        layer = ((entry.get("metadata") or {}).get("kedro-viz") or {}).get("layer")
        folder = next(part for part in PurePosixPath(entry.get("filepath") or entry["path"]).parts
                      if re.match(r"^\d\d_", part))
        assert layer == folder[3:], f"{name}: kedro-viz layer {layer!r}, data folder {folder}"


@pytest.mark.parametrize("env", [None, "binance"])
def test_every_catalog_path_lies_in_a_data_layer_folder(conf_copy, env) -> None:
    locations = catalog_locations(conf_copy, env)
    assert locations
    outside = {name: str(path) for name, path in locations.items() if not DATA_LAYER_PATH.match(str(path))}
    assert not outside, f"catalog paths outside data/0*_*/: {outside}"


def test_binance_data_never_shares_a_file_or_folder_with_the_demo(conf_copy) -> None:
    base, binance = catalog_locations(conf_copy, None), catalog_locations(conf_copy, "binance")
    assert set(base) == set(binance)
    for name in base:
        assert base[name] != binance[name], name
    # No folder dataset of one environment contains a file of the other.
    for mine, theirs in ((base, binance), (binance, base)):
        for name, folder in mine.items():
            for other, path in theirs.items():
                assert not path.is_relative_to(folder), f"{other} ({path}) lies under {name} ({folder})"
    base_storage = config_loader(conf_copy)["parameters"]["tuning"]["storage"]
    binance_storage = config_loader(conf_copy, "binance")["parameters"]["tuning"]["storage"]
    assert base_storage != binance_storage


def test_binance_parameters_override_single_keys_and_keep_the_rest_of_base(conf_copy) -> None:
    base = flatten(config_loader(conf_copy)["parameters"])
    binance = flatten(config_loader(conf_copy, "binance")["parameters"])
    overrides, interpolated = raw_parameters(conf_copy / "binance"), raw_parameters(conf_copy / "base")
    assert overrides, "the binance environment overrides no parameter"
    for key, value in overrides.items():
        assert binance[key] == value, key
    # Values that follow globals (e.g. outputs_folder: ${globals:paths.reporting}) differ by design.
    interpolated = {key for key, value in interpolated.items() if isinstance(value, str) and "${" in value}
    kept = {key for key in base if key not in overrides and key not in interpolated
            and not any(key.startswith(o + ".") for o in overrides)}
    assert kept, "every base parameter is overridden"
    for key in kept:
        assert binance[key] == base[key], f"{key} lost in the binance environment"
    # e.g. the demo's horizon survives while the real data's sizes replace the demo's
    assert binance["training.horizon"] == base["training.horizon"]
    assert binance["ingestion.source"] == "archive" and base["ingestion.source"] == "synthetic"


# ------------------------------------------------------------------------------ kedro-viz


def test_viz_build_shows_every_pipeline_with_its_datasets(registry, tmp_path) -> None:
    project = copy_project(tmp_path / "project")
    kedro_command(project, "viz", "build")
    api = project / "build" / "api"
    main = json.loads((api / "main").read_text())
    assert {pipeline["id"] for pipeline in main["pipelines"]} == set(registry)
    for name, pipeline in registry.items():
        graph = json.loads((api / "pipelines" / name).read_text())
        shown = {node["name"] for node in graph["nodes"] if node["type"] == "data"}
        tasks = {node["name"] for node in graph["nodes"] if node["type"] == "task"}
        assert shown == pipeline_datasets(pipeline), name
        assert tasks == {node.name for node in pipeline.nodes}, name
    # The layer bands: every stored dataset in its layer, in the order data flows.
    layers = {node["name"]: node.get("layer") for node in main["nodes"] if node["type"] == "data"}
    assert {name for name, layer in layers.items() if layer is None} <= MEMORY_DATASETS
    assert set(main["layers"]) == set(layers.values()) - {None}
    assert main["layers"][0] == "raw" and main["layers"][-1] == "reporting"
    default = json.loads((api / "pipelines" / "__default__").read_text())
    names = {node["name"] for node in default["nodes"]}
    assert {"raw_candles", "candles", "model_input", "predictions", "backtest_metrics",
            "backtest_equity_curves_plot", "backtest_calibration_plot"} <= names


def test_the_readme_gives_each_pipelines_kedro_viz_url(registry) -> None:
    # The default view draws every pipeline at 32 % zoom; one pipeline is readable.
    readme = (PROJECT_ROOT / "README.md").read_text()
    for name in set(registry) - {"__default__"}:
        assert f"http://127.0.0.1:4141/?pid={name}" in readme, name


# ------------------------------------------------------------------------------ Docker


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())


def compose_defaults(text: str) -> str:
    """`${NAME:-default}` -> default, as Compose interpolates when NAME is unset; `$$` -> `$`."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text).replace("$$", "$")


def command_text(service: dict) -> str:
    command = service["command"]
    return " ".join(command) if isinstance(command, list) else command


def test_compose_has_the_services_and_ports(compose) -> None:
    services = compose["services"]
    assert set(services) == {"pipeline", "tuning", "viz", "optuna-dashboard", "mlflow", "postgres", "study-storage", "signals"}
    assert [compose_defaults(port) for port in services["viz"]["ports"]] == ["4141:4141"]
    assert [compose_defaults(port) for port in services["optuna-dashboard"]["ports"]] == ["8080:8080"]
    assert [compose_defaults(port) for port in services["mlflow"]["ports"]] == ["5000:5000"]
    assert "kedro viz run --host 0.0.0.0 --port 4141" in command_text(services["viz"])
    assert "--host 0.0.0.0 --port 8080" in command_text(services["optuna-dashboard"])
    assert "trading_engine.tracking ui --host 0.0.0.0 --port 5000" in command_text(services["mlflow"])
    assert compose_defaults(services["postgres"]["image"]) == "postgres:16"
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert re.search(r"^VIZ_PORT \?= 4141$", makefile, re.MULTILINE)
    assert "--port $(VIZ_PORT)" in makefile.split("\nviz:")[1].split("\n\n")[0]


def test_compose_runs_registered_pipelines_on_the_shared_postgres_study(compose, registry) -> None:
    services = compose["services"]
    assert re.search(r"(^|\s)exec kedro run --params", command_text(services["pipeline"]))  # the default run
    for name in ("pipeline", "tuning"):
        for listed in re.findall(r"--pipelines[ =](\S+)", command_text(services[name])):
            assert set(listed.split(",")) <= set(registry), listed
        assert "tuning.storage=$${OPTUNA_STORAGE}" in command_text(services[name])
    assert "--pipelines tuning" in command_text(services["tuning"])
    assert "--pipeline " not in (PROJECT_ROOT / "docker-compose.yml").read_text()
    # The storage URL names the postgres service, its user and its database.
    environment = compose["x-trading-engine"]["environment"]
    storage = compose_defaults(environment["OPTUNA_STORAGE"])
    postgres = {key: compose_defaults(value) for key, value in services["postgres"]["environment"].items()}
    assert storage == f"postgresql://{postgres['POSTGRES_USER']}@postgres:5432/{postgres['POSTGRES_DB']}"
    assert compose_defaults(environment["PGPASSWORD"]) == postgres["POSTGRES_PASSWORD"]
    assert "$${OPTUNA_STORAGE}" in command_text(services["optuna-dashboard"])
    # Kedro's --params parser keeps the URL whole.
    parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"tuning.storage={storage}"]))
    assert parsed == {"tuning": {"storage": storage}}
    # PostgreSQL keeps its data in a named volume; the study's tables are created once it is
    # healthy, and everything that reads the study waits for them (the dashboard restarted on
    # `relation "version_info" does not exist` before).
    volume = services["postgres"]["volumes"][0].split(":")
    assert volume[0] in compose["volumes"] and volume[1] == "/var/lib/postgresql/data"
    assert services["study-storage"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "open_storage(os.environ['OPTUNA_STORAGE'])" in command_text(services["study-storage"])
    for name in ("pipeline", "tuning", "optuna-dashboard"):
        assert services[name]["depends_on"]["study-storage"]["condition"] == "service_completed_successfully"
    assert services["tuning"]["depends_on"]["pipeline"]["condition"] == "service_completed_successfully"
    # The signals service writes its ledger to the same PostgreSQL server (runtime parameter ledger_url).
    signals = services["signals"]
    assert "exec python -m trading_engine signals --every 5m" in command_text(signals)
    assert "ledger_url=$${LEDGER_URL}" in command_text(signals)
    ledger = compose_defaults(signals["environment"]["LEDGER_URL"])
    assert ledger == f"postgresql://{postgres['POSTGRES_USER']}@postgres:5432/{postgres['POSTGRES_DB']}"
    assert compose_defaults(signals["environment"]["PGPASSWORD"]) == postgres["POSTGRES_PASSWORD"]
    assert signals["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert signals["profiles"] == ["live"]  # a plain `docker compose up` stays the demo


def test_compose_and_dockerfile_agree_on_paths(compose) -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    workdir = re.search(r"^WORKDIR (\S+)$", dockerfile, re.MULTILINE).group(1)
    app = compose["x-trading-engine"]
    assert app["build"]["context"] == "."
    host, container = app["volumes"][0].split(":")[:2]
    assert host == "./data" and (PROJECT_ROOT / "data").is_dir()
    assert container == f"{workdir}/data"
    for name in ("pipeline", "tuning", "viz", "optuna-dashboard", "mlflow", "study-storage"):
        assert compose["services"][name]["image"] == app["image"]
    assert "TORCH_VARIANT" in app["build"]["args"] and re.search(r"^ARG TORCH_VARIANT=cpu$", dockerfile, re.MULTILINE)
    # The default for users: the official slim image and the package indexes.
    assert dockerfile.startswith("#") and re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE) == ["${BASE_IMAGE}", "${BASE_IMAGE}"]
    assert re.search(r"^ARG WHEELHOUSE=false$", dockerfile, re.MULTILINE)
    assert compose_defaults(app["build"]["args"]["WHEELHOUSE"]) == "false"
    assert compose_defaults(app["build"]["args"]["BASE_IMAGE"]) == "python:3.11-slim"
    assert "KEDRO_DISABLE_TELEMETRY=true" in dockerfile and "MLFLOW_DISABLE_TELEMETRY=true" in dockerfile
    # The entrypoint takes the owner of the mounted data/ and drops root.
    assert re.search(r'^ENTRYPOINT \["trading-engine-entrypoint"\]$', dockerfile, re.MULTILINE)
    entrypoint = (PROJECT_ROOT / "docker" / "entrypoint.sh").read_text()
    assert 'stat -c %u "$app/data"' in entrypoint and "exec setpriv --reuid" in entrypoint
    assert re.search(r"^EXPOSE 4141 8080 5000$", dockerfile, re.MULTILINE)
    ignored = {line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            assert (PROJECT_ROOT / path).exists() and path not in ignored, path
    # Kedro finds the logging configuration at conf/logging.yml, from the working directory.
    assert (PROJECT_ROOT / "conf" / "logging.yml").is_file()


def test_the_smoke_run_changes_only_the_data_folder_and_the_run_lengths(compose) -> None:
    smoke = yaml.safe_load((PROJECT_ROOT / "docker" / "smoke.compose.yml").read_text())
    # Every service a plain `docker compose up` starts (signals waits for its `live` profile).
    app_services = {name for name, service in compose["services"].items()
                    if service.get("image") == "trading-engine:latest" and not service.get("profiles")}
    assert set(smoke["services"]) == app_services
    for name, service in smoke["services"].items():
        assert set(service) <= {"volumes", "command"}, name
        assert service["volumes"] == ["${SMOKE_DATA:?SMOKE_DATA}:/home/trader/app/data"]
    for name in ("pipeline", "tuning"):
        assert "tuning.storage=$${OPTUNA_STORAGE}" in command_text(smoke["services"][name])
        assert command_text(smoke["services"][name]).startswith(command_text(compose["services"][name]).rstrip('"'))
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert "docker-smoke" not in makefile.split("\ntest:")[1].split("\n\n")[0]  # kept out of `make test`
