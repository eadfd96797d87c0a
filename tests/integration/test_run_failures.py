"""A run against an S3 endpoint that does not answer: failures, never samples, exit 1.

Before, such a run exited 0 with backup and restore latencies for calls that made no
request: a sync-like call returns a report with ``reachable=False`` instead of raising,
and the runner timed it like any other.
"""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import pytest

from lancesync_bench.cli import main

pytestmark = pytest.mark.integration

_SCENARIO = """
description = "tiny desktop, S3 down"
[env]
FRONTEND_TYPE = "desktop"
BACKEND_LOCATION = "local"
# Fail fast: a refused connection is not retried.
S3_MAX_RETRIES = "0"
[workload]
sizes = [200]
quick_sizes = [200]
quick_repetitions = 20
dim = 16
seed = 7
repetitions = 20
warmup = 2
queries = 20
[profiles.loopback]
rtt_ms = 0
default = true
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # free once closed: nothing listens there


def test_operations_against_an_unreachable_endpoint_fail_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "down.toml").write_text(_SCENARIO, encoding="utf-8")
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("S3_BUCKET", "bench")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY")
    for name in ("FRONTEND_TYPE", "BACKEND_LOCATION"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "results"
    args = ["run", "--s3", "external", "--quick", "--scenarios-dir", str(scenarios)]
    code = main([*args, "--out", str(out), "--no-baselines", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "operation(s) FAILED and were not recorded as samples" in printed
    assert "backup_after_add_1" in printed
    run = next(out.iterdir())
    failed = json.loads((run / "results.json").read_text())["extra"]["failed_operations"]
    assert {f["operation"] for f in failed} >= {"backup_after_add_1", "restore_latest"}
    with (run / "samples.csv").open(encoding="utf-8") as f:
        ops = {row["operation"] for row in csv.DictReader(f)}
    assert "point_read" in ops  # local reads still measured
    assert not {op for op in ops if op.startswith(("backup", "restore"))}
