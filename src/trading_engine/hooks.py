"""Project hooks, registered in `settings.py` (`HOOKS`).

- `ParameterHooks`: before the first node runs, every settings object the run's pipelines build
  from parameters is built once (trading_engine.parameter_checks), so a typo or a bad value fails
  in seconds with one message; a single `--params` value for a list parameter
  (`ingestion.symbols=XRP/USDT:USDT`) becomes a one-element list.
- `OutputLocationHooks`: once a run succeeded, `after_pipeline_run` logs the files of the datasets
  the run saved (the outputs of the pipeline that ran, after `--pipelines`, `--nodes`, ...
  filtering), grouped by the data layer they lie in (`08_reporting`, ...), so the last lines of a
  run say where to look. Datasets held in memory are not listed (they are not kept).
"""

from __future__ import annotations

import logging
import re
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

    @hook_impl
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
