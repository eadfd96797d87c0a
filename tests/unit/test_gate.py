"""The regression gate's parts: the rule across rounds, and the test-only slowdown switch."""

from __future__ import annotations

import asyncio
import math

import pytest

from lancesync_bench.bench.gate import adjust, judge_key, judge_keys
from lancesync_bench.bench.recorder import CellKey, Recorder
from lancesync_bench.bench.slowdown import ENV_VAR, Slowdown
from lancesync_bench.errors import ConfigError

# -- the rule ------------------------------------------------------------------------------


def test_the_ratio_is_of_geometric_means_with_an_interval_around_it() -> None:
    j = judge_key([1.0, 1.1, 0.9], [2.0, 2.2, 1.8])
    assert j.ratio == pytest.approx(2.0)
    assert j.ci_low is not None and j.ci_high is not None
    assert j.ci_low < 2.0 < j.ci_high
    assert j.p_value is not None and j.p_value < 0.01


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
