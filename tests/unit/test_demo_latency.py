"""Notebook 02's helper: newest run, or the quick benchmark command it would run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

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


def test_progress_lines_keep_one_line_per_cell_not_per_redraw() -> None:
    from lancesync_bench.demo.latency import progress_lines

    bar = (
        "S3: embedded (asked)\n"
        "  0%|          | 0/2 [00:00<?, ?cell/s]\r"
        "desktop-local loopback 1000:   0%|          | 0/2 [00:00<?, ?cell/s]\r"
        "desktop-local loopback 1000:   0%|          | 0/2 [00:05<?, ?cell/s]\r"
        "desktop-local same-region 1000:  50%|#####     | 1/2 [00:44<00:44, 44.9s/cell]\r"
        "desktop-local same-region 1000: 100%|##########| 2/2 [01:27<00:00, 43.7s/cell]\n"
    )
    # Split anywhere: a pipe hands over arbitrary pieces.
    pieces = [bar[i : i + 7] for i in range(0, len(bar), 7)]
    lines = list(progress_lines(pieces))
    assert lines[0] == "S3: embedded (asked)"
    assert len(lines) == 5  # the 00:05 redraw of cell 0 adds nothing
    assert lines[-1].startswith("desktop-local same-region 1000: 100%")


def test_a_quick_run_shows_its_progress_in_the_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No run yet: the notebook's first cell says what it runs, then relays the progress."""
    from lancesync_bench.demo import latency

    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from lancesync_bench.results import write_run\n"
        "for i in range(3):\n"
        "    sys.stderr.write(f'cell {i}: {i}/3 [00:0{i}]\\r'); sys.stderr.flush()\n"
        "out = Path(sys.argv[-1])\n"
        "write_run(out / 'run-1', metadata={}, scenarios=[], stats_rows=[], samples_rows=[],"
        " verdict_rows=[], run_id='run-1')\n"
        "print('results: done')\n"
    )

    def fake(out: Path, *, ci: bool) -> list[str]:
        return [sys.executable, "-c", script, "run", "--quick", str(out)]

    monkeypatch.setattr(latency, "quick_run_command", fake)
    run = latency.results_for_notebook(tmp_path)
    assert run == tmp_path / "run-1"
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].startswith(f"No benchmark run under {tmp_path}: running `lancesync-bench")
    assert "about 75 s" in shown[0]
    assert shown[1:4] == ["cell 0: 0/3 [00:00]", "cell 1: 1/3 [00:01]", "cell 2: 2/3 [00:02]"]
    assert shown[-1] == "results: done"
