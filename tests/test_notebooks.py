"""What a researcher sees after `kedro run` on the demo: the notebooks run top to bottom against
the run's catalog, kedro-viz previews its plots and metrics, and the run's log is Kedro's logging
configuration, ends with where the outputs are, and carries no OmegaConf deprecation noise.

All of them use `demo_project` (tests/conftest.py): one shrunk default run per test session."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import PROJECT_ROOT, kedro_command

NOTEBOOKS = sorted(path.name for path in (PROJECT_ROOT / "notebooks").glob("*.ipynb"))
# Figures each notebook must draw (a cell that fails to plot shows no image).
MIN_FIGURES = {"01_data.ipynb": 2, "02_features.ipynb": 1, "03_evaluation.ipynb": 4}


def test_the_three_notebooks_exist_and_are_stored_clean() -> None:
    assert NOTEBOOKS == sorted(MIN_FIGURES)
    for name in NOTEBOOKS:
        notebook = nbformat.read(PROJECT_ROOT / "notebooks" / name, as_version=4)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert "%load_ext kedro.ipython" in code[0].source.splitlines(), name
        assert all(not cell.outputs and cell.execution_count is None for cell in code), f"{name} has outputs"
        assert any('catalog.load("' in cell.source for cell in code), name


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom_on_the_demo_run(demo_project: Path, name: str) -> None:
    notebook = nbformat.read(demo_project / "notebooks" / name, as_version=4)
    # A last cell that says which project %load_ext kedro.ipython found.
    notebook.cells.append(nbformat.v4.new_code_cell("print('PROJECT', context.project_path)"))
    NotebookClient(notebook, kernel_name="python3", timeout=300,
                   resources={"metadata": {"path": str(demo_project / "notebooks")}}).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)
    # %load_ext kedro.ipython: no log records, no TqdmWarning
    assert not code[0].outputs, [output.get("text") or output.get("data", {}).get("text/plain") for output in code[0].outputs]
    assert not [output for cell in code for output in cell.outputs if output.output_type == "error"]
    figures = sum("image/png" in output.get("data", {}) for cell in code for output in cell.outputs)
    assert figures >= MIN_FIGURES[name]
    printed = "".join(output.get("text", "") for output in code[-1].outputs)
    assert f"PROJECT {demo_project}" in printed


def test_viz_previews_the_demo_runs_plots_and_metrics(demo_project: Path) -> None:
    kedro_command(demo_project, "viz", "build", "--include-previews")
    api = demo_project / "build" / "api"
    main = json.loads((api / "main").read_text())
    ids = {node["name"]: node["id"] for node in main["nodes"] if node["type"] == "data"}
    expected = {"backtest_equity_curves_plot": "ImagePreview", "backtest_calibration_plot": "ImagePreview",
                "backtest_metrics": "JSONPreview", "data_quality_report": "JSONPreview",
                "predictions": "TablePreview"}
    for name, preview_type in expected.items():
        node = json.loads((api / "nodes" / ids[name]).read_text())
        assert node.get("preview_type") == preview_type, name
        assert node.get("preview"), f"{name} has an empty preview"


def test_the_run_logs_with_the_projects_configuration_and_ends_with_its_outputs(demo_project: Path) -> None:
    log = (demo_project / "demo_run.log").read_text()
    assert "register_new_resolver" not in log
    # the file handler of conf/logging.yml, in its format
    assert re.search(r"^\S+ \S+ - trading_engine\.hooks - INFO - Outputs of this run",
                     (demo_project / "info.log").read_text(), re.MULTILINE)
    tail = log[log.rindex("Outputs of this run, by data layer:"):]
    for layer, output in (("01_raw", "raw_candles: data/01_raw/candles/"),
                          ("05_model_input", "model_input: data/05_model_input/model_input/"),
                          ("07_model_output", "predictions: data/07_model_output/predictions.parquet"),
                          ("08_reporting", "backtest_metrics: data/08_reporting/backtest_metrics.json")):
        assert re.search(rf"^\s+{layer}\s*$", tail, re.MULTILINE), layer
        assert output in tail
        assert (demo_project / output.split(": ")[1]).exists(), output
    assert "configurations_tried" not in tail  # in memory, not kept


def test_a_run_without_a_terminal_logs_lines_not_bars_nor_kedros_chatter(demo_project: Path) -> None:
    log = (demo_project / "demo_run.log").read_text()
    # No progress bar (the run's output is a pipe): one line per epoch instead.
    assert "\r" not in log and "batch/s" not in log and "%|" not in log
    epochs = re.findall(r"fold (\d+): epoch (\d+)/\d+, best=\d+, loss=\S+, val_sharpe=\S+", log)
    # Folds 0 and 1, and the holdout's refit (fold 2, no validation).
    assert {fold for fold, _ in epochs} == {"0", "1", "2"} and ("0", "1") in epochs
    # Kedro's per-dataset and per-node lines are below the console's level (kedro run --verbose).
    for chatter in ("Loading data from", "Saving data to", "Running node:", "Completed node:", "out of 19 tasks"):
        assert chatter not in log, chatter
    assert "lbfgs failed to converge" not in log and "ConvergenceWarning" not in log
