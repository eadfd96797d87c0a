"""The report's latency-vs-recall figure and the verdict table's interval/source columns."""

from __future__ import annotations

from pathlib import Path

from lancesync_bench import report
from lancesync_bench.bench.verdicts import recall_rows, stats_rows, verdict_rows
from lancesync_bench.results import SampleRow, write_run
from lancesync_bench.scenarios import load_scenario

TOML = """
description = "unit"
[env]
FRONTEND_TYPE = "desktop"
BACKEND_LOCATION = "local"
[workload]
sizes = [1000]
dim = 8
seed = 1
[profiles.loopback]
rtt_ms = 0
default = true
[targets]
recall_at_10 = 0.9
"""


def _point(data: str, nprobes: int, refine: int, ms: float, recall: float) -> dict[str, object]:
    return {
        "dataset": data,
        "data": f"{data}, 1000 rows x 8 dim, 50 queries",
        "rows": 1000,
        "partitions": 31,
        "nprobes": nprobes,
        "refine_factor": refine,
        "queries": 50,
        "p50_ms": ms,
        "p95_ms": ms * 1.5,
        "recall_at_10": recall,
        "recall_ci_low": recall - 0.02,
        "recall_ci_high": min(1.0, recall + 0.02),
        "latencies_ms": [ms] * 50,
    }


def test_recall_figure_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "unit.toml"
    path.write_text(TOML, encoding="utf-8")
    sc = load_scenario(path)
    samples = [
        SampleRow(
            scenario=sc.name,
            storage_mode=sc.storage_mode.value,
            profile="loopback",
            size=1000,
            operation=op,
            path="service",
            phase="warm",
            iteration=i,
            latency_ms=3.0,
            requests=None,
            bytes=None,
        )
        for op in ("vector_search", "vector_search_uniform")
        for i in range(100)
    ]
    cell = {
        "scenario": sc.name,
        "profile": "loopback",
        "size": 1000,
        "recall": [
            {
                "operation": op,
                "dataset": d,
                "data": f"{d}, 1000 rows x 8 dim, 100 queries",
                "queries": 100,
                "mean": m,
                "ci_low": m - 0.02,
                "ci_high": min(1.0, m + 0.02),
            }
            for op, d, m in (
                ("vector_search", "clustered", 1.0),
                ("vector_search_uniform", "uniform", 0.45),
            )
        ],
        "search_sweep": [
            _point(d, n, r, 2.0 + n / 20 + r / 10, min(1.0, base + n / 100))
            for d, base in (("clustered", 1.0), ("uniform", 0.3))
            for n in (5, 10, 20, 40, 80)
            for r in (0, 10)
        ],
    }
    stats = stats_rows(samples)
    verdicts = verdict_rows(stats, {sc.name: sc}) + recall_rows([cell], {sc.name: sc})
    run = tmp_path / "run"
    write_run(
        run,
        metadata={},
        scenarios=[sc],
        stats_rows=stats,
        samples_rows=samples,
        verdict_rows=verdicts,
        extra={"cells": [cell]},
    )
    data = report.load_report_data(run)
    assert len(report.sweep_points(data)) == 20
    assert report.recall_figure(data) is not None
    table = report.verdict_table(data)
    recall = table[table["target"] == "recall_at_10"].set_index("operation")
    assert recall.loc["vector_search_uniform", "value"] == "0.450"
    assert recall.loc["vector_search_uniform", "interval"] == "0.430-0.470"
    assert recall.loc["vector_search_uniform", "source"] == "unit.toml"
    assert recall.loc["vector_search_uniform", "status"] == "FAIL"
    latency = table[table["target"] == "local_read"].iloc[0]
    assert latency["interval"] == "3.00-3.00" and latency["source"] == "default"
    assert table.iloc[0]["status"] == "FAIL"  # failures first
    page = report.render_html(data)
    assert "MISSES its targets" in page and "UNSURE" in page
    images = [stem for stem, _, _ in report.build_images(data)]
    assert "latency_recall" in images


def test_a_schema_2_run_still_loads_and_reports(tmp_path: Path) -> None:
    import json

    path = tmp_path / "unit.toml"
    path.write_text(TOML, encoding="utf-8")
    sc = load_scenario(path)
    samples = [
        SampleRow(
            scenario=sc.name,
            storage_mode=sc.storage_mode.value,
            profile="loopback",
            size=1000,
            operation="point_read",
            path="service",
            phase="warm",
            iteration=i,
            latency_ms=2.0,
            requests=None,
            bytes=None,
        )
        for i in range(120)
    ]
    stats = stats_rows(samples)
    run = tmp_path / "old"
    write_run(
        run,
        metadata={},
        scenarios=[sc],
        stats_rows=stats,
        samples_rows=samples,
        verdict_rows=verdict_rows(stats, {sc.name: sc}),
    )
    file = run / "results.json"
    data = json.loads(file.read_text(encoding="utf-8"))
    new = {"unit", "value", "ci_low", "ci_high", "confidence", "target_source", "data"}
    data["schema_version"] = 2
    data["verdicts"] = [
        {**{k: v for k, v in r.items() if k not in new}, "status": "PASS"} for r in data["verdicts"]
    ]
    data["stats"] = [{k: v for k, v in r.items() if "_ci_" not in k} for r in data["stats"]]
    file.write_text(json.dumps(data), encoding="utf-8")
    loaded = report.load_report_data(run)
    table = report.verdict_table(loaded)
    assert set(table["interval"]) == {"-"} and set(table["source"]) == {"-"}
    assert "MEETS its targets" in report.render_html(loaded)
