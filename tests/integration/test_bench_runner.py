"""A tiny benchmark run end to end: service and baseline samples, stats, verdicts, sweep.

Two small scenarios in a temporary folder: the S3-primary mode (plain LanceDB on local disk
and on S3 as baselines, plus a two-level concurrency sweep) and the local-primary sync mode
(the aws/rclone folder copies, or their skip reasons when the tools are not installed).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lancesync_bench.bench.baselines import (
    AWS_S3_SYNC,
    LANCEDB_LOCAL,
    LANCEDB_S3,
    RCLONE_SYNC,
    TOOL_START,
)
from lancesync_bench.bench.runner import RunOptions, run_benchmark
from lancesync_bench.results import load, load_run
from lancesync_bench.s3.embedded import EmbeddedSeaweedFS

pytestmark = pytest.mark.integration

_SCENARIO = """
description = "tiny {name}"
[env]
FRONTEND_TYPE = "web"
BACKEND_LOCATION = "{backend}"
[workload]
sizes = [200]
dim = 16
seed = 7
repetitions = 20
warmup = 2
queries = 20
[profiles.loopback]
rtt_ms = 0
default = true
"""
_SWEEP = """
[sweep]
users = [1, 2]
ops_per_user = 6
rate_per_s = 20
ramp_steps = 2
p99_bound_ms = 100000
"""


@pytest.fixture(scope="module")
def tiny_run(
    tmp_path_factory: pytest.TempPathFactory, s3_server: EmbeddedSeaweedFS
) -> tuple[Path, str]:
    """One run of two tiny scenarios against the session's S3 server; (run folder, secret)."""
    scenarios = tmp_path_factory.mktemp("scenarios")
    cloud = _SCENARIO.format(name="cloud", backend="cloud") + _SWEEP
    (scenarios / "tiny-cloud.toml").write_text(cloud, encoding="utf-8")
    local = _SCENARIO.format(name="local", backend="local")
    (scenarios / "tiny-local.toml").write_text(local, encoding="utf-8")
    out = tmp_path_factory.mktemp("results")
    if not s3_server.running:
        s3_server.start()
    ep = s3_server.endpoint()
    env = {
        "S3_ENDPOINT_URL": ep.url or "",
        "S3_BUCKET": ep.bucket,
        "AWS_ACCESS_KEY_ID": ep.access_key_id,
        "AWS_SECRET_ACCESS_KEY": ep.secret_access_key.reveal(),
        "AWS_REGION": ep.region,
    }
    # The run reads an external endpoint from the environment: the session's server, whose
    # secret the test knows (a server the run started itself would keep it to itself).
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("S3_PREFIX", raising=False)
        outcome = run_benchmark(
            RunOptions(s3="external", out=out, scenarios_dir=scenarios),
            progress=False,
            say=lambda _: None,
        )
    return outcome.run_dir, ep.secret_access_key.reveal()


def test_samples_hold_service_and_baseline_paths(tiny_run: tuple[Path, str]) -> None:
    run_dir, _ = tiny_run
    samples = load(run_dir)
    paths = set(samples["path"])
    assert {"service", LANCEDB_LOCAL, LANCEDB_S3} <= paths
    cloud = samples[samples["scenario"] == "tiny-cloud"]
    for path in (LANCEDB_LOCAL, LANCEDB_S3):
        ops = set(cloud[(cloud["path"] == path) & (cloud["phase"] == "warm")]["operation"])
        assert ops == {"add_1", "point_read", "vector_search"}, path
    s3_reads = cloud[(cloud["path"] == LANCEDB_S3) & (cloud["operation"] == "point_read")]
    assert (s3_reads["requests"] > 0).all()  # counted by the proxy, per operation
    local_reads = cloud[(cloud["path"] == LANCEDB_LOCAL) & (cloud["operation"] == "point_read")]
    assert (local_reads["requests"] == 0).all()


def test_baselines_take_turns_with_the_service_and_match_its_n(
    tiny_run: tuple[Path, str],
) -> None:
    run_dir, _ = tiny_run
    samples = load(run_dir).reset_index(drop=True)  # rows in the order they were timed
    cell = samples[(samples["scenario"] == "tiny-cloud") & (samples["phase"] == "warm")]
    for op in ("point_read", "vector_search", "add_1"):
        mine = cell[cell["operation"] == op]
        service = mine[mine["path"] == "service"]
        local = mine[mine["path"] == LANCEDB_LOCAL]
        s3 = mine[mine["path"] == LANCEDB_S3]
        assert len(local) == len(service) >= 20, op
        assert 20 <= len(s3) <= len(service), op  # its own time budget may stop it sooner
        # Alternating rounds: the baseline's first sample was timed before the service's last.
        assert local.index.min() < service.index.max(), op
        assert service.index.min() < local.index.min(), op


def test_sync_tools_measured_or_skipped_with_a_reason(tiny_run: tuple[Path, str]) -> None:
    run_dir, _ = tiny_run
    samples = load(run_dir)
    skipped = {row["what"]: row for row in load_run(run_dir)["extra"]["skipped"]}
    local = samples[samples["scenario"] == "tiny-local"]
    for path, binary in ((AWS_S3_SYNC, "aws"), (RCLONE_SYNC, "rclone")):
        mine = local[local["path"] == path]
        if shutil.which(binary) is None:
            assert mine.empty
            assert f"{binary!r} not found on PATH" in skipped[path]["reason"]
        else:
            assert set(mine["operation"]) == {"sync_after_add_1", TOOL_START}
            copies = mine[mine["operation"] == "sync_after_add_1"]
            assert len(copies) == 3 and (copies["requests"] > 0).all()
            assert (mine[mine["operation"] == TOOL_START]["requests"] == 0).all()
    assert skipped[LANCEDB_S3]["cells"] == ["tiny-local/loopback/200"]


def test_stats_verdicts_comparisons_and_sweep(tiny_run: tuple[Path, str]) -> None:
    run_dir, _ = tiny_run
    data = load_run(run_dir)
    stat_paths = {(s["path"], s["operation"]) for s in data["stats"] if s["phase"] == "warm"}
    assert ("service", "point_read") in stat_paths
    assert (LANCEDB_S3, "add_1") in stat_paths
    assert data["verdicts"] and {v["path"] for v in data["verdicts"]} == {"service"}
    comparisons = data["extra"]["comparisons"]
    pairs = {(c["scenario"], c["operation"], c["baseline"]) for c in comparisons}
    assert ("tiny-cloud", "point_read", LANCEDB_S3) in pairs
    assert ("tiny-local", "add_1", LANCEDB_LOCAL) in pairs
    assert all(c["median_ratio"] > 0 for c in comparisons)

    sweep = data["extra"]["sweep"]
    assert {(r["users"], r["operation"], r["rate_per_s"]) for r in sweep} == {
        (u, op, rate)
        for u, rate in ((1, 20.0), (2, 20.0), (2, 40.0), (2, 80.0))  # then the ramp at 2 users
        for op in ("point_read", "add_1")
    }
    for r in sweep:
        assert r["offered_per_s"] == r["users"] * r["rate_per_s"]
        assert 0 < r["throughput_per_s"] <= r["offered_per_s"] * 1.01
    ramp = [r for r in sweep if r["rate_per_s"] == 80.0]
    # The last ramp level either ran out of steps (no knee) or found one, with the reason.
    assert all(r["knee"] is None or "throughput stopped growing" in r["knee"] for r in ramp)
    assert (samples := load(run_dir))["operation"].str.startswith("ramp_point_read_u2_r").any()
    reads_u2 = next(
        r
        for r in sweep
        if r["users"] == 2 and r["operation"] == "point_read" and r["rate_per_s"] == 20
    )
    assert reads_u2["n"] == 2 * 4  # two users, four reads each (every third op writes)
    samples = load(run_dir)
    assert (samples["operation"] == "sweep_point_read_u2").sum() == 8
    assert (samples["operation"] == "sweep_add_1_u1").sum() == 2


def test_secret_appears_nowhere_in_the_results(tiny_run: tuple[Path, str]) -> None:
    run_dir, secret = tiny_run
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert files
    for file in files:
        text = file.read_bytes()
        assert secret.encode() not in text, file
        assert json.dumps(secret)[1:-1].encode() not in text, file


def test_s3_primary_reads_are_shown_with_their_staleness_bound_and_without_one(
    tiny_run: tuple[Path, str],
) -> None:
    run_dir, _ = tiny_run
    samples = load(run_dir)
    cloud = samples[(samples["scenario"] == "tiny-cloud") & (samples["path"] == "service")]
    cached = cloud[cloud["operation"] == "point_read"]
    fresh = cloud[cloud["operation"] == "fresh_read"]
    assert len(fresh) > 0 and (fresh["requests"] >= 1).all()  # asks S3 every time
    # Within the bound S3 is not asked; the reads that came past it refreshed first.
    assert cached["requests"].median() == 0 and cached["requests"].mean() < 1
    verdicts = load_run(run_dir)["verdicts"]
    reads = [
        v for v in verdicts if v["scenario"] == "tiny-cloud" and v["operation"] == "point_read"
    ]
    assert reads and all("CACHE_MAX_STALENESS_MS=1000" in v["note"] for v in reads)
    judged = {v["target"] for v in verdicts if v["operation"] == "fresh_read"}
    assert judged == {"s3_read", "s3_read_p95"}
