"""Runner pieces without a server: sweep schedule, baseline ratios, tool invocations, skips."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from lancesync_bench.bench import baselines as bl
from lancesync_bench.bench.cell import CellPlan
from lancesync_bench.bench.recorder import CellKey, Recorder
from lancesync_bench.bench.runner import RunOptions, _skip_rows, _sweeps, tool_cells
from lancesync_bench.bench.summary import format_baselines
from lancesync_bench.bench.sweep import (
    _run_schedule,
    intended_offsets,
    op_kinds,
    sweep_operation,
)
from lancesync_bench.bench.verdicts import comparison_rows
from lancesync_bench.config import Secret
from lancesync_bench.results import SampleRow
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.scenarios import load_scenario

SECRET = "s3cr3t-Value-Never-Shown"
EP = S3Endpoint(
    url="http://127.0.0.1:9000",
    region="us-east-1",
    access_key_id="bench",
    secret_access_key=Secret(SECRET),
    bucket="bench",
)
SCENARIO = """
description = "unit"
[env]
FRONTEND_TYPE = "web"
BACKEND_LOCATION = "cloud"
[workload]
sizes = [100]
dim = 8
seed = 1
repetitions = 100
quick_repetitions = 20
[profiles.loopback]
rtt_ms = 0
default = true
"""


# -- sweep schedule ---------------------------------------------------------------------


def test_intended_offsets_are_a_fixed_rate() -> None:
    assert intended_offsets(4, 10.0) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert intended_offsets(0, 5.0) == []
    with pytest.raises(ValueError, match="rate_per_s=0"):
        intended_offsets(3, 0.0)
    with pytest.raises(ValueError, match="n=-1"):
        intended_offsets(-1, 1.0)


def test_op_kinds_every_nth_is_a_write() -> None:
    assert op_kinds(6, 3) == ["point_read", "point_read", "add_1"] * 2
    assert op_kinds(3, 1) == ["add_1"] * 3
    assert op_kinds(2, 5) == ["point_read"] * 2
    with pytest.raises(ValueError, match="write_every must be >= 1; got 0"):
        op_kinds(3, 0)


def test_sweep_operation_names_carry_users() -> None:
    assert sweep_operation("point_read", 4) == "sweep_point_read_u4"
    assert sweep_operation("add_1", 16) == "sweep_add_1_u16"
    assert sweep_operation("add_1", 4, 40.0) == "ramp_add_1_u4_r40"


def test_throughput_counts_to_the_last_completion() -> None:
    from lancesync_bench.bench.sweep import throughput

    # Two workers, 10/s: operations intended at 0, 0.1, 0.2 s; the schedule spans 0.3 s.
    w = [("point_read", i, 5.0, 5.0, 0.0) for i in range(3)]
    assert throughput([w, w], 10.0) == pytest.approx(6 / 0.3)  # on time: the offered load
    late = [*w[:2], ("point_read", 2, 250.0, 5.0, 245.0)]  # the last ends at 0.45 s
    assert throughput([w, late], 10.0) == pytest.approx(6 / 0.45)
    assert throughput([], 10.0) == 0.0


def _ramp_spec(steps: int, bound: float = 200.0) -> Any:
    from lancesync_bench.scenarios import SweepSpec

    return SweepSpec(
        users=(1, 4), sizes=(1000,), profile="loopback", ramp_steps=steps, p99_bound_ms=bound
    )


def test_the_ramp_doubles_the_rate_until_throughput_stops_growing() -> None:
    from lancesync_bench.bench.sweep import _ramp

    capacity = 100.0  # ops/s the system can do, whatever is offered
    levels: list[tuple[float, list[dict[str, Any]]]] = []

    def run(size: int, users: int, rate: float, ramp: bool) -> list[dict[str, Any]]:
        assert (size, users, ramp) == (1000, 4, True)
        row = {"throughput_per_s": min(capacity, users * rate), "p99_ms": 20.0, "knee": None}
        rows = [row, dict(row)]
        levels.append((rate, rows))
        return rows

    _ramp(_ramp_spec(5), 1000, [{"throughput_per_s": 40.0, "p99_ms": 10.0}], run)
    # 4 users x 10/s gave 40 ops/s; 20/s gives 80 (2x), 40/s 100 (1.25x), 80/s 100: stop.
    assert [rate for rate, _ in levels] == [20.0, 40.0, 80.0]
    *before, (_, knee) = levels
    assert all(r["knee"] is None for _, rows in before for r in rows)
    assert [r["knee"] for r in knee] == ["throughput stopped growing (100 -> 100 ops/s)"] * 2


def test_the_ramp_stops_when_the_p99_passes_its_bound() -> None:
    from lancesync_bench.bench.sweep import _ramp

    seen: list[list[dict[str, Any]]] = []

    def run(size: int, users: int, rate: float, ramp: bool) -> list[dict[str, Any]]:
        rows = [{"throughput_per_s": users * rate, "p99_ms": rate * 2, "knee": None}]
        seen.append(rows)
        return rows

    _ramp(_ramp_spec(8, bound=50.0), 1000, [{"throughput_per_s": 40.0}], run)
    assert [r[0]["p99_ms"] for r in seen] == [40.0, 80.0]  # rates 20 and 40 per user
    assert seen[-1][0]["knee"] == "p99 80 ms passed the 50 ms bound"
    assert seen[0][0]["knee"] is None
    seen.clear()
    _ramp(_ramp_spec(2, bound=1e9), 1000, [{"throughput_per_s": 40.0}], run)
    assert len(seen) == 2 and all(r[0]["knee"] is None for r in seen)  # no knee within 2


def test_latency_counts_from_the_intended_start() -> None:
    """Operations scheduled in the past are charged the wait (no coordinated omission)."""
    calls: list[int] = []

    def op(i: int) -> Any:
        async def run() -> None:
            calls.append(i)

        return run

    async def main() -> list[Any]:
        # t0 one second ago: every operation starts late, by ~1 s minus its offset.
        t0 = time.perf_counter() - 1.0
        return await _run_schedule([op(i) for i in range(3)], ["r"] * 3, [0, 0.1, 0.2], t0)

    timings = asyncio.run(main())
    assert calls == [0, 1, 2]
    assert [t[1] for t in timings] == [0, 1, 2]
    for (_, _, latency, service, lag), expected_lag in zip(timings, (1000, 900, 800), strict=True):
        assert lag >= expected_lag  # started at least this late
        assert latency >= lag + service - 1e-6  # latency = wait + service time
        assert latency >= expected_lag > service


# -- ratios -----------------------------------------------------------------------------


def _rows(path: str, op: str, ms: list[float], phase: str = "warm") -> list[SampleRow]:
    return [
        SampleRow(
            scenario="s",
            storage_mode="local_primary_s3_backup",
            profile="loopback",
            size=100,
            operation=op,
            path=path,
            phase=phase,  # type: ignore[typeddict-item]
            iteration=i,
            latency_ms=v,
            requests=4 if path.endswith("s3") else None,
            bytes=None,
        )
        for i, v in enumerate(ms)
    ]


def test_comparison_rows_service_over_baseline() -> None:
    base = [1.0 + 0.01 * i for i in range(20)]
    samples = (
        _rows("service", "add_1", [2 * v for v in base])
        + _rows("baseline:lancedb-local", "add_1", base)
        + _rows("baseline:lancedb-s3", "add_1", [4 * v for v in base])
        + _rows("baseline:lancedb-local", "add_1", [100.0] * 5, phase="warmup")
        + _rows("baseline:lancedb-local", "point_read", base)  # no service figure: no row
        + _rows("service", "add_batch", base)  # no baseline figure: no row
    )
    rows = comparison_rows(samples)
    assert [(r["operation"], r["baseline"]) for r in rows] == [
        ("add_1", "baseline:lancedb-local"),
        ("add_1", "baseline:lancedb-s3"),
    ]
    local, s3 = rows
    assert local["median_ratio"] == pytest.approx(2.0)  # warm-up samples left out
    assert s3["median_ratio"] == pytest.approx(0.5)
    assert local["n_service"] == local["n_baseline"] == 20
    assert local["p95_ratio"] == pytest.approx(2.0)
    assert local["p_value"] is not None and local["p_value"] < 0.01
    assert local["ci_low"] <= 2.0 <= local["ci_high"]
    assert s3["baseline_requests"] == 4.0 and s3["service_requests"] is None
    table = format_baselines(rows)
    assert "2x faster than plain LanceDB on S3" in table
    assert "2x slower than plain LanceDB on local disk" in table


def test_tool_rows_give_the_copy_net_of_the_start_up() -> None:
    samples = (
        _rows("service", "backup_after_add_1", [40.0, 42.0, 44.0])
        + _rows(bl.AWS_S3_SYNC, "backup_after_add_1", [700.0, 710.0, 720.0])
        + _rows(bl.AWS_S3_SYNC, bl.TOOL_START, [600.0, 610.0, 620.0])
        + _rows("baseline:lancedb-local", "add_1", [1.0, 1.0])
        + _rows("service", "add_1", [1.0, 1.0])
    )
    rows = {r["operation"]: r for r in comparison_rows(samples)}
    assert set(rows) == {"backup_after_add_1", "add_1"}  # the start-up is no row of its own
    tool = rows["backup_after_add_1"]
    assert (tool["baseline_start_p50_ms"], tool["baseline_net_p50_ms"]) == (610.0, 100.0)
    assert rows["add_1"]["baseline_net_p50_ms"] is None
    line = next(x for x in format_baselines(rows.values()).splitlines() if "backup" in x)
    assert "3/3" in line and "710.00 ms (100.00 net of start-up)" in line
    assert "17x faster than aws s3 sync (2.4x faster net of its start-up)" in line


def test_a_missing_tool_is_named_with_its_install_and_the_time_it_would_add() -> None:
    from lancesync_bench.bench.summary import format_missing_tools

    reasons = bl.tool_skip_reasons(lambda name: None if name == "rclone" else f"/bin/{name}")
    skipped = [
        {"what": bl.RCLONE_SYNC, "reason": reasons[bl.RCLONE_SYNC], "cells": ["a", "b"]},
        {"what": bl.LANCEDB_S3, "reason": "local-primary mode", "cells": ["a"]},
    ]
    aws = _rows(bl.AWS_S3_SYNC, "backup_after_add_1", [2000.0, 3000.0])
    aws += _rows(bl.AWS_S3_SYNC, bl.TOOL_START, [1500.0, 1500.0])
    note = format_missing_tools(skipped, aws)
    assert note == (
        "rclone sync: not measured in 2 cell(s): 'rclone' not found on PATH; install it with"
        " apt-get install -y rclone (Debian's package); it would add about 8 s to this run"
        " (what aws s3 sync took here)"
    )
    assert "not known" in format_missing_tools(skipped, [])
    assert format_missing_tools(skipped[1:], aws) == ""


def test_comparison_ratio_needs_samples_for_the_test() -> None:
    rows = comparison_rows(_rows("service", "x", [2.0, 2.0]) + _rows("baseline:b", "x", [1.0]))
    assert rows[0]["median_ratio"] is None  # one baseline sample supports no median
    assert rows[0]["p_value"] is None
    assert format_baselines([]) == "(no baseline measured an operation of the service)"


# -- folder-copy tools ------------------------------------------------------------------


def test_skip_reasons_name_the_missing_binary_and_the_fix() -> None:
    none = bl.tool_skip_reasons(lambda name: None)
    assert set(none) == {bl.AWS_S3_SYNC, bl.RCLONE_SYNC}
    assert "'aws' not found on PATH" in none[bl.AWS_S3_SYNC]
    assert "pip install awscli" in none[bl.AWS_S3_SYNC]
    assert "'rclone' not found" in none[bl.RCLONE_SYNC]
    only_aws = bl.tool_skip_reasons(lambda name: "/bin/aws" if name == "aws" else None)
    assert set(only_aws) == {bl.RCLONE_SYNC}
    assert bl.tool_skip_reasons(lambda name: f"/bin/{name}") == {}


def test_tool_credentials_only_in_the_environment(tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin", "AWS_CA_BUNDLE": "/x.pem", "AWS_PROFILE": "p", "RCLONE_X": "1"}
    src = tmp_path / "t.lance"
    argv, env = bl.aws_invocation("aws", src, EP, "p/t", scratch=tmp_path, base_env=base)
    assert SECRET not in " ".join(argv)
    assert argv[:3] == ["aws", "s3", "sync"] and "--delete" in argv
    assert argv[argv.index("--endpoint-url") + 1] == EP.url
    assert env["AWS_SECRET_ACCESS_KEY"] == SECRET and env["AWS_ACCESS_KEY_ID"] == "bench"
    assert "AWS_CA_BUNDLE" not in env and "AWS_PROFILE" not in env and env["PATH"] == "/usr/bin"
    assert env["AWS_CONFIG_FILE"].startswith(str(tmp_path))

    argv, env = bl.rclone_invocation("rclone", src, EP, "p/t", scratch=tmp_path, base_env=base)
    assert SECRET not in " ".join(argv)
    assert argv[1] == "sync" and argv[3] == "LSBENCH:bench/p/t"
    assert env["RCLONE_CONFIG_LSBENCH_SECRET_ACCESS_KEY"] == SECRET
    assert env["RCLONE_CONFIG_LSBENCH_ENDPOINT"] == EP.url
    assert env["RCLONE_CONFIG_LSBENCH_PROVIDER"] == "Other"
    assert "AWS_CA_BUNDLE" not in env and "RCLONE_X" not in env  # rclone 1.60 + CA bundle fails


def _fake_tool(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_failing_tool_error_is_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake tool prints its secret (from the environment) and fails.
    _fake_tool(tmp_path, "aws", 'echo "denied for $AWS_SECRET_ACCESS_KEY" >&2\nexit 3\n')
    _fake_tool(tmp_path, "rclone", "exit 0\n")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    tool = bl.FolderSync(bl.AWS_S3_SYNC, tmp_path, EP, "p/t", scratch=tmp_path)
    with pytest.raises(bl.BaselineError) as info:
        asyncio.run(tool.run())
    message = str(info.value)
    assert "exited with status 3" in message and "denied for ***" in message
    assert SECRET not in message
    asyncio.run(bl.FolderSync(bl.RCLONE_SYNC, tmp_path, EP, "p/t", scratch=tmp_path).run())
    with pytest.raises(ValueError, match="unknown sync tool baseline 'baseline:scp'"):
        bl.FolderSync("baseline:scp", tmp_path, EP, "p/t", scratch=tmp_path)


def test_tools_that_fail_are_skipped_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_tool(tmp_path, "aws", 'echo "no bucket, key $AWS_SECRET_ACCESS_KEY" >&2\nexit 1\n')
    _fake_tool(tmp_path, "rclone", 'echo "$1 $2 -> $3" >> "$0.log"\n')
    monkeypatch.setenv("PATH", str(tmp_path))
    rec = Recorder(CellKey("s", "local_primary_s3_sync", "loopback", 100))

    async def main() -> None:
        tools = await bl.start_tools(rec, tmp_path, EP, "p/{tool}/t.lance", scratch=tmp_path)
        assert [t.path for t in tools] == [bl.RCLONE_SYNC]
        assert await bl.time_tools(rec, tools, "sync_after_add_1", 4) == tools

    asyncio.run(main())
    skipped = rec.extras["skipped"]
    assert list(skipped) == [bl.AWS_S3_SYNC]
    assert "exited with status 1" in skipped[bl.AWS_S3_SYNC]
    assert SECRET not in skipped[bl.AWS_S3_SYNC] and "***" in skipped[bl.AWS_S3_SYNC]
    copy, start = rec.samples  # the timed copy, then the tool's start-up alone
    assert copy["path"] == start["path"] == bl.RCLONE_SYNC
    assert (copy["operation"], start["operation"]) == ("sync_after_add_1", bl.TOOL_START)
    assert copy["iteration"] == start["iteration"] == 4 and copy["requests"] is None
    calls = (tmp_path / "rclone.log").read_text(encoding="utf-8").splitlines()
    sync = f"sync {tmp_path} -> LSBENCH:bench/p/rclone-sync/t.lance"
    assert calls == [sync, sync, "version  -> "]  # full copy, timed copy, start-up
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert len(bl.tool_skip_reasons()) == 2


# -- plans and skips --------------------------------------------------------------------


def test_cell_plan_quick_mode_is_smaller(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(SCENARIO, encoding="utf-8")
    sc = load_scenario(tmp_path / "s.toml")
    full = CellPlan.for_scenario(sc, quick=False)
    quick = CellPlan.for_scenario(sc, quick=True, baselines=False)
    assert (full.repetitions, full.sync_reps, full.tool_reps, full.baselines) == (100, 20, 3, True)
    assert quick.repetitions == 20 and not quick.baselines
    for name in ("cold_opens", "sync_reps", "s3_baseline_reps", "tool_reps"):
        assert getattr(quick, name) < getattr(full, name), name
    # Restores keep an odd count of 3: a median, not the mean of two (one slow restore of
    # two doubled a round's figure).
    assert quick.restore_reps == full.restore_reps == 3


def test_tools_run_on_each_profiles_smallest_table(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(
        SCENARIO.replace("sizes = [100]", "sizes = [100, 1000]")
        + "[profiles.far]\nrtt_ms = 20\ndefault = true\n",
        encoding="utf-8",
    )
    sc = load_scenario(tmp_path / "s.toml")
    cells = [(sc, p, n) for p, n in sc.cells()]
    assert len(cells) == 4
    assert tool_cells(cells, quick=False) == {("s", "loopback", 100), ("s", "far", 100)}
    assert tool_cells(cells, quick=True) == {("s", "loopback", 100)}
    # A second scenario of the same storage mode copies the same change: no tools there.
    (tmp_path / "t.toml").write_text(
        (tmp_path / "s.toml").read_text().replace('name = "s"', 'name = "t"'), encoding="utf-8"
    )
    twin = load_scenario(tmp_path / "t.toml")
    assert twin.storage_mode is sc.storage_mode
    both = [*cells, *((twin, p, n) for p, n in twin.cells())]
    assert tool_cells(both, quick=False) == {("s", "loopback", 100), ("s", "far", 100)}


def test_skip_rows_gather_cells_per_reason() -> None:
    cells = [
        {"scenario": "a", "profile": "p", "size": 1, "skipped": {"baseline:rclone-sync": "gone"}},
        {"scenario": "b", "profile": "p", "size": 2, "skipped": {"baseline:rclone-sync": "gone"}},
        {"scenario": "c", "profile": "p", "size": 3},
    ]
    assert _skip_rows(cells) == [
        {"what": "baseline:rclone-sync", "reason": "gone", "cells": ["a/p/1", "b/p/2"]}
    ]
    assert all("skipped" not in c for c in cells)


def test_sweep_is_skipped_in_quick_mode_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(SCENARIO + "[sweep]\nusers = [1, 2]\n", encoding="utf-8")
    sc = load_scenario(tmp_path / "s.toml")
    assert _sweeps([sc], RunOptions()) == ([sc], [])
    run, skips = _sweeps([sc], RunOptions(quick=True))
    assert run == [] and skips[0]["reason"].startswith("quick mode")
    run, skips = _sweeps([sc], RunOptions(sweep=False))
    assert run == [] and "--no-sweep" in skips[0]["reason"]
    run, skips = _sweeps([sc], RunOptions(profiles=["far"]))
    assert run == [] and "--profile" in skips[0]["reason"]
