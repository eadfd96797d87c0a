"""Notebook 02: find the newest benchmark run, or make a quick one when there is none."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from lancesync_bench.demo.lab import QUICK_ENV
from lancesync_bench.errors import LanceSyncError
from lancesync_bench.results import latest_run

__all__ = ["progress_lines", "quick_run_command", "results_for_notebook"]

# In CI (QUICK_ENV set) one local-primary scenario on two profiles shows every figure that
# matters (loopback against emulated RTT, sync calls, baselines) in about a minute; a user
# without results gets the full quick run of every scenario.
_CI_SCENARIOS = ("desktop-local",)


# The quick run takes about this long on 2 quiet cores (all four scenarios; CI's one
# scenario about a minute); said up front, since the cell shows nothing else until then.
_QUICK_RUN_S = 75


def quick_run_command(out: Path, *, ci: bool) -> list[str]:
    """The ``lancesync-bench run --quick`` command the notebook runs when it has no results.

    Its progress bar goes to stderr, which :func:`results_for_notebook` relays into the cell.
    """
    cmd = [sys.executable, "-m", "lancesync_bench", "run", "--quick"]
    cmd += ["--out", str(out)]
    if ci:
        for name in _CI_SCENARIOS:
            cmd += ["--scenario", name]
        cmd += ["--profile", "loopback", "--profile", "same-region"]
    return cmd


def progress_lines(chunks: Iterable[str]) -> Iterator[str]:
    """Lines worth showing from a progress bar's output: one per cell, not per redraw.

    The bar redraws itself with carriage returns several times a second; a notebook cell
    would keep every redraw. A line is passed on when it differs from the last one shown
    in more than its timings (the bracketed part of a tqdm line).
    """
    shown, pending = "", ""
    for chunk in chunks:
        pending += chunk
        *complete, pending = re.split(r"[\r\n]", pending)
        for line in complete:
            key = line.split("[", 1)[0].strip()
            if key and key != shown:
                shown = key
                yield line.strip()
    if pending.strip() and pending.split("[", 1)[0].strip() != shown:
        yield pending.strip()


def _chunks(stream: IO[str]) -> Iterator[str]:
    while chunk := stream.read(256):
        yield chunk


def results_for_notebook(results_dir: str | Path = "../results") -> Path:
    """The newest run under ``results_dir``; when there is none, run a quick benchmark.

    The benchmark runs as a separate process (the notebook's own event loop stays free),
    exactly as a user would run it from a terminal; its progress is printed in the cell.
    """
    folder = Path(results_dir)
    run = latest_run(folder)
    if run is not None:
        return run
    folder.mkdir(parents=True, exist_ok=True)
    ci = bool(os.environ.get(QUICK_ENV))
    cmd = quick_run_command(folder, ci=ci)
    print(
        f"No benchmark run under {folder}: running `lancesync-bench {' '.join(cmd[3:])}` "
        f"first (about {_QUICK_RUN_S} s on 2 cores; one line per cell below).",
        flush=True,
    )
    last = "no output"
    with tempfile.TemporaryFile("w+", encoding="utf-8") as table:
        proc = subprocess.Popen(
            cmd, stdout=table, stderr=subprocess.PIPE, text=True, encoding="utf-8"
        )
        assert proc.stderr is not None
        with proc:
            for line in progress_lines(_chunks(proc.stderr)):
                print(line, flush=True)
                last = line
        table.seek(0)
        summary = table.read().strip().splitlines()
    run = latest_run(folder)
    if proc.returncode != 0 or run is None:
        raise LanceSyncError(f"the quick benchmark failed (exit {proc.returncode}): {last}")
    print(*summary[-3:], sep="\n")  # S3 server, results path and duration, targets line
    return run
