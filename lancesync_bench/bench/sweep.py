"""Concurrency sweep: N users at once, each a process with its own service, on one S3 server.

For every table size and user count of a scenario's ``[sweep]`` table, that many worker
processes (``multiprocessing`` *spawn*: no state inherited from the runner) each open their
own :class:`~lancesync_bench.storage.service.LanceDBStorageService` for their own user and
issue point reads and one-document writes against the shared S3 endpoint, behind one delay
proxy. Workers stay up from one level to the next (their tables and caches stay warm, as a
long-running backend's would); a level only adds workers.

The schedule is open-loop: operation ``i`` of every worker is *intended* to start at
``start + i / rate``, agreed on by all workers. Latency is measured from the intended start,
so an operation that had to wait for the previous one is charged for the wait: measuring
from the actual start would hide queueing (coordinated omission) exactly when the system
saturates. Samples are named ``sweep_<op>_u<users>`` (``path="service"``).

With ``ramp_steps`` (:class:`~lancesync_bench.scenarios.SweepSpec`), the largest user count
then runs at twice the rate per user, and twice again, each level as long as a user level,
until the knee: throughput (operations completed per second, from the first intended
start to the last completion) grew by less than :data:`RAMP_GAIN` over the level before,
or the level's p99 passed ``p99_bound_ms``. Ramp samples are named
``ramp_<op>_u<users>_r<rate>``; each summary row carries its offered load, its throughput
and, on the level where the ramp stopped, why (``knee``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import queue
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

import numpy as np

from lancesync_bench.config import LanceDBSyncConfig, StorageMode
from lancesync_bench.errors import ConfigError, LanceSyncError
from lancesync_bench.netem import NetworkProfile, S3Proxy
from lancesync_bench.results import SampleRow
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.scenarios import Scenario, SweepSpec
from lancesync_bench.stats import summarize
from lancesync_bench.storage.doctable import MaintenancePolicy

__all__ = [
    "RAMP_GAIN",
    "SweepError",
    "SweepResult",
    "intended_offsets",
    "op_kinds",
    "run_sweep",
    "sweep_operation",
]

READ, WRITE = "point_read", "add_1"
# A ramp level whose throughput grew by less than this over the level before (at half its
# offered load) has stopped growing: doubling the offer bought under 10 % more work.
RAMP_GAIN = 1.10
# Spawning a worker imports LanceDB and opens a service (~1-3 s on 2 busy cores); seeding a
# 10k-row table on S3 and building its index takes a few seconds more. Ten minutes means a
# worker is stuck, not slow.
_WAIT_S = 600.0
# Workers start their schedules this long after the parent says go, so that every one of
# them has read the message before the first intended start.
_START_DELAY_S = 0.5
# An operation that starts this much after its intended time counts as late: asyncio's
# timer wakes up ~1-2 ms late on a loaded machine, which is slack, not queueing.
_LATE_MS = 5.0
# Untimed operations each worker runs before a level, so connections and caches are warm.
_WARMUP_OPS = 2


class SweepError(LanceSyncError):
    """A sweep worker failed or stopped answering; the message names it and why."""


def intended_offsets(n: int, rate_per_s: float) -> list[float]:
    """Intended start times (seconds after the level's start) of ``n`` operations."""
    if n < 0 or not rate_per_s > 0:
        raise ValueError(f"need n >= 0 and rate_per_s > 0; got n={n}, rate_per_s={rate_per_s}")
    return [i / rate_per_s for i in range(n)]


def op_kinds(n: int, write_every: int) -> list[str]:
    """The kind of each of ``n`` operations: every ``write_every``-th a write, else a read."""
    if write_every < 1:
        raise ValueError(f"write_every must be >= 1; got {write_every}")
    return [WRITE if (i + 1) % write_every == 0 else READ for i in range(n)]


def sweep_operation(kind: str, users: int, rate_per_s: float | None = None) -> str:
    """The sample's operation name: ``sweep_point_read_u4`` (users in the name), or on a
    ramp level ``ramp_point_read_u4_r40`` (and the rate per user)."""
    if rate_per_s is None:
        return f"sweep_{kind}_u{users}"
    return f"ramp_{kind}_u{users}_r{rate_per_s:g}"


def throughput(timings: Sequence[Sequence[Timing]], rate_per_s: float) -> float:
    """Operations completed per second over a level: all of them, divided by the level's
    span from the shared intended start: its schedule (``n / rate_per_s`` for ``n``
    operations a worker) or, when later, the last completion (operation ``i`` was intended
    at ``i / rate_per_s``). It never exceeds the offered load, and falls behind it once
    operations finish late."""
    ends = [i / rate_per_s + latency_ms / 1e3 for w in timings for _, i, latency_ms, _, _ in w]
    if not ends:
        return 0.0
    span = max(*ends, max(len(w) for w in timings) / rate_per_s)
    return len(ends) / span


@dataclass(frozen=True)
class _WorkerSpec:
    """What one worker process needs; plain values, so it pickles under spawn."""

    index: int
    env: dict[str, str]
    endpoint: S3Endpoint
    dim: int
    seed: int
    n_clusters: int


@dataclass(frozen=True)
class _Level:
    """One level for one worker: run ``ops`` operations on a table of ``size`` rows."""

    size: int
    ops: int
    rate_per_s: float
    write_every: int


# One timed operation: kind, index in the schedule, latency from the intended start (ms),
# service time from the actual start (ms), lag of the actual start behind the intended (ms).
Timing = tuple[str, int, float, float, float]


async def _run_schedule(
    ops: Sequence[Callable[[], Awaitable[Any]]],
    kinds: Sequence[str],
    offsets: Sequence[float],
    t0: float,
) -> list[Timing]:
    """Start operation ``i`` at ``t0 + offsets[i]`` (perf_counter) or as soon after as it can."""
    out: list[Timing] = []
    for i, (op, kind, offset) in enumerate(zip(ops, kinds, offsets, strict=True)):
        intended = t0 + offset
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        started = time.perf_counter()
        await op()
        ended = time.perf_counter()
        out.append(
            (kind, i, (ended - intended) * 1e3, (ended - started) * 1e3, (started - intended) * 1e3)
        )
    return out


async def _worker(spec: _WorkerSpec, commands: Any, results: Any) -> None:
    from lancesync_bench.storage.service import LanceDBStorageService
    from lancesync_bench.workload import Workload

    config = LanceDBSyncConfig.from_env(spec.env)
    wl = Workload(spec.seed, spec.dim, n_clusters=spec.n_clusters)
    # The sweep never searches by vector: its tables skip the IVF index (seeding four
    # 10k-row tables costs ~10 s less); everything else is the service's default policy.
    policy = MaintenancePolicy(
        vector_index_min_rows=2**62,
        keep_tombstones=config.storage_mode is StorageMode.LOCAL_PRIMARY_S3_SYNC,
    )
    next_row: dict[int, int] = {}  # per table size: the next unused document row
    async with LanceDBStorageService(config, endpoint=spec.endpoint, policy=policy) as svc:
        while (level := await asyncio.to_thread(commands.get)) is not None:
            user = f"sweep-u{spec.index}-s{level.size}"
            if level.size not in next_row:  # first level on this size: seed the table
                await svc.import_documents(user, wl.arrow_table(0, level.size, metadata="json"))
                await svc.maintain(user)
                next_row[level.size] = level.size
            kinds = op_kinds(level.ops, level.write_every)
            n_writes = kinds.count(WRITE) + _WARMUP_OPS
            docs = wl.documents(next_row[level.size], n_writes)
            next_row[level.size] += n_writes
            ids = wl.lookup_ids(level.ops + _WARMUP_OPS, level.size)
            for j in range(_WARMUP_OPS):
                await svc.get_document(user, ids[-1 - j])
                await svc.add_documents(user, [docs[-1 - j]])
            await svc.wait_idle(user)
            reads, writes = iter(ids), iter(docs)
            ops: list[Callable[[], Awaitable[Any]]] = []
            for kind in kinds:
                if kind == WRITE:
                    ops.append(functools.partial(svc.add_documents, user, [next(writes)]))
                else:
                    ops.append(functools.partial(svc.get_document, user, next(reads)))
            results.put(("ready", spec.index, None))
            start_wall = await asyncio.to_thread(commands.get)
            # Wall-clock instant shared by all workers, turned into this process's clock.
            t0 = time.perf_counter() + (start_wall - time.time())
            offsets = intended_offsets(level.ops, level.rate_per_s)
            timings = await _run_schedule(ops, kinds, offsets, t0)
            await svc.wait_idle(user)
            results.put(("done", spec.index, timings))


def _worker_main(spec: _WorkerSpec, commands: Any, results: Any) -> None:
    """Entry point of a worker process (top level, so spawn can import it)."""
    try:
        asyncio.run(_worker(spec, commands, results))
    except BaseException as exc:  # reported to the parent, which raises SweepError
        message = f"{type(exc).__name__}: {exc}"
        secret = spec.endpoint.secret_access_key.reveal()
        if secret:
            message = message.replace(secret, "***")
        results.put(("error", spec.index, message[:500]))


class _Workers:
    """Worker processes started on demand; stopped (and if need be killed) on exit."""

    def __init__(self, make_spec: Callable[[int], _WorkerSpec]) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._make_spec = make_spec
        self._results: Any = self._ctx.Queue()
        self._procs: list[tuple[SpawnProcess, Any]] = []

    def ensure(self, n: int) -> None:
        """Have at least ``n`` workers running."""
        while len(self._procs) < n:
            commands = self._ctx.Queue()
            spec = self._make_spec(len(self._procs))
            proc = self._ctx.Process(
                target=_worker_main,
                args=(spec, commands, self._results),
                name=f"lancesync-sweep-{spec.index}",
                daemon=True,
            )
            proc.start()
            self._procs.append((proc, commands))

    def _collect(self, kind: str, n: int) -> dict[int, Any]:
        got: dict[int, Any] = {}
        deadline = time.monotonic() + _WAIT_S
        while len(got) < n:
            try:
                what, index, payload = self._results.get(timeout=1.0)
            except queue.Empty:
                dead = [
                    f"{p.name} exited with code {p.exitcode}"
                    for p, _ in self._procs[:n]
                    if not p.is_alive()
                ]
                if dead or time.monotonic() > deadline:
                    why = ", ".join(dead) if dead else f"no answer in {_WAIT_S:g} s"
                    raise SweepError(f"sweep worker(s) failed: {why}") from None
                continue
            if what == "error":
                raise SweepError(f"sweep worker {index} failed: {payload}")
            if what == kind:
                got[index] = payload
        return got

    def run_level(self, level: _Level, users: int) -> list[list[Timing]]:
        """Run one level on the first ``users`` workers; their timings, worker by worker."""
        self.ensure(users)
        for _, commands in self._procs[:users]:
            commands.put(level)
        self._collect("ready", users)
        start_wall = time.time() + _START_DELAY_S
        for _, commands in self._procs[:users]:
            commands.put(start_wall)
        done = self._collect("done", users)
        return [done[i] for i in range(users)]

    def close(self) -> None:
        """Ask every worker to stop, wait a little, then kill the ones still running."""
        for proc, commands in self._procs:
            with contextlib.suppress(ValueError, OSError):
                if proc.is_alive():
                    commands.put(None)
        for proc, _ in self._procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for _, commands in self._procs:
            commands.close()
        self._results.close()
        self._procs.clear()


@contextlib.contextmanager
def _workers(make_spec: Callable[[int], _WorkerSpec]) -> Iterator[_Workers]:
    pool = _Workers(make_spec)
    try:
        yield pool
    finally:
        pool.close()


@dataclass
class SweepResult:
    """Samples (``sweep_<op>_u<users>``) and one summary row per size, users and operation."""

    samples: list[SampleRow] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)


def _summary_rows(
    key: dict[str, Any], timings: list[list[Timing]], requests: int, rate_per_s: float
) -> list[dict[str, Any]]:
    flat = [t for worker in timings for t in worker]
    level = {
        "rate_per_s": rate_per_s,
        "offered_per_s": rate_per_s * len(timings),
        "throughput_per_s": throughput(timings, rate_per_s),
        "knee": None,
    }
    rows = []
    for kind in (READ, WRITE):
        mine = [t for t in flat if t[0] == kind]
        if not mine:
            continue
        s = summarize([round(t[2] * 1e6) for t in mine])
        rows.append(
            {
                **key,
                "operation": kind,
                **s.as_dict(),
                "service_p50_ms": float(np.median([t[3] for t in mine])),
                "late_share": sum(t[4] > _LATE_MS for t in mine) / len(mine),
                "level_s3_requests": requests,
                **level,
            }
        )
    return rows


def run_sweep(
    scenario: Scenario,
    endpoint: S3Endpoint,
    *,
    workdir: Path,
    run_id: str,
    seed: int = 0,
    spec: SweepSpec | None = None,
) -> SweepResult:
    """Run the scenario's sweep (or ``spec``) against ``endpoint`` through a delay proxy.

    Workers are started with ``multiprocessing`` *spawn*, which re-imports the calling
    script: call this from under ``if __name__ == "__main__":`` in a script of your own.
    """
    spec = spec or scenario.sweep
    if spec is None:
        raise ConfigError(f"{scenario.path}: sweep: the scenario has no [sweep] table")
    profile = scenario.profile(spec.profile)
    net = NetworkProfile(name=profile.name, rtt_ms=profile.rtt_ms, jitter_ms=profile.jitter_ms)
    result = SweepResult()
    w = scenario.workload
    with S3Proxy(endpoint.url or "", net, seed=seed) as proxy:
        ep = proxy.endpoint_for(endpoint).with_prefix(f"bench/{run_id}/{scenario.name}/sweep")

        def make_spec(index: int) -> _WorkerSpec:
            runtime = {
                "S3_BUCKET": ep.bucket,
                "LOCAL_STORAGE_PATH": str(workdir / f"sweep-{scenario.name}-w{index}"),
                "EMBEDDING_DIM": str(w.dim),
                "DEVICE_ID": f"sweep-w{index}",
            }
            env = scenario.config_env(runtime)
            return _WorkerSpec(index, env, ep, w.dim, w.seed, w.n_clusters)

        def run(size: int, users: int, rate: float, ramp: bool) -> list[dict[str, Any]]:
            if ramp:  # each ramp level as long as a user level of ops_per_user
                ops = max(1, round(spec.ops_per_user * rate / spec.rate_per_s))
            else:
                ops = spec.ops_at(users)
            before = proxy.snapshot()
            timings = pool.run_level(_Level(size, ops, rate, spec.write_every), users)
            requests = (proxy.snapshot() - before).total
            key = {"scenario": scenario.name, "profile": profile.name, "size": size}
            rows = _summary_rows({**key, "users": users}, timings, requests, rate)
            result.summary += rows
            result.samples += _sample_rows(
                scenario, profile.name, size, users, timings, ramp_rate=rate if ramp else None
            )
            return rows

        with _workers(make_spec) as pool:
            for size in spec.sizes:
                for users in spec.users:
                    last = run(size, users, spec.rate_per_s, ramp=False)
                if size == spec.sizes[0]:
                    _ramp(spec, size, last, run)
    return result


def _ramp(
    spec: SweepSpec,
    size: int,
    last: list[dict[str, Any]],
    run: Callable[[int, int, float, bool], list[dict[str, Any]]],
) -> None:
    """Double the rate per user at the largest user count until the knee (module doc)."""
    users, rate = max(spec.users), spec.rate_per_s
    rows = last
    for _ in range(spec.ramp_steps):
        before = rows[0]["throughput_per_s"] if rows else 0.0
        rate *= 2
        rows = run(size, users, rate, True)
        if not rows:
            return
        got = rows[0]["throughput_per_s"]
        worst = max(float(r.get("p99_ms") or 0.0) for r in rows)
        why = None
        if worst > spec.p99_bound_ms:
            why = f"p99 {worst:.0f} ms passed the {spec.p99_bound_ms:g} ms bound"
        elif got < before * RAMP_GAIN:
            why = f"throughput stopped growing ({before:.0f} -> {got:.0f} ops/s)"
        if why is not None:
            for r in rows:
                r["knee"] = why
            return


def _sample_rows(
    scenario: Scenario,
    profile: str,
    size: int,
    users: int,
    timings: list[list[Timing]],
    *,
    ramp_rate: float | None = None,
) -> list[SampleRow]:
    rows: list[SampleRow] = []
    seen: dict[str, int] = {}
    for worker in timings:
        for kind, _, latency_ms, _, _ in worker:
            op = sweep_operation(kind, users, ramp_rate)
            rows.append(
                SampleRow(
                    scenario=scenario.name,
                    storage_mode=scenario.storage_mode.value,
                    profile=profile,
                    size=size,
                    operation=op,
                    path="service",
                    phase="warm",
                    iteration=seen.get(op, 0),
                    latency_ms=latency_ms,
                    requests=None,  # the proxy sees all workers at once: per level only
                    bytes=None,
                )
            )
            seen[op] = seen.get(op, 0) + 1
    return rows
