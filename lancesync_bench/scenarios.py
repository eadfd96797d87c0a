"""Benchmark scenarios: one TOML file each, loaded into frozen dataclasses.

A scenario names a deployment (its ``env``: FRONTEND_TYPE, BACKEND_LOCATION, flags), the
workload to run, the network profiles to run it under, and the targets to judge it by.
The storage mode is never written in the file: the real configuration code resolves it
from ``env`` (an optional ``expected_storage_mode`` is checked against the result, so a
change in the rules shows up as a load error, not as a silently different benchmark).

Every error is a :class:`ConfigError` naming the file and the key, for example
``scenarios/web-cloud.toml: workload.sizes: expected a list of positive integers, got 'x'``.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from lancesync_bench.config import LanceDBSyncConfig, StorageMode
from lancesync_bench.errors import ConfigError
from lancesync_bench.stats import Targets
from lancesync_bench.workload import DATASETS, Dataset, Workload

__all__ = [
    "DATASETS",
    "Profile",
    "RecallSpec",
    "Scenario",
    "SweepSpec",
    "Targets",
    "WorkloadSpec",
    "load_scenario",
    "load_scenarios",
]
# Targets lives in stats (beside Target and judge) and is re-exported here.

# Placeholders that let the configuration validate; nothing is ever sent to them.
_PLACEHOLDER_S3 = {
    "S3_BUCKET": "scenario-check",
    "S3_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ACCESS_KEY_ID": "placeholder",
    "AWS_SECRET_ACCESS_KEY": "placeholder",
}
# Runtime settings: the runner supplies them per run (its S3 endpoint, its temporary
# folders). In a scenario file they would be stale at best and a leaked secret at worst.
RUNTIME_KEYS = frozenset(_PLACEHOLDER_S3) | {
    "S3_PREFIX",
    "AWS_ENDPOINT_URL",
    "AWS_SESSION_TOKEN",
    "LOCAL_STORAGE_PATH",
}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ENV_KEY_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass(frozen=True)
class Profile:
    """A network profile: round-trip time and jitter the delay proxy adds to S3 traffic."""

    name: str
    rtt_ms: float
    jitter_ms: float = 0.0
    default: bool = False  # run when no profiles are named
    max_size: int | None = None  # larger tables are skipped on this profile (time budget)
    description: str = ""


@dataclass(frozen=True)
class WorkloadSpec:
    """What to generate and how often to measure (see the scenario files for the why)."""

    sizes: tuple[int, ...]
    dim: int
    seed: int
    quick_sizes: tuple[int, ...]
    batch_size: int = 100  # a typical ingest chunk
    repetitions: int = 100  # the fewest that support p99
    quick_repetitions: int = 20  # the fewest that support p95
    warmup: int = 5  # fills metadata caches and connection pools; cold is measured apart
    queries: int = 100  # recall@10 over 100 queries moves in steps of 0.001
    n_clusters: int = 32  # see Workload
    data: Dataset = "clustered"  # the embeddings' shape (see Workload)
    # Cheap operations (median < 10 ms) in the first default profile's cells repeat until
    # cheap_samples or their time budget: tail_budget_s for those judged at p99, else
    # cheap_budget_s (see CellPlan.for_scenario). 0 samples: `repetitions` only.
    cheap_samples: int = 1000
    cheap_budget_s: float = 1.5
    tail_budget_s: float = 4.0

    def workload(self, data: Dataset | None = None) -> Workload:
        """The seeded document generator these settings describe (``data`` overrides)."""
        return Workload(self.seed, self.dim, n_clusters=self.n_clusters, data=data or self.data)


@dataclass(frozen=True)
class RecallSpec:
    """Vector search on harder data beside the workload's own, and a search-parameter sweep.

    In the cells of the scenario's first default profile whose size is in ``sizes``
    (``quick_sizes`` in quick mode), the service's vector search is timed and its recall@10
    judged on each of ``datasets`` too (a table of its own, same size and dim), and plain
    LanceDB is swept over ``sweep_nprobes`` x ``sweep_refine`` on the workload's data and on
    each dataset (``sweep_queries`` queries per setting), for the latency-vs-recall figure.
    """

    datasets: tuple[Dataset, ...] = ("uniform",)
    sizes: tuple[int, ...] = (10_000,)
    quick_sizes: tuple[int, ...] = ()
    # nprobes from a fifth to four times the service's 20: where recall saturates and what
    # each doubling costs.
    sweep_nprobes: tuple[int, ...] = (5, 10, 20, 40, 80)
    # refine_factor 0 is "no refine step"; 10 re-ranks 10x k candidates on full vectors.
    sweep_refine: tuple[int, ...] = (0, 10)
    # 50 queries per setting: recall to +-0.03 and a p50, at ~10 settings x 2 datasets.
    sweep_queries: int = 50


@dataclass(frozen=True)
class SweepSpec:
    """A concurrency sweep: ``users`` processes at once, each its own service and user.

    Every process issues ``ops_per_user`` operations (every ``write_every``-th a one-document
    write, the rest point reads) at ``rate_per_s`` intended start times per second, on a
    table of each of ``sizes`` rows, under network profile ``profile``.
    """

    users: tuple[int, ...]
    sizes: tuple[int, ...]
    profile: str
    ops_per_user: int = 30  # ~3 s per level at 10/s: small enough for the default run
    rate_per_s: float = 10.0  # well under one user's capacity, so queueing comes from sharing
    write_every: int = 3  # read-mostly, and 10 writes per user per level give a write median
    # After the user levels, at the largest user count and the first size, double the rate
    # per user up to this many times (0: no ramp), each level as long as a user level, until
    # throughput stops growing (< RAMP_GAIN more than the level before) or the p99 of the
    # level passes p99_bound_ms: the knee (bench.sweep).
    ramp_steps: int = 0
    p99_bound_ms: float = 200.0
    # Each user level issues at least this many operations in all (``ops_per_user`` each,
    # or more when few users share the level): 60 gives 20 writes at write_every = 3, the
    # fewest a p95 needs, at 1 user too. 0: ops_per_user each, whatever the users.
    level_ops: int = 0

    def ops_at(self, users: int) -> int:
        """Operations per user at a user level of ``users``."""
        return max(self.ops_per_user, -(-self.level_ops // users))


@dataclass(frozen=True)
class Scenario:
    """One deployment to benchmark; ``storage_mode`` comes from the real configuration code."""

    name: str
    description: str
    path: str
    env: Mapping[str, str]
    storage_mode: StorageMode
    workload: WorkloadSpec
    profiles: tuple[Profile, ...]
    targets: Targets
    sweep: SweepSpec | None = None  # no [sweep] table: no concurrency sweep
    recall: RecallSpec | None = None  # no [recall] table: recall on the workload's data only
    # Target name -> "default" or this file, when its [targets] table sets one of its keys.
    target_sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def target_source(self, name: str) -> str:
        """Where target ``name`` came from: ``"default"`` or the scenario file."""
        return self.target_sources.get(name, "default")

    def recall_sizes(self, *, quick: bool = False) -> tuple[int, ...]:
        """Table sizes whose cells also measure the [recall] datasets (none without one)."""
        if self.recall is None:
            return ()
        return self.recall.quick_sizes if quick else self.recall.sizes

    def profile(self, name: str) -> Profile:
        """The profile called ``name``; ConfigError naming the choices when there is none."""
        for p in self.profiles:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.profiles)
        raise ConfigError(f"{self.path}: profiles: no profile {name!r}; allowed: {known}")

    def sizes(self, *, quick: bool = False) -> tuple[int, ...]:
        """Table sizes to run: ``quick_sizes`` in quick mode."""
        return self.workload.quick_sizes if quick else self.workload.sizes

    def repetitions(self, *, quick: bool = False) -> int:
        """Timed repetitions per operation: ``quick_repetitions`` in quick mode."""
        return self.workload.quick_repetitions if quick else self.workload.repetitions

    def cells(
        self,
        *,
        quick: bool = False,
        profiles: Sequence[str] | None = None,
        every_profile: bool = False,
    ) -> list[tuple[Profile, int]]:
        """(profile, size) pairs to run: the default profiles unless named (or, with
        ``every_profile``, all of them: the long run), minus skips."""
        picked = [self.profile(n) for n in profiles or ()]
        chosen = picked or [p for p in self.profiles if p.default or every_profile]
        return [
            (p, size)
            for p in chosen
            for size in self.sizes(quick=quick)
            if p.max_size is None or size <= p.max_size
        ]

    def config_env(self, runtime: Mapping[str, str]) -> dict[str, str]:
        """``env`` plus runtime settings (S3 endpoint, paths) for ``LanceDBSyncConfig``.

        ``os.environ`` is deliberately not merged: a cloud indicator on the benchmark
        machine must not change the mode a scenario stands for. The background sync is off
        unless the scenario sets ``SYNC_INTERVAL_S``: the benchmark times sync itself, and
        a push that starts on its own would land inside another operation's sample.
        """
        return {"SYNC_INTERVAL_S": "0", **self.env, **runtime}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description of the scenario as run (for results.json)."""
        return {
            "name": self.name,
            "description": self.description,
            "file": self.path,
            "env": dict(self.env),
            "storage_mode": self.storage_mode.value,
            "workload": {
                k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.workload).items()
            },
            "profiles": [asdict(p) for p in self.profiles],
            "targets": asdict(self.targets),
            "target_sources": dict(self.target_sources),
            "recall": None
            if self.recall is None
            else {
                k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.recall).items()
            },
            "sweep": None
            if self.sweep is None
            else {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.sweep).items()},
        }


def _listed(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}


_REQUIRED: Any = object()  # marks a key without a default
Check = tuple[Callable[[Any], bool], str]


def _is_int(v: Any, minimum: int, maximum: int = 2**63 - 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and minimum <= v <= maximum


def _is_number(v: Any) -> bool:
    ok = isinstance(v, int | float) and not isinstance(v, bool)
    return ok and math.isfinite(v) and v >= 0


def _is_sizes(v: Any) -> bool:
    ok = isinstance(v, list) and bool(v) and all(_is_int(x, 1) for x in v)
    return ok and len(set(v)) == len(v)


_POS: Check = (lambda v: _is_int(v, 1), "a positive integer")
_MS: Check = (_is_number, "a number of ms >= 0")
_TEXT: Check = (lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string")
_TABLE: Check = (lambda v: isinstance(v, dict), "a table")
_SIZES: Check = (_is_sizes, "a list of distinct positive integers")
_TOP: dict[str, tuple[Check, Any]] = {
    "name": ((lambda v: isinstance(v, str) and bool(_NAME_RE.match(v)), "1-64 of a-z0-9-_"), None),
    "description": (_TEXT, _REQUIRED),
    "expected_storage_mode": (_TEXT, None),
    "env": (_TABLE, _REQUIRED),
    "workload": (_TABLE, _REQUIRED),
    "profiles": (_TABLE, _REQUIRED),
    "targets": (_TABLE, {}),
    "sweep": (_TABLE, None),
    "recall": (_TABLE, None),
}
_POSITIVE = ("batch_size", "repetitions", "quick_repetitions", "queries", "n_clusters")
_WORKLOAD: dict[str, tuple[Check, Any]] = {
    "sizes": (_SIZES, _REQUIRED),
    "quick_sizes": (_SIZES, None),
    "dim": ((lambda v: _is_int(v, 1, 16384), "an integer from 1 to 16384"), _REQUIRED),
    "seed": ((lambda v: _is_int(v, 0), "an integer from 0 to 2**63-1"), _REQUIRED),
    "warmup": ((lambda v: _is_int(v, 0), "an integer >= 0"), WorkloadSpec.warmup),
    "data": ((lambda v: v in DATASETS, f"one of {', '.join(DATASETS)}"), "clustered"),
    "cheap_samples": ((lambda v: _is_int(v, 0), "an integer >= 0"), WorkloadSpec.cheap_samples),
    "cheap_budget_s": ((_is_number, "a number of seconds >= 0"), WorkloadSpec.cheap_budget_s),
    "tail_budget_s": ((_is_number, "a number of seconds >= 0"), WorkloadSpec.tail_budget_s),
} | {k: (_POS, getattr(WorkloadSpec, k)) for k in _POSITIVE}
_PROFILE: dict[str, tuple[Check, Any]] = {
    "rtt_ms": (_MS, _REQUIRED),
    "jitter_ms": (_MS, 0.0),
    "default": ((lambda v: isinstance(v, bool), "true or false"), False),
    "max_size": (_POS, None),
    "description": ((lambda v: isinstance(v, str), "a string"), ""),
}
# More processes than this on one machine measure the scheduler, not the storage.
_MAX_SWEEP_USERS = 64
_SWEEP: dict[str, tuple[Check, Any]] = {
    "users": (
        (
            lambda v: _is_sizes(v) and max(v) <= _MAX_SWEEP_USERS,
            f"a list of distinct integers from 1 to {_MAX_SWEEP_USERS}",
        ),
        _REQUIRED,
    ),
    "sizes": (_SIZES, None),
    "profile": (_TEXT, None),
    "ops_per_user": (_POS, SweepSpec.ops_per_user),
    "rate_per_s": ((lambda v: _is_number(v) and v > 0, "a positive number"), 10.0),
    "write_every": (_POS, SweepSpec.write_every),
    "ramp_steps": (
        ((lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 8), "0 to 8"),
        SweepSpec.ramp_steps,
    ),
    "p99_bound_ms": ((lambda v: _is_number(v) and v > 0, "a positive number"), 200.0),
    "level_ops": (
        (
            (lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10_000),
            "0 to 10000",
        ),
        SweepSpec.level_ops,
    ),
}
_TARGETS: dict[str, tuple[Check, Any]] = {
    name: ((lambda v: _is_number(v) and v > 0, "a positive number"), f.default)
    for name, f in Targets.__dataclass_fields__.items()
} | {
    "vector_top10_size": (_POS, Targets.vector_top10_size),
    "recall_at_10": (
        (lambda v: _is_number(v) and 0 < v <= 1, "a share from 0 (excluded) to 1"),
        Targets.recall_at_10,
    ),
}
# Which [targets] keys set each judged target (for "where did this target come from").
TARGET_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "local_read": ("local_read_ms",),
        "local_write": ("local_write_ms",),
        "s3_read": ("s3_min_ms", "s3_max_ms"),
        "s3_write": ("s3_min_ms", "s3_max_ms"),
        "s3_read_p95": ("s3_min_ms", "s3_max_ms"),
        "s3_write_p95": ("s3_min_ms", "s3_max_ms"),
        "local_point_read": ("local_point_read_p99_ms",),
        "vector_top10": ("vector_top10_p99_ms", "vector_top10_size"),
        "recall_at_10": ("recall_at_10",),
    }
)
_LIST_OF_POS: Check = (
    lambda v: isinstance(v, list) and all(_is_int(x, 0) for x in v) and len(set(v)) == len(v),
    "a list of distinct integers >= 0",
)
_RECALL: dict[str, tuple[Check, Any]] = {
    "datasets": (
        (
            lambda v: isinstance(v, list) and bool(v) and all(x in DATASETS for x in v),
            f"a non-empty list of {', '.join(DATASETS)}",
        ),
        list(RecallSpec.datasets),
    ),
    "sizes": (_SIZES, list(RecallSpec.sizes)),
    "quick_sizes": (
        (lambda v: v == [] or _is_sizes(v), "a list of distinct positive integers"),
        [],
    ),
    "sweep_nprobes": (
        (lambda v: _LIST_OF_POS[0](v) and all(x >= 1 for x in v), "a list of integers >= 1"),
        list(RecallSpec.sweep_nprobes),
    ),
    "sweep_refine": (_LIST_OF_POS, list(RecallSpec.sweep_refine)),
    "sweep_queries": (_POS, RecallSpec.sweep_queries),
}


def _read(
    path: str, data: Mapping[str, Any], prefix: str, spec: Mapping[str, tuple[Check, Any]]
) -> dict[str, Any]:
    """Check ``data`` against ``spec``: no unknown keys, required keys present, types right."""
    dot = f"{prefix}." if prefix else ""
    for key in data:
        if key not in spec:
            raise ConfigError(f"{path}: {dot}{key}: unknown key; allowed: {', '.join(spec)}")
    out = {}
    for key, ((check, expected), default) in spec.items():
        if key not in data:
            if default is _REQUIRED:
                raise ConfigError(f"{path}: {dot}{key}: required key is missing ({expected})")
            out[key] = default
        elif not check(data[key]):
            raise ConfigError(f"{path}: {dot}{key}: expected {expected}, got {data[key]!r}")
        else:
            out[key] = data[key]
    return out


def _parse_env(path: str, data: Mapping[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for key, raw in data.items():
        if not _ENV_KEY_RE.match(key):
            raise ConfigError(f"{path}: env.{key}: expected an upper-case variable name")
        if key in RUNTIME_KEYS:
            raise ConfigError(f"{path}: env.{key}: the runner sets it per run; remove it")
        if isinstance(raw, bool):  # TOML booleans read naturally; the config wants strings
            env[key] = "true" if raw else "false"
        elif isinstance(raw, str | int):
            env[key] = str(raw)
        else:
            raise ConfigError(f"{path}: env.{key}: expected a string or boolean, got {raw!r}")
    if "FRONTEND_TYPE" not in env:
        raise ConfigError(f"{path}: env.FRONTEND_TYPE: required key is missing (web or desktop)")
    return env


def _parse_profiles(path: str, data: Mapping[str, Any]) -> tuple[Profile, ...]:
    profiles = []
    for name, table in data.items():
        if not _NAME_RE.match(name):
            raise ConfigError(f"{path}: profiles.{name}: a name is 1-64 of a-z, 0-9, '-', '_'")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: profiles.{name}: expected a table, got {table!r}")
        fields = _read(path, table, f"profiles.{name}", _PROFILE)
        rtt, jitter = float(fields.pop("rtt_ms")), float(fields.pop("jitter_ms"))
        profiles.append(Profile(name=name, rtt_ms=rtt, jitter_ms=jitter, **fields))
    if not any(p.default for p in profiles):
        raise ConfigError(f"{path}: profiles: expected at least one profile with default = true")
    return tuple(profiles)


def _parse_sweep(
    path: str, data: Mapping[str, Any], sizes: Sequence[int], profiles: Sequence[Profile]
) -> SweepSpec:
    fields = _read(path, data, "sweep", _SWEEP)
    names = [p.name for p in profiles]
    profile = fields["profile"] or next(p.name for p in profiles if p.default)
    if profile not in names:
        raise ConfigError(
            f"{path}: sweep.profile: no profile {profile!r}; allowed: {', '.join(names)}"
        )
    return SweepSpec(
        users=tuple(fields["users"]),
        sizes=tuple(fields["sizes"] or [min(sizes)]),
        profile=profile,
        ops_per_user=fields["ops_per_user"],
        rate_per_s=float(fields["rate_per_s"]),
        write_every=fields["write_every"],
        ramp_steps=fields["ramp_steps"],
        p99_bound_ms=float(fields["p99_bound_ms"]),
        level_ops=fields["level_ops"],
    )


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate one scenario file; raise ConfigError naming the file and key."""
    where = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    top = _read(where, data, "", _TOP)
    env = _parse_env(where, top["env"])
    try:
        mode = LanceDBSyncConfig.from_env({**_PLACEHOLDER_S3, **env}).storage_mode
    except ConfigError as exc:
        raise ConfigError(f"{where}: env: {exc}") from None
    expected = top["expected_storage_mode"]
    if expected is not None and expected != mode.value:
        raise ConfigError(
            f"{where}: expected_storage_mode: env resolves to {mode.value!r}, not {expected!r}"
        )
    w = _read(where, top["workload"], "workload", _WORKLOAD)
    w["sizes"] = tuple(w["sizes"])
    w["quick_sizes"] = tuple(w["quick_sizes"] or [min(w["sizes"])])
    targets: dict[str, Any] = _read(where, top["targets"], "targets", _TARGETS)
    targets = {k: float(v) if k.endswith("_ms") else v for k, v in targets.items()}
    targets["recall_at_10"] = float(targets["recall_at_10"])
    if targets["s3_min_ms"] >= targets["s3_max_ms"]:
        raise ConfigError(f"{where}: targets.s3_min_ms: must be below targets.s3_max_ms")
    sources = {
        name: where for name, keys in TARGET_KEYS.items() if any(k in top["targets"] for k in keys)
    }
    profiles = _parse_profiles(where, top["profiles"])
    sweep, recall = top["sweep"], top["recall"]
    return Scenario(
        name=top["name"] or Path(path).stem,
        description=top["description"],
        path=where,
        env=MappingProxyType(env),
        storage_mode=mode,
        workload=WorkloadSpec(**w),
        profiles=profiles,
        targets=Targets(**targets),
        sweep=None if sweep is None else _parse_sweep(where, sweep, w["sizes"], profiles),
        recall=None if recall is None else _parse_recall(where, recall),
        target_sources=MappingProxyType(sources),
    )


def _parse_recall(path: str, data: Mapping[str, Any]) -> RecallSpec:
    f = _read(path, data, "recall", _RECALL)
    return RecallSpec(
        datasets=tuple(f["datasets"]),
        sizes=tuple(f["sizes"]),
        quick_sizes=tuple(f["quick_sizes"]),
        sweep_nprobes=tuple(f["sweep_nprobes"]),
        sweep_refine=tuple(f["sweep_refine"]),
        sweep_queries=f["sweep_queries"],
    )


def load_scenarios(directory: str | Path, names: Sequence[str] | None = None) -> list[Scenario]:
    """Load every ``*.toml`` in ``directory`` (sorted by name), or only ``names``, in order."""
    found: dict[str, Scenario] = {}
    for file in sorted(Path(directory).glob("*.toml")):
        scenario = load_scenario(file)
        if scenario.name in found:
            raise ConfigError(f"{file}: name: {scenario.name!r} is also used by another file")
        found[scenario.name] = scenario
    if names is None:
        return list(found.values())
    for n in names:
        if n not in found:
            known = ", ".join(found) or "(none found)"
            raise ConfigError(f"{directory}: no scenario {n!r}; allowed: {known}")
    return [found[n] for n in names]
