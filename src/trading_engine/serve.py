"""Run a local server (kedro-viz, the MLflow UI) so that stopping it stops everything it started.

    python -m trading_engine.serve kedro viz run --port 4141

`kedro viz run` serves from a uvicorn child process, and `mlflow ui` from worker processes. Ending
only the command that `make` started leaves those children listening on the port. Here the
server runs in a process group of its own. Ctrl-C, SIGTERM or SIGHUP to this process, or the end
of its parent (`make`, killed even with SIGKILL: Linux's parent-death signal), ends the whole group:
SIGTERM first, then SIGKILL for whatever is still there after a grace period. The exit status is
the server's own when it stops by itself, 128 + the signal when it was stopped.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

GRACE_S = 10.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Stopped(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, _frame: object) -> None:
    raise Stopped(signum)


def end_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent ends (no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(leader: subprocess.Popen, grace_s: float = GRACE_S) -> None:
    """SIGTERM to the leader's process group; SIGKILL to what is left after `grace_s`."""
    group = leader.pid
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signum)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                leader.wait(timeout=0.1)  # reap the leader, or it counts as alive
            if not group_alive(group):
                return
            time.sleep(0.1)


def serve(command: Sequence[str]) -> int:
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_stopped)
    end_with_parent()
    if os.getppid() == 1:  # the parent ended before the parent-death signal was armed
        return 128 + signal.SIGTERM
    server = subprocess.Popen(list(command), start_new_session=True)
    try:
        return server.wait()
    except Stopped as stopped:
        return 128 + stopped.signum
    finally:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        stop_group(server)


def main(argv: Sequence[str] | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    return serve(command)


if __name__ == "__main__":
    sys.exit(main())
