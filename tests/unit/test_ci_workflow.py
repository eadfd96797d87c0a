"""The shipped GitHub Actions workflow parses, and its commands are ones the CLI accepts.

docs/DEPLOYMENT.md once cited a `.github/workflows/bench.yml` that did not exist.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from lancesync_bench.cli import build_parser

yaml = pytest.importorskip("yaml", reason="pip install -e '.[dev]' (pyyaml)")

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "bench.yml"


def _workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _run_lines() -> list[str]:
    lines = []
    for job in _workflow()["jobs"].values():
        for step in job["steps"]:
            lines += [line.strip() for line in str(step.get("run", "")).splitlines()]
    return lines


def test_workflow_parses_with_triggers_and_jobs() -> None:
    data = _workflow()
    triggers = data["on"] if "on" in data else data[True]  # YAML 1.1 reads `on` as True
    assert set(triggers) == {"push", "pull_request"}
    assert set(data["jobs"]) == {"checks", "bench"}
    for job in data["jobs"].values():
        assert job["runs-on"] == "ubuntu-latest"
        assert job["steps"][0]["uses"].startswith("actions/checkout@")


def test_checks_job_runs_the_projects_ci_script() -> None:
    assert "bash .ci/run" in _run_lines()
    assert (REPO / ".ci" / "run").is_file()


def test_every_lancesync_bench_command_parses() -> None:
    commands = [line for line in _run_lines() if line.startswith("lancesync-bench ")]
    assert any(" run " in f" {c} " for c in commands)
    assert any(c.startswith("lancesync-bench gate ") for c in commands)
    parser = build_parser()
    for command in commands:
        words = [w if not w.startswith('"$') else "HEAD~1" for w in shlex.split(command)[1:]]
        args = parser.parse_args(words)  # exits 2 on an unknown option
        assert callable(args.func)


def test_deployment_guide_points_at_the_shipped_file() -> None:
    guide = (REPO / "docs" / "DEPLOYMENT.md").read_text(encoding="utf-8")
    assert ".github/workflows/bench.yml" in guide
    assert WORKFLOW.is_file()
