"""Live commands: `python -m trading_engine signals --every 5m`, `rollback`, `deployments`.

`signals --every 5m` runs the signals pipeline (a Kedro session, so `--env` and `--params`
work as for `kedro run`) once at start and then a few seconds (`--delay`) after every bar's
close, on the clock of the machine (kept by NTP; the exchange's own clock judges whether the
data is stale). A failed run (the exchange is down, a refusal, another run holding the ledger)
is logged in one line and the next bar is tried; the missed bar is caught up then (see
`signals.plan_decisions`). SIGTERM or SIGINT stop it cleanly: a run in progress finishes (it is
all-or-nothing anyway), the wait is cut short, the exit status is 0.

No order is sent to any exchange, and no API key is needed.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pandas as pd
from kedro.framework.cli.utils import _split_params

logger = logging.getLogger(__name__)

_EVERY = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# Failures of a run that are expected in operation: one line in the log, no traceback.
EXPECTED_FAILURES = ("SignalsRefused", "LedgerBusyError", "HostUnreachableError", "RetriesExhaustedError",
                     "NoDeploymentError", "NetworkError", "ExchangeError", "SeriesLockedError")


def parse_every(text: str) -> pd.Timedelta:
    """'5m' -> 5 minutes ('30s', '1h', '1d' too): the bar length the runs follow."""
    match = _EVERY.match(str(text).strip())
    if not match or int(match.group(1)) == 0:
        raise click.BadParameter(f"{text!r} is not a bar length like 1m, 5m, 1h (or 30s)", param_hint="--every")
    return pd.Timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def next_run(now_s: float, every: pd.Timedelta, delay_s: float) -> float:
    """The next moment (epoch seconds) `delay_s` after a bar's close (closes fall on multiples of
    `every` since the epoch, as the exchange's bars do)."""
    period = every.total_seconds()
    return ((now_s - delay_s) // period + 1) * period + delay_s


def run_every(run_once: Callable[[], Any], every: pd.Timedelta, delay_s: float, stop: threading.Event,
              clock: Callable[[], float] = time.time) -> int:
    """Call `run_once` now and `delay_s` after every bar's close until `stop` is set; a failure is
    logged and the loop goes on. -> the number of runs that failed."""
    failures = 0
    due = clock()
    while not stop.is_set():
        if stop.wait(max(due - clock(), 0.0)):
            break
        bar_close = pd.Timestamp(due - delay_s, unit="s", tz="UTC").floor(every)
        try:
            run_once()
        except Exception as error:  # noqa: BLE001 (the service survives any failed run)
            failures += 1
            if _is_expected(error):
                logger.error("signals run after the bar close of %s failed: %s: %s; trying again at the next bar",
                             bar_close.isoformat(), type(error).__name__, _root_message(error))
            else:
                logger.exception("signals run after the bar close of %s failed; trying again at the next bar",
                                 bar_close.isoformat())
        due = next_run(clock(), every, delay_s)
        if not stop.is_set():
            logger.info("next signals run at %s", pd.Timestamp(due, unit="s", tz="UTC").isoformat(timespec="seconds"))
    logger.info("signals service stopped (%d failed runs)", failures)
    return failures


def _causes(error: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def _is_expected(error: BaseException) -> bool:
    names = {klass.__name__ for cause in _causes(error) for klass in type(cause).__mro__}
    return bool(names & set(EXPECTED_FAILURES))


def _root_message(error: BaseException) -> str:
    expected = [cause for cause in _causes(error)
                if {klass.__name__ for klass in type(cause).__mro__} & set(EXPECTED_FAILURES)]
    return str((expected or [error])[0])


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop` (the loop ends after the run in progress)."""
    def handler(number: int, _frame: Any) -> None:
        logger.info("%s received: stopping after the run in progress", signal.Signals(number).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def kedro_signals_run(project_path: Path, env: str | None, params: dict[str, Any]) -> Callable[[], Any]:
    """One run of the signals pipeline in a fresh Kedro session (conf, catalog and the deployed
    pointer are read again: a rollback takes effect at the next run)."""
    from kedro.framework.session import KedroSession

    def run() -> Any:
        with KedroSession.create(project_path=project_path, env=env, runtime_params=params or None) as session:
            return session.run(pipeline_names=["signals"])

    return run


def _project() -> Path:
    from kedro.framework.startup import bootstrap_project
    from kedro.utils import find_kedro_project

    project = find_kedro_project(Path.cwd())
    if project is None:
        raise click.ClickException(f"{Path.cwd()} is not inside a Kedro project: run this from the project's folder")
    bootstrap_project(project)
    return Path(project)


def _registry(env: str | None) -> Any:
    from kedro.framework.session import KedroSession

    with KedroSession.create(project_path=_project(), env=env) as session:
        return session.load_context().catalog.get("deployed_model").registry


ENV_OPTION = click.option("--env", "-e", default=None, help="Kedro environment (e.g. binance), as for kedro run.")


@click.group(help="Live commands. No order is sent to any exchange and no API key is needed.")
def cli() -> None:
    pass


@cli.command("signals")
@click.option("--every", default=None, help="Run after every bar close, e.g. 5m, until stopped (default: one run).")
@click.option("--delay", default=2.0, show_default=True, type=float, help="Seconds after a bar's close.")
@ENV_OPTION
@click.option("--params", default="", callback=_split_params,
              help="Parameters, as for kedro run: e.g. ledger_url=postgresql://user@host/db")
def signals_command(every: str | None, delay: float, env: str | None, params: dict[str, Any]) -> None:
    """The signals pipeline: the target position of every series for the last closed bar."""
    run_once = kedro_signals_run(_project(), env, params)
    if every is None:
        try:
            run_once()
        except Exception as error:
            if _is_expected(error):  # a refusal, the exchange down, the ledger busy: one message, exit status 1
                raise click.ClickException(f"{type(error).__name__}: {_root_message(error)}") from None
            raise
        return
    stop = threading.Event()
    stop_on_signals(stop)
    logger.info("signals every %s, %.1f s after each close; SIGTERM or Ctrl-C stops", every, delay)
    run_every(run_once, parse_every(every), delay, stop)


@cli.command("rollback")
@click.option("--to", "version", default=None, help="The version to deploy (default: the one before the current).")
@ENV_OPTION
def rollback_command(version: str | None, env: str | None) -> None:
    """Point `deployed` back at an earlier version of the deployed model."""
    from trading_engine.live.deployment import NoDeploymentError

    registry = _registry(env)
    before = registry.deployed()
    try:
        after = registry.roll_back(version)
    except NoDeploymentError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"deployed model: {before} -> {after} ({registry.pointer})")


@cli.command("deployments")
@ENV_OPTION
def deployments_command(env: str | None) -> None:
    """List the deployed model's versions; * marks the one in use."""
    registry = _registry(env)
    current = registry.deployed()
    for version in registry.versions():
        click.echo(f"{'*' if version == current else ' '} {version}")
    if current is None:
        click.echo("(nothing deployed: kedro run --pipelines deploy)")
