"""Machine noise: the CPU probe, the recorder's use of it, steady figures, annotated verdicts.

The probe's logic runs on scripted durations (a fake clock), never on the real machine's
speed: whether this machine happens to be slow during a test must not decide the test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest

from lancesync_bench import report
from lancesync_bench.bench import probe as probe_module
from lancesync_bench.bench.probe import PROBE_LOOPS, REFERENCE_PATH, Probe, shared_probe, spin
from lancesync_bench.bench.recorder import CellKey, Recorder
from lancesync_bench.bench.verdicts import (
    format_machine_noise,
    format_verdicts,
    machine_noise,
    stats_rows,
    verdict_rows,
)
from lancesync_bench.results import SampleRow, load, load_stats, load_verdicts, write_run
from lancesync_bench.scenarios import Scenario, load_scenario
from lancesync_bench.stats import Targets, steady, steady_status, summarize

MS = 1_000_000  # ns per ms
WARMUP = probe_module._WARMUP_RUNS
SCENARIO_TOML = """
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


def _clock(durations: Iterable[int]) -> Callable[[], int]:
    """A nanosecond clock that makes consecutive probe runs take ``durations``."""
    ticks: list[int] = []
    now = 1_000
    for d in durations:
        ticks += [now, now + d]
        now += d + 7  # time passes between runs too; the probe must not count it
    it = iter(ticks)
    return lambda: next(it)


def _fake_probe(durations: Iterable[int], *, calibration: int, window: int = 4001) -> Probe:
    return Probe(calibration=calibration, window=window, clock=_clock(durations), work=lambda _: 0)


# -- the probe ---------------------------------------------------------------------------


def test_spin_is_deterministic_work() -> None:
    assert spin(0) == 1
    assert spin(3) == ((1 * 31 + 0) * 31 + 1) * 31 + 2
    assert spin() == spin(PROBE_LOOPS)  # the same work every call


def test_idle_probe_ratio_is_one_and_a_doubled_run_is_two() -> None:
    calibration = [10_000 + (i % 5) * 100 for i in range(50)]  # median 10_200
    p = _fake_probe([999_999] * WARMUP + calibration + [10_200, 20_400, 40_800], calibration=50)
    assert p() == pytest.approx(1.0)
    assert p() == pytest.approx(2.0)  # took twice the median: the CPU ran at half speed
    assert p() == pytest.approx(4.0)
    assert p.count == 53  # the warm-up runs never joined the median


def test_warmup_runs_are_discarded_and_calibration_runs_once() -> None:
    calls: list[int] = []
    durations = [50_000] * WARMUP + [1_000] * 10 + [1_000, 3_000]
    p = Probe(calibration=10, clock=_clock(durations), work=calls.append)
    assert p() == pytest.approx(1.0)
    assert len(calls) == WARMUP + 10 + 1 and set(calls) == {PROBE_LOOPS}
    assert p() == pytest.approx(3.0)  # no second calibration: one more run only
    assert len(calls) == WARMUP + 10 + 2


def test_median_recovers_from_a_calibration_inside_a_slow_burst() -> None:
    slow, usual = 40_000, 10_000
    p = _fake_probe([slow] * (WARMUP + 50) + [usual] * 60, calibration=50)
    first = p()
    assert first == pytest.approx(usual / slow)  # the reference is still the burst's speed
    for _ in range(59):
        last = p()
    assert last == pytest.approx(1.0)  # usual-speed runs now outnumber the burst's


def test_window_drops_the_oldest_durations() -> None:
    p = _fake_probe([], calibration=0, window=3)
    for d in (100, 100, 100, 900, 900):
        p.observe(d)
    assert p.count == 3 and p.median_ns() == 900.0
    assert p.observe(300) == pytest.approx(300 / 900)  # window (900, 900, 300)
    even = _fake_probe([], calibration=0, window=4)
    for d in (100, 200, 300, 400):
        even.observe(d)
    assert even.median_ns() == 250.0


def test_probe_without_calibration_starts_at_one() -> None:
    p = _fake_probe([5_000, 10_000], calibration=0)
    assert p.median_ns() is None
    assert p() == 1.0 and p() == pytest.approx(10_000 / 7_500)


def test_probe_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="loops >= 1"):
        Probe(loops=0)
    with pytest.raises(ValueError, match="window >= 1"):
        Probe(window=0)


def test_shared_probe_is_one_per_process() -> None:
    assert shared_probe() is shared_probe()
    assert Recorder(CellKey("s", "m", "loopback", 1)).probe is shared_probe()


# -- the recorder ------------------------------------------------------------------------


def test_timed_window_excludes_the_probe() -> None:
    """The probe runs before and after the timed window: latency_ms covers fn(arg) only."""
    marks: dict[str, list[int]] = {"probe_start": [], "probe_end": [], "fn": []}

    def slow_probe_work(_: int) -> None:
        marks["probe_start"].append(time.perf_counter_ns())
        time.sleep(0.03)  # far longer than fn: inside the window, it would dominate
        marks["probe_end"].append(time.perf_counter_ns())

    async def fn(_: int) -> None:
        marks["fn"].append(time.perf_counter_ns())
        await asyncio.sleep(0.002)
        marks["fn"].append(time.perf_counter_ns())

    rec = Recorder(
        CellKey("s", "m", "loopback", 1), probe=Probe(calibration=0, work=slow_probe_work)
    )
    asyncio.run(rec.run("op", fn, repetitions=1))
    (sample,) = rec.samples
    entry, leave = marks["fn"]
    # Probe runs: one before the operation, one after it (no calibration asked for).
    assert len(marks["probe_end"]) == 2
    before_end, after_start = marks["probe_end"][0], marks["probe_start"][1]
    assert before_end <= entry and leave <= after_start
    latency_ns = sample["latency_ms"] * 1e6
    assert leave - entry <= latency_ns <= after_start - before_end
    assert isinstance(sample.get("machine_slowdown"), float)


def test_machine_slowdown_is_the_slower_probe_rounded() -> None:
    # Calibration median 1000 ns; then per operation: (before, after) probe durations.
    runs = [1_000] * (WARMUP + 51) + [1_000, 1_234] + [3_456, 1_000] + [999, 1_001]
    rec = Recorder(CellKey("s", "m", "loopback", 1), probe=_fake_probe(runs, calibration=51))

    async def fn(i: int) -> int:
        return i

    assert asyncio.run(rec.run("op", fn, repetitions=3)) == [0, 1, 2]
    got = [s.get("machine_slowdown") for s in rec.samples]
    # op 0: before 1.0, after 1.234; op 1: before 3.456 (the after run is usual); op 2: ~1.
    assert got == [1.23, 3.46, 1.0]


def test_recorder_without_probe_leaves_the_figure_empty() -> None:
    rec = Recorder(CellKey("s", "m", "loopback", 1), probe=None)

    async def fn(_: int) -> None:
        return None

    asyncio.run(rec.run("op", fn, repetitions=2, warmup=1))
    assert [s.get("machine_slowdown") for s in rec.samples] == [None, None, None]


# -- steady figures and verdicts ---------------------------------------------------------


def test_steady_counts_slowed_and_applies_the_n_guard() -> None:
    ms = np.arange(1, 121, dtype=np.float64)  # 1..120 ms
    slow = [3.0 if v % 15 == 0 else 1.0 for v in ms]  # 8 slowed: 15, 30, ..., 120
    got = steady(ms * MS, slow)
    calm = ms[ms % 15 != 0]
    assert (got.slowed_n, got.steady_n) == (8, 112)
    assert got.steady_p95_ms == pytest.approx(np.percentile(calm, 95))
    assert got.steady_p99_ms == pytest.approx(np.percentile(calm, 99))
    hundred = steady(ms[:100] * MS, slow[:100])  # 6 slowed leave 94: too few for p99
    assert hundred.steady_n == 94 and hundred.steady_p99_ms is None
    assert hundred.steady_p95_ms is not None
    assert steady([MS] * 19, [1.0] * 19).steady_p95_ms is None  # p95 needs 20


def test_steady_threshold_is_inclusive_and_unprobed_samples_are_neither() -> None:
    got = steady([1 * MS, 2 * MS, 3 * MS, 4 * MS], [2.0, 1.99, None, float("nan")])
    assert (got.slowed_n, got.steady_n) == (1, 1)
    nothing = steady([MS] * 30, [None] * 30)
    assert nothing.as_dict() == {
        "slowed_n": None,
        "steady_n": None,
        "steady_p95_ms": None,
        "steady_p99_ms": None,
    }
    with pytest.raises(ValueError, match="3 samples but 2"):
        steady([1, 2, 3], [1.0, 1.0])


def test_steady_status_only_for_a_fail_at_p95_or_p99() -> None:
    targets = Targets().as_targets()
    point_p99, read_p95, s3_p50 = (
        targets["local_point_read"],
        targets["local_read"],
        targets["s3_read"],
    )
    assert steady_status("FAIL", point_p99, 4.1) == "PASS"
    assert steady_status("FAIL", point_p99, 5.0) == "FAIL"  # not below 5 ms
    assert steady_status("FAIL", read_p95, 9.99) == "PASS"
    assert steady_status("FAIL", point_p99, None) is None  # too few steady samples
    assert steady_status("PASS", point_p99, 4.1) is None  # a PASS stays a PASS
    assert steady_status("FAIL", s3_p50, 100.0) is None  # judged at p50: no steady figure


def _scenario(tmp_path: Path) -> Scenario:
    path = tmp_path / "unit-local.toml"
    path.write_text(SCENARIO_TOML, encoding="utf-8")
    return load_scenario(path)


def _rows(sc: Scenario, op: str, lat: list[float], slow: list[float | None]) -> list[SampleRow]:
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
            machine_slowdown=s,
        )
        for i, (v, s) in enumerate(zip(lat, slow, strict=True))
    ]


def _noisy(sc: Scenario) -> list[SampleRow]:
    """point_read: 400 fast reads, 27 hit by a slow machine; add_1: slow on a steady machine.

    400 reads: a p99 interval needs 368 samples.
    """
    reads = [2.0 + (i % 10) / 10 for i in range(400)]
    read_slow: list[float | None] = [1.0] * 400
    for i in range(0, 400, 15):
        reads[i], read_slow[i] = 25.0, 4.5
    writes = [8.0 + (i % 7) for i in range(100)]
    # The sweep-like group: no probe figure at all.
    return (
        _rows(sc, "point_read", reads, read_slow)
        + _rows(sc, "add_1", writes, [1.0] * 100)
        + _rows(sc, "add_batch", [3.0] * 20, [None] * 20)
    )


def test_stats_keep_every_judged_figure_and_add_the_steady_ones(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    samples = _noisy(sc)
    by_op = {r["operation"]: r for r in stats_rows(samples)}
    reads = [s["latency_ms"] for s in samples if s["operation"] == "point_read"]
    whole = summarize([round(v * MS) for v in reads]).as_dict()
    assert {k: by_op["point_read"][k] for k in whole} == whole  # slowed samples included
    assert by_op["point_read"]["p99_ms"] == pytest.approx(25.0)
    assert (by_op["point_read"].get("slowed_n"), by_op["point_read"].get("steady_n")) == (27, 373)
    assert by_op["point_read"].get("steady_p99_ms") == pytest.approx(2.9)
    assert by_op["add_1"].get("slowed_n") == 0
    assert by_op["add_batch"].get("slowed_n") is None  # not probed: unknown, not zero


def test_verdicts_mark_a_fail_the_machine_explains(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    verdicts = verdict_rows(stats_rows(_noisy(sc)), {sc.name: sc})
    by = {(v["operation"], v["target"]): v for v in verdicts}
    p99 = by[("point_read", "local_point_read")]
    assert p99["status"] == "FAIL" and p99["value_ms"] == pytest.approx(25.0)  # unchanged
    assert p99.get("steady_status") == "PASS" and p99.get("slowed_n") == 27
    assert p99.get("steady_value_ms") == pytest.approx(2.9) and p99.get("n") == 400
    assert p99.get("ci_low") == 25.0 and p99.get("target_source") == "default"
    write = by[("add_1", "local_write")]
    assert write["status"] == "FAIL" and write.get("steady_status") == "FAIL"  # not the machine
    batch = by[("add_batch", "local_write")]
    # 20 samples cannot support a 95% interval of p95 (72 needed): UNSURE, not PASS.
    assert batch["status"] == "UNSURE" and batch.get("steady_status") is None

    table = format_verdicts(verdicts)
    lines = table.splitlines()
    assert lines[0].split() == [
        "scenario",
        "profile",
        "size",
        "operation",
        "target",
        "criterion",
        "value",
        "95%",
        "CI",
        "slowed",
        "source",
        "verdict",
    ]
    p99_line = next(line for line in lines if "local_point_read" in line)
    assert p99_line.endswith(
        "27/400  default  FAIL (machine: 27/400 samples slowed; steady p99 2.90 ms)"
    )
    write_line = next(line for line in lines if "add_1" in line)
    assert write_line.endswith("0/100   default  FAIL")
    batch_line = next(line for line in lines if "add_batch" in line)
    assert batch_line.endswith("-       default  UNSURE (n too small)")
    assert "n too small" in batch_line.split("3.00 ms", 1)[1]  # the interval column
    assert lines[-1].startswith("slowed: samples taken while the CPU ran at half speed")
    assert lines[-2].startswith("95% CI: distribution-free interval")
    assert sum("FAIL" in line for line in lines[2:-2]) == 2  # the marked row is still a FAIL


def test_fail_with_too_few_steady_samples_says_so(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    # 310 slowed samples of 400 at 40 ms: p99 (and its whole interval) far above 5 ms, and
    # only 90 steady samples left, too few for a steady p99.
    reads = [40.0] * 310 + [2.0] * 90
    slow: list[float | None] = [6.0] * 310 + [1.0] * 90
    verdicts = verdict_rows(stats_rows(_rows(sc, "point_read", reads, slow)), {sc.name: sc})
    p99 = next(v for v in verdicts if v["target"] == "local_point_read")
    assert p99["status"] == "FAIL" and p99.get("steady_value_ms") is None
    assert p99.get("steady_status") is None
    assert "FAIL (steady p99: too few steady samples)" in format_verdicts(verdicts)


def test_rows_without_noise_keep_the_plain_table(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    rows = _rows(sc, "point_read", [2.0] * 20, [None] * 20)
    table = format_verdicts(verdict_rows(stats_rows(rows), {sc.name: sc}))
    assert "slowed" not in table and table.splitlines()[0].split()[-1] == "verdict"


def test_machine_noise_line(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    noise = machine_noise(_noisy(sc))
    assert noise == {
        "threshold": 2.0,
        "probed_n": 500,
        "slowed_n": 27,
        "slowed_share": 27 / 500,
        "reference_job": None,
    }
    assert format_machine_noise(noise) == (
        "machine noise: 27 of 500 samples (5.4 %) ran with the CPU at half speed or worse "
        "(machine_slowdown >= 2)"
    )
    # With the reference job's samples (warm-ups left out), its spread is printed too.
    job = [5.0] * 95 + [9.0] * 4 + [30.0]
    rows = _rows(sc, "fixed_cpu_job", [99.0, *job], [1.0] * 101)
    for i, row in enumerate(rows):
        row["path"] = REFERENCE_PATH
        row["phase"] = "warmup" if i == 0 else "warm"
    with_job = machine_noise([*_noisy(sc), *rows])
    assert with_job["reference_job"]["n"] == 100
    assert with_job["reference_job"]["max_ms"] == 30.0
    line = format_machine_noise(with_job).splitlines()[1]
    assert line.startswith("reference job (the same CPU work every time, n=100): p50 5.0 ms")
    assert "p99 9.2 ms" in line and "cannot be judged" in line
    none = machine_noise(_rows(sc, "point_read", [1.0], [None]))
    assert none["slowed_share"] is None and "not measured" in format_machine_noise(none)


# -- results and report ------------------------------------------------------------------


def test_noise_round_trips_through_the_results_and_the_report(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    samples = _noisy(sc)
    stats = stats_rows(samples)
    run = tmp_path / "run"
    write_run(
        run,
        metadata={},
        scenarios=[sc],
        stats_rows=stats,
        samples_rows=samples,
        verdict_rows=verdict_rows(stats, {sc.name: sc}),
    )
    frame = load(run)
    assert frame["machine_slowdown"].dtype == "float64"
    assert frame["machine_slowdown"].tolist()[:2] == [4.5, 1.0]
    assert frame["machine_slowdown"].isna().sum() == 20  # the unprobed add_batch rows
    st = load_stats(run).set_index("operation")
    assert st.loc["point_read", "slowed_n"] == 27
    assert st.loc["point_read", "steady_p99_ms"] == pytest.approx(2.9)
    v = load_verdicts(run).set_index("target")
    assert v.loc["local_point_read", "steady_status"] == "PASS"

    data = report.load_report_data(run)
    table = report.verdict_table(data)
    row = table[table["target"] == "local_point_read"].iloc[0]
    assert (row["status"], row["slowed"], row["steady_value"], row["steady_status"]) == (
        "FAIL",
        "27/400",
        "2.90",
        "PASS",
    )
    writes = table[table["target"] == "local_write"].set_index("operation")
    assert list(writes["steady_status"].loc[["add_1", "add_batch"]]) == ["FAIL", "-"]
    assert list(writes["slowed"].loc[["add_1", "add_batch"]]) == ["0/100", "-"]
    stats_table = report.stats_table(data).set_index("operation")
    assert stats_table.loc["point_read", "slowed_n"] == 27
    assert "27 of 500 samples (5.4 %)" in report.machine_noise_text(data)
    page = report.render_html(data)
    assert "steady verdict" in page and "27/400" in page and "5.4 %" in page
    assert report.verdict_figure(data) is not None


def test_report_of_a_run_without_probe_figures_shows_dashes(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    samples = _rows(sc, "point_read", [2.0] * 20, [None] * 20)
    stats = stats_rows(samples)
    verdicts = [
        {k: v for k, v in row.items() if k not in ("n", "slowed_n", "steady_status")}
        for row in verdict_rows(stats, {sc.name: sc})
    ]  # as a schema-1 run holds them
    run = tmp_path / "plain"
    write_run(
        run,
        metadata={},
        scenarios=[sc],
        stats_rows=stats,
        samples_rows=samples,
        verdict_rows=verdicts,  # type: ignore[arg-type]
    )
    data = report.load_report_data(run)
    table = report.verdict_table(data)
    assert set(table["slowed"]) == {"-"} and set(table["steady_status"]) == {"-"}
    assert list(table["status"]) == ["UNSURE", "UNSURE"]  # 20 samples: no p95/p99 interval
    assert report.stats_table(data)["slowed_n"].isna().all()
    assert "not measured" in report.machine_noise_text(data)
    assert report.verdict_figure(data) is not None
