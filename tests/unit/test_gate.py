"""The regression gate's parts: the rule across rounds, the slowdown switch, the gate's refusals."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import time
from pathlib import Path

import pytest

from lancesync_bench.bench.compare import CompareRow, RunComparison
from lancesync_bench.bench.continuous import (
    GateError,
    GateInputError,
    GateOptions,
    confirmed,
    resolve_revision,
    round_order,
    run_gate,
)
from lancesync_bench.bench.gate import adjust, judge_key, judge_keys
from lancesync_bench.bench.recorder import CellKey, Recorder
from lancesync_bench.bench.slowdown import ENV_VAR, Slowdown
from lancesync_bench.cli import main
from lancesync_bench.errors import ConfigError

# -- the rule ------------------------------------------------------------------------------


def test_the_ratio_is_of_geometric_means_with_an_interval_around_it() -> None:
    j = judge_key([1.0, 1.1, 0.9], [2.0, 2.2, 1.8])
    assert j.ratio == pytest.approx(2.0)
    assert j.ci_low is not None and j.ci_high is not None
    assert j.ci_low < 2.0 < j.ci_high
    assert j.p_value is not None and j.p_value < 0.01


def test_a_key_that_follows_the_reference_is_scaled_by_it() -> None:
    # Each round's CPU speed moves the key and the reference alike (slope 1): B at equal
    # reference speed is 1.5x A, though B's rounds happened to run on a faster CPU.
    cpu_a, cpu_b = [1.0, 1.3, 0.8, 1.1], [0.7, 0.9, 0.75, 1.0]
    a = [2.0 * c * w for c, w in zip(cpu_a, [1.0, 1.02, 0.98, 1.01], strict=True)]
    b = [3.0 * c * w for c, w in zip(cpu_b, [0.99, 1.01, 1.0, 1.02], strict=True)]
    ref_a, ref_b = [4.0 * c for c in cpu_a], [4.0 * c for c in cpu_b]
    fitted = judge_key(a, b, ref_a, ref_b)
    assert fitted.ratio == pytest.approx(1.5, rel=0.03)
    assert fitted.p_value is not None and fitted.p_value < 0.001
    assert judge_key(a, b).ratio == pytest.approx(1.5 * 0.83 / 1.05, rel=0.05)  # raw


def test_a_key_that_ignores_the_reference_is_not_scaled_by_it() -> None:
    # The reference ran 2x slow in B's rounds while the key did not move.
    a = [2.0, 2.1, 1.9, 2.05]
    b = [2.02, 1.95, 2.08, 1.98]
    ref_a, ref_b = [4.1, 3.9, 4.0, 4.2], [8.2, 8.0, 7.6, 9.1]
    assert judge_key(a, b, ref_a, ref_b).ratio == pytest.approx(1.0, abs=0.15)
    divided = judge_key(
        [x / r for x, r in zip(a, ref_a, strict=True)],
        [x / r for x, r in zip(b, ref_b, strict=True)],
    )
    assert divided.ratio is not None and divided.ratio < 0.6  # what plain division says


def test_one_round_a_side_gives_a_ratio_and_no_test() -> None:
    j = judge_key([1.0], [2.0])
    assert j.ratio == pytest.approx(2.0)
    assert j.p_value is None and j.ci_low is None and j.round_sd is None


def test_identical_rounds_are_no_shift_and_no_noise() -> None:
    j = judge_key([1.5, 1.5], [1.5, 1.5])
    assert (j.ratio, j.p_value, j.round_sd) == (1.0, 1.0, 0.0)


def test_correction_is_benjamini_hochberg() -> None:
    # Sorted 0.01, 0.03, 0.04, 0.5 -> p * 4 / rank = 0.04, 0.06, 0.053, 0.5 -> running minimum
    # from the largest down.
    assert adjust([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert adjust([]) == []


def test_a_shift_significant_alone_is_not_once_many_keys_are_tested() -> None:
    # One key 1.5x slower with p ~ 0.01 on its own; 19 unchanged keys beside it. Tested
    # alone it is a regression; among 20 keys its corrected p-value is not significant.
    a = [1.0, 1.2, 0.85, 1.05]
    b = [x * 1.5 for x in [1.1, 0.95, 1.15, 0.9]]
    alone = judge_keys({"k": a}, {"k": b})
    assert alone["k"].verdict == "regression"
    nulls = {f"n{i}": [1.0 + 0.01 * i, 1.1, 0.9, 1.0] for i in range(19)}
    many = judge_keys({"k": a, **nulls}, {"k": b, **nulls})
    assert many["k"].verdict == "unsure"
    assert many["k"].p_value is not None and many["k"].p_value > 0.05


def test_a_large_but_noisy_shift_is_unsure() -> None:
    verdict = judge_keys({"k": [1.0, 0.5, 1.0]}, {"k": [1.0, 2.0, 1.1]})["k"].verdict
    assert verdict == "unsure"


def test_a_small_significant_shift_is_not_a_regression() -> None:
    a = [1.0, 1.01, 0.99, 1.0, 1.0]
    b = [1.1, 1.11, 1.09, 1.1, 1.1]
    j = judge_keys({"k": a}, {"k": b})["k"]
    assert j.p_value is not None and j.p_value < 0.001
    assert j.verdict == "same"  # 1.1x, with an interval well inside 1/1.3..1.3
    assert judge_keys({"k": a}, {"k": b}, threshold=1.05)["k"].verdict == "regression"


@pytest.mark.parametrize(("threshold", "alpha"), [(1.0, 0.05), (1.3, 0.0), (1.3, 1.0)])
def test_a_bad_rule_is_refused(threshold: float, alpha: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        judge_keys({}, {}, threshold=threshold, alpha=alpha)


# -- the test-only slowdown switch ---------------------------------------------------------


def test_the_switch_is_off_unless_set() -> None:
    assert Slowdown.from_env({}) is None
    assert Slowdown.from_env({ENV_VAR: "  "}) is None


def test_the_switch_parses_operation_factor_and_path() -> None:
    s = Slowdown.from_env({ENV_VAR: "operation=point_read, factor=1.5"})
    assert s == Slowdown("point_read", 1.5)
    assert s.applies("point_read", "service") and s.applies("point_read", "baseline:x")
    assert not s.applies("add_1", "service")
    narrow = Slowdown.parse("operation=point_read,factor=2,path=service")
    assert narrow.applies("point_read", "service")
    assert not narrow.applies("point_read", "baseline:lancedb-local")


@pytest.mark.parametrize(
    "text",
    [
        "point_read",
        "operation=point_read",
        "operation=point_read,factor=x",
        "factor=2",
        "operation=a,factor=0.5",
        "operation=a,factor=2,speed=3",
    ],
)
def test_a_malformed_switch_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match=ENV_VAR):
        Slowdown.parse(text)


def test_the_recorder_times_the_stretch_inside_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_VAR, "operation=slow_op,factor=3")
    rec = Recorder(CellKey("s", "m", "loopback", 1), probe=None)
    assert rec.slowdown == Slowdown("slow_op", 3.0)

    async def op(_: int) -> None:
        await asyncio.sleep(0.02)

    async def measure() -> None:
        await rec.run("slow_op", op, repetitions=2)
        await rec.run("other_op", op, repetitions=2)

    asyncio.run(measure())
    slow = [s["latency_ms"] for s in rec.samples if s["operation"] == "slow_op"]
    other = [s["latency_ms"] for s in rec.samples if s["operation"] == "other_op"]
    # The stretch is a sleep of twice the operation's own time: a lower bound, never less.
    assert all(ms >= 3 * 20 * 0.99 for ms in slow)
    assert all(ms >= 20 * 0.99 for ms in other)
    assert math.fsum(other) < math.fsum(slow)


def test_a_shift_the_reference_alone_made_is_unsure_not_a_regression() -> None:
    """Rounds of one commit measured on this machine (backup_no_change, ms, with each
    round's reference-job median): the reference ran 0.66x in B, the key's raw figures
    held (0.99x). Allowing for the reference alone says 1.32x at a tiny p; the raw rounds
    do not lean that way, so the verdict is unsure, not a regression."""
    key_a, key_b = [13.839, 9.42, 13.968, 13.894], [12.667, 12.286, 12.403, 12.697]
    ref_a, ref_b = [6.734, 3.68, 6.388, 6.201], [3.619, 3.556, 3.611, 3.89]
    (j,) = judge_keys({"k": key_a}, {"k": key_b}, refs_a={"k": ref_a}, refs_b={"k": ref_b}).values()
    assert j.ratio is not None and j.ratio > 1.3 and j.p_value is not None and j.p_value < 0.05
    assert j.raw_ratio == pytest.approx(0.99, abs=0.02)
    assert j.verdict == "unsure"
    # The same rounds with the key truly slower in B (raw 1.3x too): a regression.
    (k,) = judge_keys(
        {"k": key_a}, {"k": [x * 1.35 for x in key_b]}, refs_a={"k": ref_a}, refs_b={"k": ref_b}
    ).values()
    assert k.verdict == "regression"


def test_the_stretch_holds_the_event_loop_as_slower_code_would() -> None:
    """Nothing queued on the loop runs inside the stretch: background work neither fills
    the window (overshooting the factor) nor leaves the operations timed after it."""

    async def measure() -> tuple[float, float, list[float]]:
        ran: list[float] = []

        async def queued() -> None:
            ran.append(time.perf_counter())

        task = asyncio.create_task(queued())
        start = time.perf_counter()
        await Slowdown("x", 3.0).stretch(10_000_000)  # 2 x 10 ms
        end = time.perf_counter()
        await task
        return start, end, ran

    start, end, ran = asyncio.run(measure())
    assert end - start >= 0.02
    assert ran and ran[0] >= end


# -- the continuous gate: everything that is refused before a round runs --------------------


def _git(repo: Path, *args: str) -> None:
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "-C", str(repo), *ident, *args], check=True, capture_output=True)


def test_rounds_alternate_so_each_side_runs_first_equally() -> None:
    assert round_order(3) == ["A", "B", "B", "A", "A", "B"]
    assert round_order(2).count("A") == round_order(2).count("B") == 2


def test_the_gate_outside_a_git_repository_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gate", "--repo", str(tmp_path), "HEAD~1", "HEAD"]) == 2
    err = capsys.readouterr().err
    assert "not a git repository" in err and "Traceback" not in err


def test_an_unknown_revision_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("x", encoding="utf-8")
    _git(tmp_path, "add", "f")
    _git(tmp_path, "commit", "-q", "-m", "one")
    assert resolve_revision(tmp_path, "HEAD") == resolve_revision(tmp_path, "HEAD")
    assert main(["gate", "--repo", str(tmp_path), "no-such-branch", "HEAD"]) == 2
    assert "'no-such-branch': no such revision" in capsys.readouterr().err
    # HEAD~1 of a repository with one commit does not exist either.
    with pytest.raises(GateInputError, match="HEAD~1"):
        resolve_revision(tmp_path, "HEAD~1")


@pytest.mark.parametrize("argv", [["--rounds", "0"], ["--threshold", "1"], ["--alpha", "2"]])
def test_bad_gate_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["gate", *argv])
    assert exc.value.code == 2
    capsys.readouterr()


def test_confirmation_rounds_of_one_are_refused_before_a_round_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["gate", "--confirm-rounds", "1"]) == 2
    assert "confirmation rounds must be 0 (off) or >= 2" in capsys.readouterr().err


def _row(operation: str, verdict: str, size: int = 100) -> CompareRow:
    return CompareRow(
        scenario="desktop-local",
        profile="loopback",
        size=size,
        operation=operation,
        path="local",
        phase="steady",
        verdict=verdict,  # type: ignore[arg-type]
        rounds_a=5,
        rounds_b=5,
        n_a=50,
        n_b=50,
        median_a_ms=1.0,
        median_b_ms=2.0,
        ratio=2.0,
        ci_low=1.5,
        ci_high=2.5,
        p_value=0.01,
        round_sd=0.1,
        raw_ratio=2.0,
        normalised=True,
    )


def test_a_regression_stands_only_where_independent_rounds_find_it_again() -> None:
    first = RunComparison(
        [Path("a1")],
        [Path("b1")],
        1.3,
        0.05,
        [
            _row("point_read", "regression"),
            _row("restore_latest", "regression"),
            _row("search", "regression", size=1000),
            _row("add_one", "same"),
        ],
    )
    again = RunComparison(
        [Path("a2")],
        [Path("b2")],
        1.3,
        0.05,
        [
            _row("point_read", "regression"),
            _row("restore_latest", "same"),
            _row("search", "regression", size=100),  # another key: another table size
        ],
    )
    result = confirmed(first, again)
    verdicts = {(r.operation, r.size): r.verdict for r in result.rows}
    assert verdicts == {
        ("point_read", 100): "regression",
        ("restore_latest", 100): "unsure",
        ("search", 1000): "unsure",
        ("add_one", 100): "same",
    }
    assert [r.operation for r in result.regressions] == ["point_read"]
    assert result.runs_a == [Path("a1")]
    assert result.counts == {"regression": 1, "unsure": 2, "same": 1}


def test_a_round_that_fails_stops_the_gate_with_its_output(tmp_path: Path) -> None:
    # A repository whose package cannot run: the round exits non-zero, the gate says so.
    _git(tmp_path, "init", "-q")
    (tmp_path / "lancesync_bench").mkdir()
    (tmp_path / "lancesync_bench" / "__main__.py").write_text(
        "raise SystemExit('broken on purpose')\n", encoding="utf-8"
    )
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "broken")
    opts = GateOptions(base="HEAD", head="HEAD", repo=tmp_path, rounds=1, warmup_rounds=0)
    with pytest.raises(GateError, match="broken on purpose"):
        run_gate(opts)
    listed = subprocess.run(
        ["git", "-C", str(tmp_path), "worktree", "list"], check=True, capture_output=True, text=True
    )
    assert len(listed.stdout.strip().splitlines()) == 1  # the checkout was removed


# -- the gate's whole path on two real commits of a stand-in benchmark -----------------------

# A stand-in for `python -m lancesync_bench run`: it writes one run folder in the results
# format (the real package is shadowed by PYTHONPATH, so it writes the files itself), with a
# CPU drift per round shared by every operation and the reference job. FACTOR is the code
# change between the two commits: how slow point reads are.
_STAND_IN = """\
import hashlib, json, os, random, subprocess, sys
from datetime import datetime, timezone
from pathlib import Path

FACTOR = {factor}
out = Path(sys.argv[sys.argv.index("--out") + 1])
here = os.path.dirname(os.path.abspath(__file__))
commit = subprocess.run(
    ["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True
).stdout.strip()
rng = random.Random()
drift = rng.lognormvariate(0, 0.15)
rows = []
ops = [("point_read", 2.0 * FACTOR, "service"), ("add_1", 3.0, "service"),
       ("vector_search", 6.0, "service"), ("fixed_cpu_job", 4.0, "reference:fixed-cpu-job")]
for op, ms, path in ops:
    for i in range(20):
        latency = ms * drift * rng.lognormvariate(0, 0.05)
        rows.append(f"s,m,loopback,1000,{{op}},{{path}},warm,{{i}},{{latency:.5f}},,,")
cols = "scenario,storage_mode,profile,size,operation,path,phase,iteration,latency_ms,"
text = cols + "requests,bytes,machine_slowdown\\n" + "\\n".join(rows) + "\\n"
run = out / f"run-{{os.getpid()}}-{{rng.randrange(10**9)}}"
run.mkdir(parents=True)
(run / "samples.csv").write_text(text)
envelope = {{
    "schema_version": 2, "run_id": run.name,
    "created_at": datetime.now(timezone.utc).isoformat(),
    "metadata": {{"git_commit": commit}}, "scenarios": [], "stats": [], "verdicts": [],
    "samples_file": "samples.csv", "samples_count": len(rows),
    "samples_sha256": hashlib.sha256(text.encode()).hexdigest(), "extra": {{}},
}}
(run / "results.json").write_text(json.dumps(envelope))
"""


def _stand_in_repo(repo: Path) -> Path:
    """A repository of two commits: point reads as fast as before, then twice as slow."""
    repo.mkdir()
    _git(repo, "init", "-q")
    main_py = repo / "lancesync_bench" / "__main__.py"
    main_py.parent.mkdir(parents=True)
    for factor, message in ((1.0, "base"), (2.0, "point reads twice as slow")):
        main_py.write_text(_STAND_IN.format(factor=factor), encoding="utf-8")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", message)
    return repo


def test_the_gate_fails_a_commit_that_slows_one_operation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _stand_in_repo(tmp_path / "repo")
    argv = ["gate", "--repo", str(repo), "--rounds", "3", "--warmup", "0"]
    assert main([*argv, "HEAD~1", "HEAD"]) == 1
    captured = capsys.readouterr()
    judged, confirmation = captured.out.split("Confirmation (new rounds")
    for table in (judged, confirmation):  # found slower, then found slower again
        rows = [line for line in table.splitlines() if " service " in line]
        assert [line.split()[3] for line in rows if line.endswith("regression")] == ["point_read"]
    assert "round 6/6" in captured.err
    assert "slower: point_read; confirming on 5 new rounds a side" in captured.err
    assert "confirm round 10/10" in captured.err
    assert "gate: FAIL: regression in point_read" in captured.err
    # Repeated rounds of one commit: no regression.
    assert main([*argv, "HEAD", "HEAD"]) == 0
    assert "gate: pass: no regression" in capsys.readouterr().err


def test_the_gate_prints_json_with_the_commits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _stand_in_repo(tmp_path / "repo")
    argv = ["gate", "--json", "--repo", str(repo), "--rounds", "2", "--warmup", "0"]
    assert main([*argv, "--out", str(tmp_path / "kept"), "HEAD~1", "HEAD"]) in (0, 1)
    data = json.loads(capsys.readouterr().out)
    assert data["base"] == "HEAD~1" and len(data["head_commit"]) == 40
    assert len(data["runs_a"]) == len(data["runs_b"]) == 2
    # The kept rounds can be judged again with compare.
    assert main(["compare", str(tmp_path / "kept" / "A"), str(tmp_path / "kept" / "B")]) in (0, 1)
    capsys.readouterr()
