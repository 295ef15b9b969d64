"""`make viz` and `make mlflow` (trading_engine/serve.py): Ctrl-C or SIGTERM stops the server and
every child it started (kedro-viz's uvicorn, MLflow's workers); nothing is left on the port."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT


def free_port() -> int:
    """A free port below the ephemeral range (kedro-viz refuses ports above 49151)."""
    for port in random.Random(os.getpid()).sample(range(20000, 32000), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32000")


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def process_groups() -> dict[int, int]:
    """pid -> process group of every process on the machine."""
    groups = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            groups[int(stat.parent.name)] = int(fields[2])
    return groups


def command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return condition()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("make") is None, reason="needs Linux and make")
# SIGTERM to make left kedro-viz's uvicorn child on the port before; Ctrl-C is the other way to stop.
@pytest.mark.parametrize(("target", "server", "stop"), [("viz", "viz run", "sigterm"), ("mlflow", "mlflow ui", "ctrl-c")])
def test_make_server_targets_stop_the_server_and_its_children(target: str, server: str, stop: str,
                                                              tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}
    make = subprocess.Popen(["make", "-s", target, f"{target.upper()}_PORT={port}"], cwd=PROJECT_ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server_group = None
    try:
        assert wait_until(lambda: answers(port) or make.poll() is not None, 180) and make.poll() is None, \
            (tmp_path / "server.log").read_text()[-3000:]
        found = next(pid for pid in process_groups() if server in command_line(pid) and f"--port {port}" in command_line(pid))
        server_group = process_groups()[found]
        assert len([pid for pid, group in process_groups().items() if group == server_group]) >= 2  # its children too

        if stop == "ctrl-c":
            os.killpg(make.pid, signal.SIGINT)  # what a terminal sends to its foreground group
        else:
            make.send_signal(signal.SIGTERM)
        make.wait(timeout=60)

        assert wait_until(lambda: server_group not in process_groups().values(), 30), \
            [command_line(pid) for pid, group in process_groups().items() if group == server_group]
        assert not listening(port)
    finally:  # whatever happened, nothing of this test stays behind
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
        groups = {group for pid, group in process_groups().items() if f"--port {port}" in command_line(pid)}
        for group in groups | ({server_group} if server_group else set()):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
