"""Confidence intervals on percentiles and recall, and PASS / FAIL / UNSURE against targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import quantile_test

from lancesync_bench.intervals import (
    Interval,
    interval_min_samples,
    judge_interval,
    judge_recall,
    mean_interval,
    percentile_interval,
)
from lancesync_bench.stats import Summary, Target, Targets

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

MS = 1_000_000  # ns per ms


def test_median_interval_of_ten_is_the_textbook_one() -> None:
    # n = 10, median, 95%: ranks 2 and 9 (coverage 97.9%), the classic table's answer.
    ci = percentile_interval(np.arange(1, 11) * MS, 50)
    assert ci is not None and (ci.low, ci.high) == (2.0, 9.0)


@pytest.mark.parametrize(("n", "q"), [(10, 50), (100, 95), (400, 99), (1000, 99), (73, 95)])
def test_interval_matches_scipy_quantile_test(n: int, q: float) -> None:
    x = np.random.default_rng(n).lognormal(1.0, 0.6, n)
    ci = percentile_interval(np.round(x * MS), q)
    ref = quantile_test(np.round(x * MS) / MS, q=1.0, p=q / 100).confidence_interval(0.95)
    assert ci is not None
    assert ci.low == pytest.approx(ref.low) and ci.high == pytest.approx(ref.high)


def test_interval_min_samples_known_values() -> None:
    # q^n <= 0.025: p95 needs 72 (0.95^72 = 0.0249), p99 needs 368 (0.99^367 = 0.02502).
    assert (interval_min_samples(50), interval_min_samples(95), interval_min_samples(99)) == (
        6,
        72,
        368,
    )


@pytest.mark.parametrize("q", [50, 90, 95, 99])
def test_interval_exists_from_exactly_the_minimum(q: float) -> None:
    need = interval_min_samples(q)
    assert percentile_interval(np.arange(need - 1) * MS, q) is None
    assert percentile_interval(np.arange(need) * MS, q) is not None


def test_interval_contains_the_point_figure() -> None:
    x = np.random.default_rng(7).exponential(3.0, 2000) * MS
    for q in (50, 95, 99):
        ci = percentile_interval(x, q)
        point = np.percentile(x / MS, q)
        assert ci is not None and ci.low <= point <= ci.high


def test_interval_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        percentile_interval([1, 2, 3], 100)
    with pytest.raises(ValueError):
        interval_min_samples(99, confidence=1.0)
    assert percentile_interval([], 50) is None


def _summary(n: int, p95: float | None = None, p50: float | None = None) -> Summary:
    return Summary(n=n, mean_ms=1.0, min_ms=1.0, p50_ms=p50, p95_ms=p95, p99_ms=None, max_ms=1.0)


def test_pass_fail_unsure_against_an_upper_bound() -> None:
    target = Target("local_read", 10.0, stat="p95")
    passed = judge_interval(_summary(500, 8.0), target, Interval(7.0, 9.5))
    assert passed.status == "PASS" and "95% CI 7.00-9.50 ms" in passed.note
    failed = judge_interval(_summary(500, 12.0), target, Interval(10.0, 14.0))
    assert failed.status == "FAIL"
    unsure = judge_interval(_summary(500, 9.0), target, Interval(8.0, 11.0))
    assert unsure.status == "UNSURE" and "straddles" in unsure.note and unsure.value_ms == 9.0


def test_no_interval_is_unsure_n_too_small() -> None:
    target = Target("local_point_read", 5.0, stat="p99")
    v = judge_interval(
        Summary(n=120, mean_ms=1, min_ms=1, p50_ms=1, p95_ms=2, p99_ms=3.0, max_ms=4),
        target,
        None,
    )
    assert v.status == "UNSURE" and "n too small" in v.note and "needs 368" in v.note


def test_band_uses_the_whole_interval() -> None:
    band = Targets().as_targets()["s3_write"]  # p50 in 50-200 ms
    s = _summary(100, p50=100.0)
    assert judge_interval(s, band, Interval(60, 150)).status == "PASS"
    assert judge_interval(s, band, Interval(40, 150)).status == "UNSURE"
    assert judge_interval(s, band, Interval(210, 300)).status == "FAIL"
    below = judge_interval(s, band, Interval(2, 9), profile="loopback")
    assert below.status == "BELOW" and "loopback" in below.note
    assert judge_interval(s, band, Interval(150, 250)).status == "UNSURE"
    # Inside the band with no network in it (a 107 ms loopback cache miss): not a PASS.
    miss = judge_interval(_summary(100, p50=107.0), band, Interval(95, 120), profile="loopback")
    assert miss.status == "BELOW" and "not a network figure" in miss.note
    region = judge_interval(s, band, Interval(60, 150), profile="same-region")
    assert region.status == "PASS"
    slow = judge_interval(s, band, Interval(210, 300), profile="loopback")
    assert slow.status == "FAIL"  # too slow stays too slow, network or not


def test_the_s3_band_is_judged_at_p95_as_well() -> None:
    from lancesync_bench.bench.verdicts import targets_for
    from lancesync_bench.scenarios import load_scenarios

    targets = Targets().as_targets()
    assert targets["s3_write_p95"].stat == targets["s3_read_p95"].stat == "p95"
    assert targets["s3_write_p95"].describe() == "p95 in 50-200 ms"
    cloud = next(s for s in load_scenarios(SCENARIOS) if s.name == "web-cloud")
    mode = cloud.storage_mode.value
    assert targets_for(mode, "add_1", "service", 1000, cloud) == ["s3_write", "s3_write_p95"]
    assert targets_for(mode, "miss_read", "service", 1000, cloud) == ["s3_read", "s3_read_p95"]
    # A typical figure in the band with a tail past it: p50 PASS, p95 FAIL.
    s = Summary(n=100, mean_ms=130, min_ms=60, p50_ms=120.0, p95_ms=260.0, p99_ms=300, max_ms=320)
    assert judge_interval(s, targets["s3_write"], Interval(110, 130)).status == "PASS"
    assert judge_interval(s, targets["s3_write_p95"], Interval(230, 290)).status == "FAIL"


def test_recall_judged_on_its_interval() -> None:
    assert judge_recall(0.99, Interval(0.97, 1.0), 0.95) == "PASS"
    assert judge_recall(0.45, Interval(0.43, 0.47), 0.95) == "FAIL"
    assert judge_recall(0.95, Interval(0.93, 0.97), 0.95) == "UNSURE"
    assert judge_recall(1.0, None, 0.95) == "UNSURE"


def test_mean_interval_bootstrap() -> None:
    assert mean_interval([1.0] * 50) == Interval(1.0, 1.0)
    assert mean_interval([0.5]) is None
    values = np.random.default_rng(3).uniform(0.3, 0.6, 200)
    ci = mean_interval(values)
    assert ci is not None and ci.low < float(np.mean(values)) < ci.high
    assert ci.high - ci.low < 0.05
    assert mean_interval(values) == ci  # seeded
