"""Notebook 02's helper: newest run, or the quick benchmark command it would run."""

from __future__ import annotations

import sys
from pathlib import Path

from lancesync_bench.demo.latency import quick_run_command, results_for_notebook
from lancesync_bench.results import write_run


def test_quick_command_is_the_cli_in_quick_mode(tmp_path: Path) -> None:
    full = quick_run_command(tmp_path, ci=False)
    assert full[:4] == [sys.executable, "-m", "lancesync_bench", "run"]
    assert "--quick" in full and str(tmp_path) in full
    assert "--scenario" not in full  # a user without results gets every scenario
    ci = quick_run_command(tmp_path, ci=True)
    assert ci[ci.index("--scenario") + 1] == "desktop-local"
    assert ci.count("--profile") == 2


def test_existing_run_is_used_without_running_anything(tmp_path: Path) -> None:
    written = write_run(
        tmp_path / "run-1",
        metadata={},
        scenarios=[],
        stats_rows=[],
        samples_rows=[],
        verdict_rows=[],
        run_id="run-1",
    )
    assert results_for_notebook(tmp_path) == written.parent
