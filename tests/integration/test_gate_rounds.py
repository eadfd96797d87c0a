"""The regression gate end to end: real quick benchmark rounds of one commit, one side slowed.

The repository is a snapshot of this checkout's package and scenarios committed into a
fresh git repository, so the rounds run exactly the code under test (committed or not).
Both sides are that one commit; the candidate's rounds carry the test-only switch
(LANCESYNC_BENCH_TEST_SLOWDOWN) that triples every timed point read inside its window: a
real slowdown of one operation, measured by the real recorder, runner and results. 3x sits
well above the rounds' drift on a 2-core machine shared with other jobs (rounds of one
commit moved 2-3x there at a load average of 4-5); the unit tests cover 1.3x-2x on
synthetic rounds with the drift measured on it. 5 rounds a side, as the CI's gate runs:
with 4, a later key (add_batch, 24 samples a round) once reached 1.32x at p 0.037 beside
the tripled reads. The tripled key is then confirmed on 5 new rounds a side, as the gate
does before it fails. About 6-7 minutes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import lancesync_bench
from lancesync_bench.bench.compare import format_comparison
from lancesync_bench.bench.continuous import GateOptions, run_gate
from lancesync_bench.bench.slowdown import ENV_VAR

pytestmark = pytest.mark.integration


def _snapshot_repo(where: Path) -> Path:
    """This checkout's package, scenarios and pyproject, committed into a new repository."""
    root = Path(lancesync_bench.__file__).resolve().parents[1]
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(root / "lancesync_bench", where / "lancesync_bench", ignore=ignore)
    shutil.copytree(root / "scenarios", where / "scenarios", ignore=ignore)
    shutil.copy2(root / "pyproject.toml", where / "pyproject.toml")
    ident = ["-c", "user.name=gate-test", "-c", "user.email=gate-test@example.invalid"]
    for args in (["init", "-q"], ["add", "-A"], [*ident, "commit", "-q", "-m", "snapshot"]):
        subprocess.run(["git", "-C", str(where), *args], check=True, capture_output=True)
    return where


def test_the_gate_catches_a_tripled_point_read_and_nothing_else(tmp_path: Path) -> None:
    repo = _snapshot_repo(tmp_path / "repo")
    lines: list[str] = []
    outcome = run_gate(
        GateOptions(
            base="HEAD",
            head="HEAD",
            repo=repo,
            rounds=5,
            s3="embedded",
            out=tmp_path / "rounds",
            candidate_env={ENV_VAR: "operation=point_read,factor=3"},
        ),
        progress=lines.append,
    )
    result = outcome.comparison
    rows = {r.operation: r for r in result.rows}
    table = "\n".join([*lines, format_comparison(result)])
    assert [r.operation for r in result.regressions] == ["point_read"], table
    assert rows["point_read"].ratio is not None and rows["point_read"].ratio > 1.5
    # Only a regression fails a gate, and the first assert allows none but point_read's.
    # An "improvement" elsewhere is not asserted against: the switch sleeps inside each
    # point read, so background work that would overlap later operations can finish during
    # those sleeps and a later key may truly run faster in B; and cold_read's round figure
    # rests on 2 opens. A fresh-clone CI run once saw one such key reach the improvement rule.
    assert rows["fixed_cpu_job"].verdict == "reference"
    assert len(result.runs_a) == len(result.runs_b) == 5
    assert outcome.base_commit == outcome.head_commit
    # One warm-up, 5 + 5 judged rounds, and 5 + 5 more that find point_read slower again.
    assert sum(line.startswith("warm-up round") for line in lines) == 1
    assert sum(line.startswith("round ") for line in lines) == 10
    assert sum(line.startswith("confirm round ") for line in lines) == 10
    assert outcome.confirmation is not None
    assert [r.operation for r in outcome.confirmation.regressions] == ["point_read"], table
