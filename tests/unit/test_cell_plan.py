"""How many samples a cell takes: cheap operations, hard sets and the search sweep."""

from __future__ import annotations

from pathlib import Path

import pytest

from lancesync_bench.bench.cell import CellPlan
from lancesync_bench.errors import ConfigError
from lancesync_bench.scenarios import Scenario, load_scenario

TOML = """
description = "unit"
[env]
FRONTEND_TYPE = "desktop"
BACKEND_LOCATION = "local"
[workload]
sizes = [1000, 10000]
quick_sizes = [1000]
dim = 8
seed = 1
{extra}
[profiles.loopback]
rtt_ms = 0
default = true
[profiles.same-region]
rtt_ms = 20
default = true
[recall]
sizes = [10000]
quick_sizes = [1000]
"""


def _scenario(tmp_path: Path, extra: str = "") -> Scenario:
    path = tmp_path / "plan.toml"
    path.write_text(TOML.format(extra=extra), encoding="utf-8")
    return load_scenario(path)


def test_cheap_samples_only_in_the_first_default_profile(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    first = CellPlan.for_scenario(sc, quick=False, profile="loopback", size=1000)
    assert (first.cheap_n, first.cheap_budget_s, first.tail_budget_s) == (1000, 1.5, 4.0)
    assert first.hard_sets == () and first.search_sweep is None  # 1k is not a recall size
    other = CellPlan.for_scenario(sc, quick=False, profile="same-region", size=10000)
    assert other.cheap_n == 0 and other.hard_sets == () and other.search_sweep is None
    recall = CellPlan.for_scenario(sc, quick=False, profile="loopback", size=10000)
    assert recall.hard_sets == ("uniform",) and recall.search_sweep is not None
    quick = CellPlan.for_scenario(sc, quick=True, profile="loopback", size=1000)
    assert (quick.cheap_n, quick.cheap_budget_s, quick.tail_budget_s) == (400, 1.0, 1.0)
    assert quick.hard_sets == ("uniform",)


def test_cheap_samples_come_from_the_scenario(tmp_path: Path) -> None:
    sc = _scenario(tmp_path, "cheap_samples = 0\ntail_budget_s = 2.5")
    plan = CellPlan.for_scenario(sc, quick=False, profile="loopback", size=1000)
    assert plan.cheap_n == 0 and plan.tail_budget_s == 2.5


def test_bad_cheap_samples_names_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"plan\.toml: workload\.cheap_samples: expected"):
        _scenario(tmp_path, "cheap_samples = -1")


def test_a_baseline_with_a_time_budget_matches_n_until_the_budget_is_spent() -> None:
    from lancesync_bench.bench.cell import _Rival, _rival_count

    free = _Rival(plain=None, budget_s=None)  # type: ignore[arg-type]
    assert _rival_count(free, 120, 80, 100.0) == 40  # always the service's n
    assert _rival_count(free, 80, 80, 0.0) == 0
    s3 = _Rival(plain=None, budget_s=4.0, floor=20)  # type: ignore[arg-type]
    assert _rival_count(s3, 40, 0, 0.0) == 40  # the first round: as many as the service
    assert _rival_count(s3, 80, 40, 2.0) == 40  # 50 ms each: 40 more fit in the 2 s left
    assert _rival_count(s3, 80, 40, 3.5) == 6  # 87.5 ms each: 0.5 s left holds 5, and one
    assert _rival_count(s3, 80, 10, 5.0) == 10  # over budget, but up to its floor of 20
    assert _rival_count(s3, 80, 40, 5.0) == 0  # over budget and past its floor


def test_the_long_run_adds_the_profiles_that_are_not_default(tmp_path: Path) -> None:
    path = tmp_path / "long.toml"
    path.write_text(TOML.format(extra="") + "[profiles.far]\nrtt_ms = 80\n", encoding="utf-8")
    sc = load_scenario(path)
    default = {p.name for p, _ in sc.cells()}
    long = {p.name for p, _ in sc.cells(every_profile=True)}
    assert default == {"loopback", "same-region"} and long == default | {"far"}
    assert {p.name for p, _ in sc.cells(profiles=["far"], every_profile=True)} == {"far"}
