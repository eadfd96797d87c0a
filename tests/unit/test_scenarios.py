"""Scenario files: the shipped four load and resolve; malformed files name file and key."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lancesync_bench.config import StorageMode
from lancesync_bench.errors import ConfigError
from lancesync_bench.scenarios import SweepSpec, load_scenario, load_scenarios

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
VALID = """
description = "test scenario"
[env]
FRONTEND_TYPE = "web"
BACKEND_LOCATION = "cloud"
[workload]
sizes = [100, 1000]
dim = 8
seed = 1
[profiles.loopback]
rtt_ms = 0
default = true
[profiles.far]
rtt_ms = 80
max_size = 100
"""


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("web-cloud", StorageMode.S3_PRIMARY_LOCAL_CACHE),
        ("web-local", StorageMode.LOCAL_PRIMARY_S3_SYNC),
        ("desktop-cloud", StorageMode.LOCAL_PRIMARY_S3_BACKUP),
        ("desktop-local", StorageMode.LOCAL_PRIMARY_S3_BACKUP),
    ],
)
def test_shipped_scenario_resolves_to_expected_mode(name: str, mode: StorageMode) -> None:
    scenario = load_scenario(SCENARIOS / f"{name}.toml")
    assert scenario.name == name and scenario.storage_mode is mode
    assert scenario.workload.dim == 384 and scenario.workload.repetitions >= 100
    # desktop-cloud measures desktop-local's mode again: loopback only, for the time budget.
    defaults = {"loopback"} if name == "desktop-cloud" else {"loopback", "same-region"}
    assert {p.name for p in scenario.profiles if p.default} == defaults
    assert scenario.targets.local_read_ms == 10.0 and scenario.targets.s3_max_ms == 200.0
    # The shipped files keep the spec's targets: every source is "default".
    assert scenario.targets.recall_at_10 == 0.95 and not scenario.target_sources
    assert scenario.target_source("vector_top10") == "default"
    json.dumps(scenario.to_dict())


def test_shipped_recall_hard_set_runs_in_desktop_local() -> None:
    by_name = {s.name: s for s in load_scenarios(SCENARIOS)}
    local = by_name["desktop-local"]
    assert local.recall is not None and local.recall.datasets == ("uniform",)
    assert local.recall_sizes() == (10_000,) and local.recall_sizes(quick=True) == (1000,)
    assert local.recall.sweep_nprobes == (5, 10, 20, 40, 80)
    assert local.workload.data == "clustered"
    assert by_name["web-cloud"].recall_sizes() == ()


def test_shipped_sweep_is_web_cloud_only() -> None:
    sweeps = {s.name: s.sweep for s in load_scenarios(SCENARIOS)}
    spec = sweeps.pop("web-cloud")
    assert spec is not None and spec.users == (1, 2, 4) and spec.profile == "loopback"
    assert spec.ramp_steps == 4 and spec.p99_bound_ms == 200.0
    assert set(sweeps.values()) == {None}


def test_load_scenarios_all_and_by_name() -> None:
    names = [s.name for s in load_scenarios(SCENARIOS)]
    assert names == ["desktop-cloud", "desktop-local", "web-cloud", "web-local"]
    assert [s.name for s in load_scenarios(SCENARIOS, ["web-local", "web-cloud"])] == [
        "web-local",
        "web-cloud",
    ]
    with pytest.raises(ConfigError, match="no scenario 'mobile'"):
        load_scenarios(SCENARIOS, ["mobile"])


def test_quick_mode_is_small() -> None:
    for s in load_scenarios(SCENARIOS):
        assert all(size <= 1000 for _, size in s.cells(quick=True))
        assert s.repetitions(quick=True) < s.repetitions()


def _write(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_minimal_file_uses_defaults(tmp_path: Path) -> None:
    s = load_scenario(_write(tmp_path, VALID, "mini.toml"))
    assert s.name == "mini" and s.storage_mode is StorageMode.S3_PRIMARY_LOCAL_CACHE
    assert s.workload.quick_sizes == (100,) and s.workload.batch_size == 100
    assert [(p.name, n) for p, n in s.cells()] == [("loopback", 100), ("loopback", 1000)]
    assert [(p.name, n) for p, n in s.cells(profiles=["far"])] == [("far", 100)]
    # The background sync is off in a benchmark unless the scenario turns it on.
    assert s.config_env({"S3_BUCKET": "b"}) == {
        "SYNC_INTERVAL_S": "0",
        **s.env,
        "S3_BUCKET": "b",
    }
    periodic = dataclasses.replace(s, env={**s.env, "SYNC_INTERVAL_S": "5"})
    assert periodic.config_env({})["SYNC_INTERVAL_S"] == "5"
    with pytest.raises(ConfigError, match="no profile 'moon'"):
        s.cells(profiles=["moon"])


@pytest.mark.parametrize(
    ("change", "key", "detail"),
    [
        (("sizes = [100, 1000]", "sizes = 'x'"), "workload.sizes", "got 'x'"),
        (("sizes = [100, 1000]", "sizes = [100, -1]"), "workload.sizes", "positive"),
        (("dim = 8", "dim = true"), "workload.dim", "got True"),
        (("dim = 8", "dim = 8\nsizez = [1]"), "workload.sizez", "unknown key"),
        (("seed = 1\n", ""), "workload.seed", "required key is missing"),
        (('description = "test scenario"', ""), "description", "required"),
        (("rtt_ms = 80", "rtt_ms = -5"), "profiles.far.rtt_ms", "ms >= 0"),
        (("default = true", "default = 'yes'"), "profiles.loopback.default", "true or false"),
        (("max_size = 100", "max_size = 100\ncolour = 1"), "profiles.far.colour", "unknown"),
        (("default = true", "default = false"), "profiles", "default = true"),
        (('FRONTEND_TYPE = "web"', 'FRONTEND_TYPE = "mobile"'), "env", "FRONTEND_TYPE"),
        (('FRONTEND_TYPE = "web"', ""), "env.FRONTEND_TYPE", "required"),
        (('BACKEND_LOCATION = "cloud"', 'AWS_SECRET_ACCESS_KEY = "k"'), "env.AWS_SECRET", "run"),
        (("[env]", 'expected_storage_mode = "local_only"\n[env]'), "expected_storage_mode", ""),
        (("[workload]", "[targets]\ns3_min_ms = 300\n[workload]"), "targets.s3_min_ms", ""),
        (("[workload]", "[targets]\nlocal_read_ms = 0\n[workload]"), "targets.local_read", ""),
        (("[workload]", "[targets]\nrecall_at_10 = 1.5\n[workload]"), "targets.recall_at_10", ""),
        (
            ("[workload]", "[targets]\nlocal_reed_ms = 5\n[workload]"),
            "targets.local_reed_ms",
            "unknown",
        ),
        (
            ("[workload]", "[targets]\nlocal_read_ms = 'fast'\n[workload]"),
            "targets.local_read_ms",
            "'fast'",
        ),
        (("seed = 1", "seed = 1\ndata = 'gaussian'"), "workload.data", "clustered, uniform"),
        (("[workload]", "[recall]\ndatasets = ['hard']\n[workload]"), "recall.datasets", "uniform"),
        (("[workload]", "[recall]\nsizes = []\n[workload]"), "recall.sizes", "positive"),
        (
            ("[workload]", "[recall]\nsweep_nprobes = [0]\n[workload]"),
            "recall.sweep_nprobes",
            ">= 1",
        ),
        (("[workload]", "[recall]\nnprobes = [5]\n[workload]"), "recall.nprobes", "unknown key"),
    ],
)
def test_malformed_file_names_file_and_key(
    tmp_path: Path, change: tuple[str, str], key: str, detail: str
) -> None:
    old, new = change
    assert old in VALID
    path = _write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert key in message and detail in message, message


def test_targets_table_overrides_defaults_and_names_its_file(tmp_path: Path) -> None:
    text = VALID.replace(
        "[workload]", "[targets]\nlocal_read_ms = 25\nrecall_at_10 = 0.9\n[workload]", 1
    )
    path = _write(tmp_path, text, "team.toml")
    s = load_scenario(path)
    assert s.targets.local_read_ms == 25.0 and s.targets.recall_at_10 == 0.9
    assert s.targets.local_write_ms == 10.0  # not set: the spec's default
    assert s.target_source("local_read") == str(path)
    assert s.target_source("recall_at_10") == str(path)
    assert s.target_source("local_write") == "default"
    assert s.to_dict()["target_sources"] == {"local_read": str(path), "recall_at_10": str(path)}


def test_uniform_data_and_recall_table(tmp_path: Path) -> None:
    text = VALID.replace("seed = 1", "seed = 1\ndata = 'uniform'").replace(
        "[profiles.loopback]", "[recall]\nsizes = [1000]\n[profiles.loopback]"
    )
    s = load_scenario(_write(tmp_path, text, "hard.toml"))
    assert s.workload.data == "uniform" and s.workload.workload().data == "uniform"
    assert s.recall is not None and s.recall.datasets == ("uniform",)
    assert s.recall_sizes() == (1000,) and s.recall_sizes(quick=True) == ()
    assert s.to_dict()["recall"]["sweep_refine"] == [0, 10]


def test_bad_toml_syntax_and_missing_file(tmp_path: Path) -> None:
    path = _write(tmp_path, 'description = "unterminated\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_scenario(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_scenario(tmp_path / "absent.toml")


def test_error_message_format(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("sizes = [100, 1000]", "sizes = 'x'"), "web-cloud.toml")
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert str(info.value) == (
        f"{path}: workload.sizes: expected a list of distinct positive integers, got 'x'"
    )


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, 'name = "same"\n' + VALID, "a.toml")
    _write(tmp_path, 'name = "same"\n' + VALID, "b.toml")
    with pytest.raises(ConfigError, match=r"b\.toml: name"):
        load_scenarios(tmp_path)


def test_sweep_table_defaults_and_to_dict(tmp_path: Path) -> None:
    s = load_scenario(_write(tmp_path, VALID + "[sweep]\nusers = [1, 4]\n", "mini.toml"))
    assert s.sweep == SweepSpec(users=(1, 4), sizes=(100,), profile="loopback")
    assert s.sweep.ops_per_user == 30 and s.sweep.rate_per_s == 10.0
    assert s.to_dict()["sweep"]["users"] == [1, 4]
    assert load_scenario(_write(tmp_path, VALID, "plain.toml")).to_dict()["sweep"] is None
    full = VALID + (
        "[sweep]\nusers = [2]\nsizes = [1000]\nprofile = 'far'\n"
        "ops_per_user = 5\nrate_per_s = 2.5\nwrite_every = 1\nramp_steps = 3\n"
        "p99_bound_ms = 80\nlevel_ops = 12\n"
    )
    assert load_scenario(_write(tmp_path, full, "full.toml")).sweep == SweepSpec(
        users=(2,),
        sizes=(1000,),
        profile="far",
        ops_per_user=5,
        rate_per_s=2.5,
        write_every=1,
        ramp_steps=3,
        p99_bound_ms=80.0,
        level_ops=12,
    )


def test_level_ops_raises_the_operations_of_levels_with_few_users() -> None:
    spec = SweepSpec(users=(1, 2, 4), sizes=(1000,), profile="loopback", ops_per_user=20)
    assert [spec.ops_at(u) for u in (1, 2, 4)] == [20, 20, 20]  # level_ops 0: per user
    spec = dataclasses.replace(spec, level_ops=60)
    assert [spec.ops_at(u) for u in (1, 2, 4)] == [60, 30, 20]
    assert spec.ops_at(3) == 20  # never below ops_per_user


def test_the_shipped_sweep_supports_a_write_p95_at_every_level() -> None:
    """A p95 needs 20 samples: every user level of web-cloud's sweep makes 20 writes."""
    from lancesync_bench.bench.sweep import WRITE, op_kinds

    sweep = load_scenario(SCENARIOS / "web-cloud.toml").sweep
    assert sweep is not None
    for users in sweep.users:
        ops = sweep.ops_at(users)
        writes = users * op_kinds(ops, sweep.write_every).count(WRITE)
        assert writes >= 20 and users * ops - writes >= 20, (users, ops, writes)


@pytest.mark.parametrize(
    ("table", "key", "detail"),
    [
        ("ops_per_user = 3", "sweep.users", "required key is missing"),
        ("users = [1, 1]", "sweep.users", "distinct integers from 1 to 64"),
        ("users = [100]", "sweep.users", "got [100]"),
        ("users = [1]\nprofile = 'moon'", "sweep.profile", "allowed: loopback, far"),
        ("users = [1]\nrate_per_s = 0", "sweep.rate_per_s", "a positive number"),
        ("users = [1]\nwrite_every = 0", "sweep.write_every", "a positive integer"),
        ("users = [1]\nthreads = 2", "sweep.threads", "unknown key"),
        ("users = [1]\nramp_steps = 9", "sweep.ramp_steps", "0 to 8"),
        ("users = [1]\nramp_steps = true", "sweep.ramp_steps", "0 to 8"),
        ("users = [1]\np99_bound_ms = -1", "sweep.p99_bound_ms", "a positive number"),
        ("users = [1]\nlevel_ops = -1", "sweep.level_ops", "0 to 10000"),
    ],
)
def test_malformed_sweep_names_file_and_key(
    tmp_path: Path, table: str, key: str, detail: str
) -> None:
    path = _write(tmp_path, VALID + "[sweep]\n" + table + "\n")
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert detail in message, message
