"""The sync-cost benchmark end to end at a tiny size, and how it judges its figures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from lancesync_bench.bench.sync_cost import SyncCostOptions, judge_sync_cost, measure_sync_cost
from lancesync_bench.cli import main
from lancesync_bench.s3.endpoint import S3Endpoint

pytestmark = pytest.mark.integration


def test_every_part_is_measured_through_the_proxy_beside_raw_requests(s3: S3Endpoint) -> None:
    opts = SyncCostOptions(rows=50, rounds=8, sustained_s=3.0, window_s=1.0, dim=8)
    result = asyncio.run(measure_sync_cost(s3, opts))
    assert set(result["profiles"]) == {"loopback", "same-region"}
    loop, region = result["profiles"]["loopback"], result["profiles"]["same-region"]
    assert loop["requests"]["sync_no_change"] == [1]  # one one-key LIST, every time
    assert min(loop["requests"]["sync_one_doc"]) >= 2  # a LIST and at least the PUTs
    names = ("sync_no_change", "raw_list", "sync_one_doc", "raw_list_put_put", "lean_list_put_put")
    for name in names:
        assert loop["figures"][name]["n"] == 8
        assert region["figures"][name]["n"] == 30  # a quarter of the rounds, at least 30
    # The emulated 20 ms round trips show in the raw yardstick, not only in the service.
    assert region["figures"]["raw_list"]["p50_ms"] >= 15
    sustained = loop["sustained"]
    assert sustained["writes"] > 10 and len(sustained["windows"]) >= 2
    # Each write is timed beside one raw PUT: the yardstick spans the same windows.
    assert abs(sustained["raw_put"]["n"] - sustained["writes"]) <= 1
    assert len(sustained["raw_put_windows"]) == len(sustained["windows"])
    for key in ("reopen", "first_open"):
        opened = sustained[key]
        assert 0 < opened["files_installed"] < opened["remote_files"], key
        assert opened["requests"]["GET"] - opened["files_installed"] in (0, 1), key
    assert sustained["reopen"]["requests"]["HEAD"] == 1  # is the cache's newest on S3?
    verdicts = {c.what: c.verdict for c in judge_sync_cost(result)}
    assert verdicts["[loopback] no-change sync requests"] == "PASS"
    n = sustained["writes"]
    assert verdicts[f"[loopback] reopen, behind by {n} writes"] == "PASS"
    assert verdicts[f"[loopback] first open after {n} writes"] == "PASS"


def _fig(p50: float, p99: float | None = None, n: int = 500) -> dict[str, Any]:
    p99 = p50 if p99 is None else p99
    return {
        "n": n,
        "p50_ms": p50,
        "p50_ci_ms": [p50 * 0.95, p50 * 1.05],
        "p99_ms": p99,
        "p99_ci_ms": [p99 * 0.9, p99 * 1.1],
        "max_ms": p99 * 1.2,
    }


def test_judging_passes_and_fails_on_the_stated_targets() -> None:
    figures = {
        "sync_no_change": _fig(4.0),
        "raw_list": _fig(3.5),
        "sync_one_doc": _fig(40.0),
        "raw_list_put_put": _fig(15.0),
        "s3_primary_write": _fig(10.0),
        "lancedb_direct_add": _fig(12.0),
        "raw_put": _fig(4.0),
    }
    sustained = {
        "writes": 900,
        "window_s": 10.0,
        "windows": [_fig(30.0, n=300), _fig(33.0, n=300), _fig(45.0, n=300)],
        "all": _fig(35.0, p99=80.0, n=900),
        # The machine slowed 1.4x between the first and the last window (the raw PUT's
        # drift): net of it the writes grew 1.5 / 1.4 = 1.07x.
        "raw_put_windows": [_fig(5.0, n=300), _fig(6.0, n=300), _fig(7.0, n=300)],
        "raw_put": _fig(6.0, p99=30.0, n=900),
        # A listing of the table: 3 LIST pages, one HEAD per older version's record.
        "reopen": {
            "requests": {"LIST": 3, "GET": 9, "HEAD": 40},
            "files_installed": 9,
            "index_folders": 1,
            "remote_files": 900,
        },
        "first_open": {
            "requests": {"LIST": 2, "GET": 10},
            "files_installed": 9,
            "index_folders": 1,
            "remote_files": 900,
        },
    }
    result = {
        "profiles": {
            "loopback": {
                "rtt_ms": 0.0,
                "figures": figures,
                "requests": {"sync_no_change": [1, 2]},
                "sustained": sustained,
            }
        }
    }
    v = {c.what: c.verdict for c in judge_sync_cost(result)}
    assert v["[loopback] no-change sync requests"] == "FAIL"  # one sync made 2 requests
    assert v["[loopback] no-change sync"] == "PASS"
    assert v["[loopback] one-doc sync"] == "FAIL"
    assert v["[loopback] S3-primary write vs LanceDB add"] == "PASS"
    assert v["[loopback] sustained writes: last vs first window p50"] == "FAIL"  # 1.5x
    net = "[loopback] sustained writes: last vs first window p50, net of the raw PUT's"
    assert v[net] == "PASS"  # 1.07x
    floor = "[loopback] sustained raw PUT beside the writes: p99 vs p50 (the floor's tail)"
    assert v[floor] == "info"
    sustained["raw_put_windows"] = [_fig(5.0, n=300)] * 3  # a steady machine: 1.5x is ours
    v = {c.what: c.verdict for c in judge_sync_cost(result)}
    assert v[net] == "FAIL"
    assert v["[loopback] sustained writes: p99 vs p50"] == "PASS"
    assert v["[loopback] sustained writes: longest stall"] == "PASS"
    assert v["[loopback] reopen, behind by 900 writes"] == "FAIL"
    assert v["[loopback] first open after 900 writes"] == "PASS"  # the newest key, 1 folder


def test_same_region_writes_are_judged_on_the_issues_bound_and_beside_one_raw_put() -> None:
    figures = {
        "sync_no_change": _fig(28.0),
        "raw_list": _fig(27.0),
        "sync_one_doc": _fig(66.0),
        "raw_list_put_put": _fig(81.0),
        "s3_primary_write": _fig(29.0),
        "raw_put": _fig(28.5),
    }
    entry = {"rtt_ms": 20.0, "figures": figures, "requests": {"sync_no_change": [1]}}
    result = {"profiles": {"same-region": entry}}
    v = {c.what: c.verdict for c in judge_sync_cost(result)}
    assert v["[same-region] one-doc sync"] == "PASS"  # <= 3 round trips + 10 ms
    assert v["[same-region] S3-primary write"] == "PASS"  # <= 4 round trips + 10 ms
    assert v["[same-region] S3-primary write vs one raw PUT"] == "PASS"  # 1.02x
    figures["s3_primary_write"] = _fig(60.0)  # a second round trip per write
    v = {c.what: c.verdict for c in judge_sync_cost(result)}
    assert v["[same-region] S3-primary write"] == "PASS"
    assert v["[same-region] S3-primary write vs one raw PUT"] == "FAIL"  # 2.1x
    figures["s3_primary_write"] = _fig(95.0)
    assert {c.what: c.verdict for c in judge_sync_cost(result)}[
        "[same-region] S3-primary write"
    ] == "FAIL"


def test_sync_cost_rejects_bad_arguments_before_measuring(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["sync-cost", "--quick", "--out", str(target)]) == 2
    assert main(["sync-cost", "--rounds", "3", "--out", str(tmp_path)]) == 2
    assert main(["sync-cost", "--sustained-s", "1", "--out", str(tmp_path)]) == 2
