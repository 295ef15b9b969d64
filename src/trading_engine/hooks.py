"""Project hooks, registered in `settings.py` (`HOOKS`).

- `ParameterHooks`: before the first node runs, every settings object the run's pipelines build
  from parameters is built once (trading_engine.parameter_checks), so a typo or a bad value fails
  in seconds with one message; a single `--params` value for a list parameter
  (`ingestion.symbols=XRP/USDT:USDT`) becomes a one-element list.
- `TrackingHooks`: every run is an MLflow run (trading_engine.tracking, conf/<env>/tracking.yml):
  its parameters, the headline metrics, the reports, plots and checkpoints, one nested run per
  tuning trial.
- `OutputLocationHooks`: once a run succeeded, `after_pipeline_run` logs the files of the datasets
  the run saved (the outputs of the pipeline that ran, after `--pipelines`, `--nodes`, ...
  filtering), grouped by the data layer they lie in (`08_reporting`, ...), so the last lines of a
  run say where to look. Datasets held in memory are not listed (they are not kept).
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset

logger = logging.getLogger(__name__)

# A data layer folder of the Kedro data structure: data/01_raw ... data/08_reporting.
_LAYER_FOLDER = re.compile(r"^\d\d_[a-z_]+$")


def dataset_location(dataset: Any) -> tuple[PurePath, bool] | None:
    """The file (`filepath`) or folder (`path`: partitioned datasets, the series store) a dataset
    writes to, and whether it is a folder; None for a dataset that is not stored in files."""
    if isinstance(dataset, MemoryDataset):
        return None
    describe = getattr(dataset, "_describe", None)
    description = describe() if callable(describe) else {}
    if description.get("filepath"):
        return PurePath(str(description["filepath"])), False
    if description.get("path"):
        return PurePath(str(description["path"])), True
    return None


def data_layer(location: PurePath) -> str:
    """The data layer folder a location lies in (`08_reporting`), else its parent folder."""
    layer = next((part for part in location.parts if _LAYER_FOLDER.match(part)), None)
    return layer or str(location.parent)


def outputs_by_layer(dataset_names: Iterable[str], catalog: Any, project_path: Path | None = None) -> dict[str, list[str]]:
    """Dataset name -> location of every stored dataset in `dataset_names`, grouped by data layer
    (layers sorted, locations relative to `project_path` where they lie under it)."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for name in sorted(dataset_names):
        if name not in catalog:
            continue
        found = dataset_location(catalog.get(name))
        if found is None:
            continue
        location, is_folder = found
        shown = location
        if project_path is not None and location.is_absolute():
            try:
                shown = location.relative_to(project_path)
            except ValueError:
                pass
        grouped[data_layer(location)].append(f"{name}: {shown}{'/' if is_folder else ''}")
    return dict(sorted(grouped.items()))


def format_outputs(grouped: dict[str, list[str]]) -> str:
    lines = []
    for layer, entries in grouped.items():
        lines.append(f"  {layer}")
        lines.extend(f"    {entry}" for entry in entries)
    return "\n".join(lines)


def configured_parameters(config_loader: Any) -> dict[str, Any]:
    """The parameters of the configuration files, without the run's `--params`."""
    runtime = config_loader.runtime_params
    config_loader.runtime_params = {}
    try:
        return config_loader["parameters"]
    finally:
        config_loader.runtime_params = runtime


class ParameterHooks:
    """Checks every parameter section the run reads before its first node runs."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        from trading_engine.parameter_checks import single_values_as_lists

        loader = context.config_loader
        if getattr(loader, "runtime_params", None):
            loader.runtime_params = single_values_as_lists(loader.runtime_params, configured_parameters(loader))

    @hook_impl(tryfirst=True)  # before any other hook starts work for a run that will not happen
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        from trading_engine.parameter_checks import check_parameters, sections_read

        check_parameters(catalog.load("parameters"), sections_read(pipeline.inputs()))


class OutputLocationHooks:
    """Logs, at the end of a run, the files of the datasets it saved."""

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], run_result: dict[str, Any], pipeline: Any,
                           catalog: Any) -> None:
        project_path = run_params.get("project_path")
        grouped = outputs_by_layer(pipeline.all_outputs(), catalog, Path(project_path) if project_path else None)
        if grouped:
            logger.info("Outputs of this run, by data layer:\n%s", format_outputs(grouped))


def viz_layer(dataset: Any) -> str | None:
    """The kedro-viz layer of a catalog dataset (`metadata: kedro-viz: layer:`)."""
    metadata = getattr(dataset, "metadata", None) or {}
    return (metadata.get("kedro-viz") or {}).get("layer")


def stored_outputs(dataset_names: Iterable[str], catalog: Any, layers: Iterable[str]) -> list[tuple[Path, str]]:
    """(file or folder, layer) of the datasets in `dataset_names` whose kedro-viz layer is one of
    `layers` and whose file or folder exists."""
    wanted, found = set(layers), []
    for name in sorted(dataset_names):
        if name not in catalog:
            continue
        dataset = catalog.get(name)
        location, layer = dataset_location(dataset), viz_layer(dataset)
        if location is not None and layer in wanted and Path(location[0]).exists():
            found.append((Path(location[0]), layer))
    return found


class TrackingHooks:
    """One MLflow run per `kedro run` (trading_engine.tracking)."""

    def __init__(self) -> None:
        self._settings: Any = None
        self._project_path: Path | None = None
        self._worker: Any = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        from kedro.config import MissingConfigException

        from trading_engine.tracking import TrackingSettings

        try:
            config = context.config_loader["tracking"].get("tracking")
        except (KeyError, MissingConfigException):
            config = None
        self._settings = TrackingSettings.from_config(config)
        self._project_path = Path(context.project_path)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        from trading_engine.tracking import TrackingWorker

        self._worker = None
        pipelines = run_params.get("pipeline_names") or ["__default__"]
        if self._settings is None or not self._settings.tracks(pipelines):
            return
        tags = {"kedro.pipelines": ",".join(pipelines), "kedro.env": str(run_params.get("env")),
                "kedro.session_id": str(run_params.get("run_id")),
                "kedro.runtime_params": str(run_params.get("runtime_params") or {})}
        run_name = "+".join(pipelines).replace("__default__", "default")
        self._worker = TrackingWorker(self._settings, self._project_path, run_name, catalog.load("parameters"), tags)
        self._worker.start()

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        from trading_engine.tracking import BACKTEST_METRICS, STUDY_TRIALS, headline_metrics

        if self._worker is None:
            return
        if dataset_name == BACKTEST_METRICS:
            self._worker.add_metrics(headline_metrics(data))
        elif dataset_name == STUDY_TRIALS:
            self._worker.add_trials(data)

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], run_result: dict[str, Any], pipeline: Any,
                           catalog: Any) -> None:
        self._finish("FINISHED", pipeline, catalog)

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._finish("FAILED", pipeline, catalog, f"{type(error).__name__}: {error}")

    def _finish(self, status: str, pipeline: Any, catalog: Any, error: str | None = None) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        started = time.perf_counter()
        artifacts = stored_outputs(pipeline.all_outputs(), catalog, worker.settings.artifact_layers)
        if worker.finish(status, artifacts, error):
            logger.info("Tracked as MLflow run %s in experiment %r with %d artifacts (the run waited %.1f s for "
                        "tracking); compare runs with `make mlflow`: %s", worker.result["run_id"],
                        worker.settings.experiment, len(artifacts), time.perf_counter() - started, worker.run_url())
