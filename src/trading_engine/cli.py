"""Project command line: Kedro's own `kedro run`, with a user's mistake shown as one message.

Kedro picks up `cli` here and lets its `run` replace the built-in one. It takes every option of
Kedro's `run` (the same click options) and adds `--verbose`. The run itself is Kedro's.

- A mistake in what the user asked for (a `trading_engine.errors.UserError`, such as a parameter no
  pipeline can use; a pipeline that does not exist: Kedro's "Did you mean ..." message) ends the
  command with that message alone and exit status 1, without a traceback.
- `--verbose` (or TRADING_ENGINE_VERBOSE=1) shows the traceback of such errors too, and Kedro's
  per-dataset and per-node lines ("Loading data from ...", "Running node: ...", "Completed 3 out
  of 19 tasks"), which conf/logging.yml otherwise keeps below the console's level.

Any other error (a bug, a crash in a node) keeps its full traceback.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

from trading_engine.errors import UserError

VERBOSE_VARIABLE = "TRADING_ENGINE_VERBOSE"
# Kedro's ValueError for `--pipelines <a name that is not registered>` (KedroSession.run).
UNKNOWN_PIPELINE = "Failed to find the pipeline named"


def verbose_requested() -> bool:
    return os.environ.get(VERBOSE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def user_error_message(error: BaseException) -> str | None:
    """The message to show alone for an error that is the user's mistake; None for any other."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, ValueError) and str(error).startswith(UNKNOWN_PIPELINE):
        return str(error).strip()
    return None


def show_kedro_details() -> None:
    """Let the `kedro.*` loggers that conf/logging.yml sets above INFO (datasets, nodes, runner)
    log at INFO again."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("kedro.") and isinstance(logger, logging.Logger) and logger.level > logging.INFO:
            logger.setLevel(logging.NOTSET)


def _run(verbose: bool, **options: Any) -> Any:
    if verbose:
        os.environ[VERBOSE_VARIABLE] = "1"
    if verbose_requested():
        show_kedro_details()
    try:
        return kedro_run.callback(**options)
    except Exception as error:
        message = user_error_message(error)
        if message is None or verbose_requested():
            raise
        raise click.ClickException(f"{message}\n(run with --verbose for the traceback)") from None


@click.group(name="trading_engine")
def cli() -> None:
    """Commands of the Trading Engine project."""


run = click.Command(
    name="run",
    callback=_run,
    params=[*kedro_run.params,
            click.Option(["--verbose", "-v"], is_flag=True,
                         help="Show Kedro's dataset and node lines, and the traceback of a user's mistake "
                              f"(also: {VERBOSE_VARIABLE}=1).")],
    help=kedro_run.help,
    short_help=kedro_run.short_help,
)
cli.add_command(run)
