"""Run the project as ``python -m trading_engine`` (`kedro run`), or a live command:
``python -m trading_engine signals --every 5m``, ``rollback``, ``deployments``
(trading_engine/live/service.py)."""

import sys
from pathlib import Path

from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project

LIVE_COMMANDS = ("signals", "rollback", "deployments")


def main(*args, **kwargs):
    if len(sys.argv) > 1 and sys.argv[1] in LIVE_COMMANDS:
        from trading_engine.live.service import cli

        return cli(sys.argv[1:], prog_name="python -m trading_engine")
    package_name = Path(__file__).parent.name
    configure_project(package_name)
    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    sys.exit(main())
