"""Notebook 02: find the newest benchmark run, or make a quick one when there is none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lancesync_bench.demo.lab import QUICK_ENV
from lancesync_bench.errors import LanceSyncError
from lancesync_bench.results import latest_run

__all__ = ["quick_run_command", "results_for_notebook"]

# In CI (QUICK_ENV set) one local-primary scenario on two profiles shows every figure that
# matters (loopback against emulated RTT, sync calls, baselines) in about a minute; a user
# without results gets the full quick run of every scenario.
_CI_SCENARIOS = ("desktop-local",)


def quick_run_command(out: Path, *, ci: bool) -> list[str]:
    """The ``lancesync-bench run --quick`` command the notebook runs when it has no results."""
    cmd = [sys.executable, "-m", "lancesync_bench", "run", "--quick", "--no-progress"]
    cmd += ["--out", str(out)]
    if ci:
        for name in _CI_SCENARIOS:
            cmd += ["--scenario", name]
        cmd += ["--profile", "loopback", "--profile", "same-region"]
    return cmd


def results_for_notebook(results_dir: str | Path = "../results") -> Path:
    """The newest run under ``results_dir``; when there is none, run a quick benchmark.

    The benchmark runs as a separate process (the notebook's own event loop stays free),
    exactly as a user would run it from a terminal.
    """
    folder = Path(results_dir)
    run = latest_run(folder)
    if run is not None:
        return run
    folder.mkdir(parents=True, exist_ok=True)
    cmd = quick_run_command(folder, ci=bool(os.environ.get(QUICK_ENV)))
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    run = latest_run(folder)
    if done.returncode != 0 or run is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise LanceSyncError(f"the quick benchmark failed (exit {done.returncode}): {tail[0]}")
    return run
