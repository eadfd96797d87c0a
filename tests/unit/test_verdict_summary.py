"""Recall rows, target sources, the per-mode summary that leads the verdict, --fail-on-miss."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from lancesync_bench.bench.mode_summary import format_summary, mode_summaries, worst_row
from lancesync_bench.bench.verdicts import format_verdicts, recall_rows, stats_rows, verdict_rows
from lancesync_bench.cli import main
from lancesync_bench.cli.run_cmd import exit_code
from lancesync_bench.results import SampleRow, VerdictRow
from lancesync_bench.scenarios import Scenario, load_scenario

TOML = """
description = "unit"
[env]
FRONTEND_TYPE = "desktop"
BACKEND_LOCATION = "local"
[workload]
sizes = [100]
dim = 8
seed = 1
[profiles.loopback]
rtt_ms = 0
default = true
"""


def _scenario(tmp_path: Path, targets: str = "") -> Scenario:
    path = tmp_path / "team.toml"
    path.write_text(TOML + (f"[targets]\n{targets}\n" if targets else ""), encoding="utf-8")
    return load_scenario(path)


def _samples(sc: Scenario, op: str, values: list[float]) -> list[SampleRow]:
    return [
        SampleRow(
            scenario=sc.name,
            storage_mode=sc.storage_mode.value,
            profile="loopback",
            size=100,
            operation=op,
            path="service",
            phase="warm",
            iteration=i,
            latency_ms=v,
            requests=None,
            bytes=None,
        )
        for i, v in enumerate(values)
    ]


def _recall_cell(sc: Scenario, mean: float, low: float, high: float) -> dict[str, Any]:
    return {
        "scenario": sc.name,
        "profile": "loopback",
        "size": 100,
        "recall": [
            {
                "operation": "vector_search_uniform",
                "dataset": "uniform",
                "data": "uniform, 100 rows x 8 dim, 120 queries",
                "queries": 120,
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
            }
        ],
    }


def test_recall_row_sits_beside_the_vector_search_rows(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    stats = stats_rows(_samples(sc, "vector_search_uniform", [2.0] * 400))
    rows = verdict_rows(stats, {sc.name: sc}) + recall_rows(
        [_recall_cell(sc, 0.45, 0.43, 0.47)], {sc.name: sc}
    )
    recall = next(r for r in rows if r["target"] == "recall_at_10")
    assert recall["status"] == "FAIL" and recall.get("unit") == "recall"
    assert recall["value_ms"] is None and recall.get("value") == 0.45
    assert recall["criterion"] == "recall@10 >= 0.95"
    assert "uniform, 100 rows x 8 dim, 120 queries" in recall["note"]
    latency = next(r for r in rows if r["target"] == "local_read")
    assert latency["status"] == "PASS" and latency.get("ci_high") == 2.0
    lines = format_verdicts(rows).splitlines()
    ops = [line.split()[3] for line in lines[2:4]]
    assert ops == ["vector_search_uniform", "vector_search_uniform"]  # side by side
    recall_line = next(line for line in lines if "recall_at_10" in line)
    assert "0.450" in recall_line and "0.430-0.470" in recall_line
    assert recall_line.endswith("default  FAIL (on uniform, 100 rows x 8 dim, 120 queries)")


def test_recall_interval_decides_pass_and_unsure(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    cells = [_recall_cell(sc, 0.99, 0.97, 1.0), _recall_cell(sc, 0.95, 0.93, 0.97)]
    assert [r["status"] for r in recall_rows(cells, {sc.name: sc})] == ["PASS", "UNSURE"]


def test_overridden_targets_are_judged_and_named_with_their_file(tmp_path: Path) -> None:
    sc = _scenario(tmp_path, "local_read_ms = 1.5\nrecall_at_10 = 0.4")
    stats = stats_rows(_samples(sc, "point_read", [2.0] * 400))
    rows = verdict_rows(stats, {sc.name: sc})
    read = next(r for r in rows if r["target"] == "local_read")
    assert read["status"] == "FAIL" and read["criterion"] == "p95 < 1.5 ms"
    assert read.get("target_source") == sc.path
    point = next(r for r in rows if r["target"] == "local_point_read")
    assert point.get("target_source") == "default"
    recall = recall_rows([_recall_cell(sc, 0.45, 0.43, 0.47)], {sc.name: sc})[0]
    assert recall["status"] == "PASS" and recall.get("target_source") == sc.path
    table = format_verdicts(rows)
    assert "team.toml" in next(line for line in table.splitlines() if "local_read " in line)


def _row(mode: str, status: str, figure: float, criterion: str, **extra: Any) -> VerdictRow:
    row: dict[str, Any] = {
        "scenario": "s",
        "storage_mode": mode,
        "profile": "loopback",
        "size": 1000,
        "operation": extra.pop("operation", "point_read"),
        "path": "service",
        "target": extra.pop("target", "local_read"),
        "criterion": criterion,
        "status": status,
        "value_ms": figure,
        "note": "",
        **extra,
    }
    return cast(VerdictRow, row)


def test_summary_leads_with_one_answer_per_mode() -> None:
    rows = [
        _row("local_primary_s3_backup", "PASS", 3.0, "p95 < 10 ms", ci_low=2.9, ci_high=3.2),
        _row("local_primary_s3_backup", "FAIL", 12.0, "p95 < 10 ms", ci_low=11.0, ci_high=13.0),
        _row(
            "local_primary_s3_backup",
            "FAIL",
            32.0,
            "p99 < 10 ms",
            ci_low=14.6,
            ci_high=40.0,
            operation="vector_search",
            target="vector_top10",
        ),
        _row("s3_primary_local_cache", "PASS", 4.0, "p95 < 10 ms", ci_low=3.0, ci_high=5.0),
        _row("s3_primary_local_cache", "UNSURE", 9.0, "p95 < 10 ms", ci_low=8.0, ci_high=11.0),
        _row("local_primary_s3_sync", "PASS", 2.0, "p95 < 10 ms", ci_low=1.0, ci_high=3.0),
        _row("local_primary_s3_sync", "BELOW", 5.0, "p50 in 50-200 ms", ci_low=4.0, ci_high=6.0),
    ]
    worst = worst_row(rows[:3])
    assert worst is not None and worst["target"] == "vector_top10"  # 3.2x over beats 1.2x
    lines = mode_summaries(rows)
    assert set(lines) == {
        "local_primary_s3_backup",
        "s3_primary_local_cache",
        "local_primary_s3_sync",
    }
    backup = lines["local_primary_s3_backup"]
    assert "MISSES its targets [2 FAIL, 1 PASS of 3]" in backup
    assert "worst: vector_search p99 32.00 ms (95% CI 14.60-40.00) against p99 < 10 ms" in backup
    assert "(vector_top10, default) in s/loopback/1000 rows" in backup
    assert "NOT PROVEN" in lines["s3_primary_local_cache"]
    assert "MEETS its targets [1 PASS of 2]" in lines["local_primary_s3_sync"]
    text = format_summary(rows)
    assert text.splitlines()[0] == "Verdict by storage mode (details below):"
    assert len(text.splitlines()) == 4
    assert format_summary([]) == "Verdict: nothing was judged"


def test_summary_names_recall_with_its_data() -> None:
    row = _row(
        "local_primary_s3_backup",
        "FAIL",
        0.0,
        "recall@10 >= 0.95",
        unit="recall",
        value=0.45,
        ci_low=0.43,
        ci_high=0.47,
        data="uniform, 10000 rows x 384 dim, 120 queries",
        operation="vector_search_uniform",
        target="recall_at_10",
    )
    row["value_ms"] = None
    line = mode_summaries([row])["local_primary_s3_backup"]
    assert "recall@10 0.450 (95% CI 0.430-0.470) on uniform, 10000 rows x 384 dim" in line


def test_fail_on_miss_exit_code() -> None:
    assert exit_code(0, fail_on_miss=True) == 0
    assert exit_code(3, fail_on_miss=True) == 1
    assert exit_code(3, fail_on_miss=False) == 0  # without the flag a miss is reported only


def test_fail_on_miss_bad_input_still_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.toml").write_text("description = 'x'\n", encoding="utf-8")
    code = main(["run", "--fail-on-miss", "--scenarios-dir", str(tmp_path), "--no-progress"])
    assert code == 2
    assert "bad.toml" in capsys.readouterr().err
