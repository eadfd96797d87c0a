"""A default run measures each distinct cell once (both desktop scenarios resolve to the
same backup mode and would time the same code twice)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lancesync_bench.bench.runner import RunOptions, _load, _plan_cells, measured_once
from lancesync_bench.scenarios import load_scenario

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_scenarios_measure_the_shared_backup_cell_once() -> None:
    opts = RunOptions(scenarios_dir=REPO / "scenarios")
    cells = _plan_cells(_load(opts), opts)
    kept, skips = measured_once(cells, opts)
    assert len(kept) == len(cells) - 1
    assert [s["cells"] for s in skips] == [["desktop-cloud/loopback/1000"]]
    assert "desktop-local/loopback/1000" in skips[0]["reason"]
    assert "local_primary_s3_backup" in skips[0]["reason"]
    names = {(sc.name, p.name, size) for sc, p, size in kept}
    assert ("desktop-local", "loopback", 1000) in names


def test_a_cell_that_differs_in_anything_measured_is_kept() -> None:
    opts = RunOptions(scenarios_dir=REPO / "scenarios")
    local = load_scenario(REPO / "scenarios" / "desktop-local.toml")
    cloud = load_scenario(REPO / "scenarios" / "desktop-cloud.toml")
    profile = local.profile("loopback")
    for other in (
        dataclasses.replace(cloud, env={**cloud.env, "WRITE_DURABILITY": "fsync"}),
        dataclasses.replace(
            cloud, workload=dataclasses.replace(cloud.workload, seed=cloud.workload.seed + 1)
        ),
    ):
        kept, skips = measured_once([(local, profile, 1000), (other, profile, 1000)], opts)
        assert len(kept) == 2 and skips == []
    # Only the variables that chose the mode differ: one measurement.
    kept, skips = measured_once([(local, profile, 1000), (cloud, profile, 1000)], opts)
    assert len(kept) == 1 and len(skips) == 1


def test_paths_without_s3_requests_are_the_local_baseline_and_the_reference_job() -> None:
    from lancesync_bench.bench.baselines import LANCEDB_LOCAL
    from lancesync_bench.bench.probe import REFERENCE_PATH
    from lancesync_bench.bench.recorder import NO_S3_PATHS

    assert {LANCEDB_LOCAL, REFERENCE_PATH} == NO_S3_PATHS
