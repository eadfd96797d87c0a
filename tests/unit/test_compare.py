"""`lancesync-bench compare` on synthetic runs written with the real results envelope."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from lancesync_bench.bench.compare import (
    CompareInputError,
    compare_runs,
    format_comparison,
    judge_comparison,
)
from lancesync_bench.cli import main
from lancesync_bench.results import Phase, SampleRow, write_run
from lancesync_bench.stats import compare

# One operation as (operation, phase) -> (median ms, n, multiplicative noise sigma).
Spec = dict[tuple[str, Phase], tuple[float, int, float]]
BASE: Spec = {
    ("point_read", "warm"): (2.0, 60, 0.10),
    ("add_1", "warm"): (4.0, 60, 0.10),
    ("vector_search", "warm"): (8.0, 60, 0.10),
    ("cold_read", "cold"): (30.0, 5, 0.10),  # the runner's 5 cold opens: too few to test
}


def _rows(spec: Spec, seed: int, *, factor: dict[str, float] | None = None) -> list[SampleRow]:
    """Lognormal samples per operation; ``factor`` scales one operation's latencies."""
    rng = np.random.default_rng(seed)
    rows: list[SampleRow] = []
    for (operation, phase), (median, n, sigma) in spec.items():
        scale = (factor or {}).get(operation, 1.0)
        values = median * scale * np.exp(rng.normal(0.0, sigma, n))
        for i, ms in enumerate(values):
            row: dict[str, Any] = {
                "scenario": "desktop-local",
                "storage_mode": "local_primary_s3_backup",
                "profile": "loopback",
                "size": 1000,
                "operation": operation,
                "path": "service",
                "phase": phase,
                "iteration": i,
                "latency_ms": float(ms),
                "requests": None,
                "bytes": None,
            }
            rows.append(cast(SampleRow, row))
    return rows


def _run(folder: Path, rows: list[SampleRow]) -> Path:
    write_run(folder, metadata={}, scenarios=[], stats_rows=[], samples_rows=rows, verdict_rows=[])
    return folder


def _verdicts(a: Path, b: Path, **kwargs: float) -> dict[str, str]:
    return {r.operation: r.verdict for r in compare_runs(a, b, **kwargs).rows}


def test_two_times_slower_operation_is_a_regression_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _run(tmp_path / "a", _rows(BASE, seed=1))
    b = _run(tmp_path / "b", _rows(BASE, seed=2, factor={"add_1": 2.0}))
    verdicts = _verdicts(a, b)
    assert verdicts == {"add_1": "regression", "point_read": "same", "vector_search": "same"}
    assert main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if " add_1 " in x)
    assert line.endswith("regression")
    assert "1 regression" in out


def test_identical_runs_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(BASE, seed=1)
    a, b = _run(tmp_path / "a", rows), _run(tmp_path / "b", rows)
    result = compare_runs(a, b)
    assert {r.verdict for r in result.rows} == {"same"}
    assert all(r.median_ratio == 1.0 and r.p_value == 1.0 for r in result.rows)
    assert main(["compare", str(a), str(b)]) == 0
    # The same folder on both sides (the CI self-check) is fine too.
    assert main(["compare", str(a), str(a)]) == 0
    capsys.readouterr()


def test_a_significant_shift_below_the_threshold_is_same(tmp_path: Path) -> None:
    # 600 samples make a 4 % shift highly significant, but it is under the 10 % threshold.
    spec: Spec = {("point_read", "warm"): (2.0, 600, 0.05)}
    a = _run(tmp_path / "a", _rows(spec, seed=1))
    b = _run(tmp_path / "b", _rows(spec, seed=2, factor={"point_read": 1.04}))
    (row,) = compare_runs(a, b).rows
    assert row.p_value is not None and row.p_value < 0.01
    assert row.median_ratio is not None and 1.0 < row.median_ratio < 1.10
    assert row.verdict == "same"
    # A lower threshold turns the same shift into a regression.
    assert _verdicts(a, b, threshold=1.02) == {"point_read": "regression"}


def test_a_faster_candidate_is_an_improvement_and_exits_0(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", _rows(BASE, seed=1))
    b = _run(tmp_path / "b", _rows(BASE, seed=2, factor={"vector_search": 0.5}))
    assert _verdicts(a, b)["vector_search"] == "improvement"
    assert main(["compare", str(a), str(b)]) == 0


def test_operations_in_one_run_only_are_listed_and_do_not_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    only_a: Spec = {**BASE, ("sync_no_change", "warm"): (20.0, 30, 0.1)}
    only_b: Spec = {**BASE, ("refresh_no_change", "warm"): (5.0, 30, 0.1)}
    a = _run(tmp_path / "a", _rows(only_a, seed=1))
    b = _run(tmp_path / "b", _rows(only_b, seed=2))
    verdicts = _verdicts(a, b)
    assert verdicts["sync_no_change"] == "only in A"
    assert verdicts["refresh_no_change"] == "only in B"
    assert main(["compare", str(a), str(b)]) == 0
    assert "only in A" in capsys.readouterr().out


def test_cold_keys_are_compared_only_when_n_allows(tmp_path: Path) -> None:
    enough: Spec = {**BASE, ("cold_read", "cold"): (30.0, 10, 0.1)}
    a = _run(tmp_path / "a", _rows(BASE, seed=1))  # 5 cold samples
    b = _run(tmp_path / "b", _rows(enough, seed=2, factor={"cold_read": 3.0}))
    result = compare_runs(a, b)
    assert "cold" not in {r.phase for r in result.rows}  # too few in A: left out of both
    assert result.skipped_cold == 1
    assert "1 cold key(s) with n < 8 left out" in format_comparison(result)
    c = _run(tmp_path / "c", _rows(enough, seed=3))
    cold = [r for r in compare_runs(c, b).rows if r.phase == "cold"]
    assert [r.verdict for r in cold] == ["regression"]
    assert cold[0].p95_ratio is None  # n = 10 cannot support p95


def test_too_few_samples_are_untested_not_same(tmp_path: Path) -> None:
    spec: Spec = {("restore_latest", "warm"): (600.0, 5, 0.1)}
    a = _run(tmp_path / "a", _rows(spec, seed=1))
    b = _run(tmp_path / "b", _rows(spec, seed=2, factor={"restore_latest": 3.0}))
    (row,) = compare_runs(a, b).rows
    assert row.verdict == "untested"
    assert row.median_ratio is not None and row.median_ratio > 2
    assert row.p_value is None


@pytest.mark.parametrize("missing", ["a", "b"])
def test_a_missing_run_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    good = _run(tmp_path / "good", _rows(BASE, seed=1))
    gone = tmp_path / "no-such-run"
    args = [gone, good] if missing == "a" else [good, gone]
    assert main(["compare", *map(str, args)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert str(gone) in lines[0] and "Traceback" not in captured.err


def test_runs_without_a_shared_key_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _run(tmp_path / "a", _rows({("add_1", "warm"): (4.0, 30, 0.1)}, seed=1))
    b = _run(tmp_path / "b", _rows({("point_read", "warm"): (2.0, 30, 0.1)}, seed=2))
    with pytest.raises(CompareInputError, match="share no"):
        compare_runs(a, b)
    assert main(["compare", str(a), str(b)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_an_empty_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _run(tmp_path / "good", _rows(BASE, seed=1))
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), str(good)]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_a_results_folder_means_its_latest_run(tmp_path: Path) -> None:
    a = _run(tmp_path / "results" / "20250101T000000Z-aaaaaa", _rows(BASE, seed=1))
    result = compare_runs(tmp_path / "results", a / "results.json")
    assert result.run_a == a and result.run_b == a


def test_json_output_parses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _run(tmp_path / "a", _rows(BASE, seed=1))
    b = _run(tmp_path / "b", _rows(BASE, seed=2, factor={"add_1": 2.0}))
    assert main(["compare", "--json", str(a), str(b)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["threshold"] == 1.10 and data["alpha"] == 0.01
    assert data["counts"] == {"regression": 1, "same": 2}
    by_op = {r["operation"]: r for r in data["rows"]}
    assert by_op["add_1"]["verdict"] == "regression"
    assert by_op["add_1"]["median_ratio"] == pytest.approx(2.0, rel=0.1)
    assert by_op["add_1"]["ci_low"] <= by_op["add_1"]["median_ratio"] <= by_op["add_1"]["ci_high"]


@pytest.mark.parametrize("option", [["--threshold", "0.9"], ["--alpha", "1.5"]])
def test_bad_options_exit_2(option: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["compare", *option, "a", "b"])
    assert exc.value.code == 2
    capsys.readouterr()


def test_improvement_is_the_mirror_of_regression() -> None:
    rng = np.random.default_rng(0)
    fast = rng.lognormal(0.0, 0.1, 50) * 1e6
    slow = fast * 1.5
    assert judge_comparison(compare(fast, slow), threshold=1.1, alpha=0.01) == "regression"
    assert judge_comparison(compare(slow, fast), threshold=1.1, alpha=0.01) == "improvement"
    assert judge_comparison(compare(fast, fast), threshold=1.1, alpha=0.01) == "same"
