"""What MLflow run tracking costs a demo run (docs/tracking.md, docs/benchmarks.md "Run tracking").

The demo run (`kedro run`, the default pipeline, base environment) in a scratch copy of the
project, alternately with tracking off (TRADING_ENGINE_TRACKING=0) and on, `--pairs` times; the
first run with tracking on creates the store (the worst case). Reports every run's wall time,
the time the run waited for tracking at its end (from its log), and the overhead of the mean
tracked run over the mean untracked one.

    .venv/bin/python bench/bench_tracking.py [--pairs 2] [--params "training.max_epochs=1,..."]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import copy_project  # noqa: E402


def run(project: Path, tracking: bool, params: str | None) -> tuple[float, float | None]:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
           "TRADING_ENGINE_TRACKING": "1" if tracking else "0"}
    command = [sys.executable, "-m", "kedro", "run", *(["--params", params] if params else [])]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"kedro run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    waited = re.findall(r"the run waited ([0-9.]+) s for tracking", (project / "info.log").read_text())
    return seconds, float(waited[-1]) if tracking and waited else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--params", default=None, help="kedro run --params for every run (default: the demo as is)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        project = copy_project(Path(scratch) / "project")
        times: dict[bool, list[float]] = {True: [], False: []}
        for pair in range(arguments.pairs):
            for tracking in (True, False):
                seconds, waited = run(project, tracking, arguments.params)
                times[tracking].append(seconds)
                load = os.getloadavg()[0]
                print(f"pair {pair}: tracking {'on ' if tracking else 'off'} {seconds:7.1f} s"
                      + (f" (waited {waited:.1f} s for tracking)" if waited is not None else "")
                      + f", load average {load:.1f}", flush=True)
    on, off = statistics.mean(times[True]), statistics.mean(times[False])
    print(f"mean: on {on:.1f} s, off {off:.1f} s, overhead {100 * (on - off) / off:+.1f} %")


if __name__ == "__main__":
    main()
