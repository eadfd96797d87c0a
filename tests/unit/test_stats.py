"""Percentiles with an n guard, Mann-Whitney U, regression rule, verdicts against targets."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from lancesync_bench.stats import (
    Summary,
    Target,
    Targets,
    compare,
    judge,
    mann_whitney,
    min_samples,
    percentile,
    summarize,
    verdict,
)

MS = 1_000_000  # ns per ms


def test_min_samples_rule() -> None:
    assert (min_samples(50), min_samples(95), min_samples(99)) == (2, 20, 100)
    assert min_samples(99.9) == 1000
    with pytest.raises(ValueError):
        min_samples(100)


def test_percentiles_match_numpy_on_large_n() -> None:
    ns = np.random.default_rng(1).lognormal(15, 0.5, 5000).astype(np.int64)
    s = summarize(ns)
    ms = ns / MS
    assert s.n == 5000
    for q, got in ((50, s.p50_ms), (95, s.p95_ms), (99, s.p99_ms)):
        assert got == pytest.approx(np.percentile(ms, q))
    assert s.max_ms == pytest.approx(ms.max()) and s.mean_ms == pytest.approx(ms.mean())


def test_unsupported_percentiles_are_none() -> None:
    s = summarize([5 * MS] * 19)
    assert s.p50_ms == 5.0 and s.p95_ms is None and s.p99_ms is None
    assert summarize([5 * MS] * 20).p95_ms == 5.0
    assert summarize([1] * 99).p99_ms is None and summarize([1] * 100).p99_ms is not None
    one = summarize([3 * MS])
    assert one.p50_ms is None and one.max_ms == 3.0 and one.mean_ms == 3.0
    empty = summarize([])
    assert empty.n == 0 and empty.max_ms is None and empty.mean_ms is None
    assert percentile([1, 2, 3], 99) is None


def test_summary_as_dict_and_stat() -> None:
    s = summarize(np.arange(1, 101) * MS)
    assert s.as_dict()["n"] == 100 and s.stat("p99") == s.p99_ms
    with pytest.raises(ValueError, match="p90"):
        s.stat("p90")


def test_mann_whitney_u_matches_pair_counting() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 20, 30), rng.integers(5, 25, 25)  # many ties
    _, prob = mann_whitney(a, b)
    pairs = [1.0 if y > x else 0.5 if y == x else 0.0 for x, y in itertools.product(a, b)]
    assert prob == pytest.approx(sum(pairs) / len(pairs))


def test_mann_whitney_p_value_known_case() -> None:
    # Fully separated groups of 10 without ties: U = 0, mu = 50, sigma = sqrt(175).
    p, prob = mann_whitney(np.arange(10), np.arange(10, 20))
    assert prob == 1.0
    assert p == pytest.approx(math.erfc((50 - 0.5) / math.sqrt(175) / math.sqrt(2)))


def test_compare_detects_a_2x_shift() -> None:
    rng = np.random.default_rng(42)
    base = rng.lognormal(np.log(5 * MS), 0.2, 200)
    cmp = compare(base, 2 * rng.lognormal(np.log(5 * MS), 0.2, 200))
    assert cmp.median_ratio == pytest.approx(2.0, rel=0.1)
    assert cmp.p_value is not None and cmp.p_value < 1e-6
    assert cmp.ci_low is not None and cmp.ci_high is not None and cmp.median_ratio is not None
    assert cmp.ci_low < cmp.median_ratio < cmp.ci_high


def test_compare_finds_nothing_in_identical_distributions() -> None:
    rng = np.random.default_rng(7)
    a = rng.lognormal(np.log(5 * MS), 0.2, 200)
    b = rng.lognormal(np.log(5 * MS), 0.2, 200)
    cmp = compare(a, b)
    assert cmp.p_value is not None and cmp.p_value > 0.01
    same = compare([MS] * 30, [MS] * 30)
    assert same.p_value == 1.0


def test_compare_with_few_samples_gives_no_test() -> None:
    cmp = compare([MS] * 5, [3 * MS] * 5)
    assert cmp.median_ratio == 3.0 and cmp.p_value is None and cmp.p95_ratio is None


def test_bootstrap_is_seeded() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(50) * MS, rng.random(50) * MS
    assert compare(a, b, seed=1) == compare(a, b, seed=1)


def _summary(
    p50: float | None = None, p95: float | None = None, p99: float | None = None
) -> Summary:
    return Summary(n=100, mean_ms=p50, min_ms=p50, p50_ms=p50, p95_ms=p95, p99_ms=p99, max_ms=p99)


def test_verdict_upper_bound() -> None:
    target = Target("local_read", 10.0, stat="p95")
    assert verdict(_summary(p95=9.9), target) == "PASS"
    assert verdict(_summary(p95=10.0), target) == "FAIL"
    assert verdict(_summary(p95=None), target) == "N/A"
    assert "needs 20" in judge(_summary(p95=None), target).note


def test_verdict_band_below_is_not_a_failure() -> None:
    band = Targets().as_targets()["s3_read"]
    assert (band.lower_ms, band.upper_ms, band.stat) == (50.0, 200.0, "p50")
    below = judge(_summary(p50=7.0), band, profile="loopback")
    assert below.status == "BELOW" and "below band (loopback)" in below.note
    assert verdict(_summary(p50=120.0), band) == "PASS"
    assert verdict(_summary(p50=120.0), band, profile="same-region") == "PASS"
    in_band = judge(_summary(p50=107.0), band, profile="loopback")
    assert in_band.status == "BELOW" and "not a network figure" in in_band.note
    assert verdict(_summary(p50=250.0), band, profile="loopback") == "FAIL"
    assert "emulated same-region" in judge(_summary(p50=30.0), band, profile="same-region").note


def test_target_validation_and_description() -> None:
    assert Target("t", 200, 50, "p50").describe() == "p50 in 50-200 ms"
    with pytest.raises(ValueError):
        Target("t", 50, 200)
    with pytest.raises(ValueError):
        Target("t", 10, stat="p90")
