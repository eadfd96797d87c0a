"""Measure one (scenario, table size, network profile) cell through the storage service.

Order of work, chosen so each figure is taken in a known state:

1. load ``size`` seeded documents in one import, compact, build indexes, and bring the
   mode's S3 copy up to date (initial sync or backup); build the LanceDB baselines
   (:mod:`lancesync_bench.bench.baselines`: plain LanceDB on local disk, and on S3 for the
   S3-primary mode) from the same rows, indexed and prewarmed as the service's table is -
   none of it timed;
2. cold reads: a fresh service opens the table and answers one read (open included);
3. warm reads: point reads by id and vector top-10, with recall@10 against exact search;
   (just before them, the reference job: fixed CPU work timed like an operation, whose
   spread is the machine's own);
4. writes: one document, then batches;
5. the mode's sync-like calls: sync, backup, restore, cache refresh, miss read; in the
   local-primary modes each one-document sync/backup is followed by the folder-copy
   baselines (``aws s3 sync``, ``rclone sync``) copying the same table change, and by the
   tool's start-up alone;
6. the scenario's [recall] hard sets, where this cell runs them: the service's vector
   search on harder data in a table of its own (:mod:`lancesync_bench.bench.recall`);
7. where this cell runs it, the plain-LanceDB sweep of search parameters
   (:mod:`lancesync_bench.bench.search_sweep`).

Point reads, vector search and add_1 (steps 3-4) are timed in rounds of :data:`ROUND`
samples alternating between the service and each LanceDB baseline (:func:`_interleaved`),
so a drift of the machine reaches both sides alike, and each baseline gets the service's
n (plain LanceDB on S3: up to its own time budget). In the scenario's first default
profile, cheap operations (median < :data:`CHEAP_MS`) repeat past ``repetitions`` up to
``cheap_samples`` within a time budget.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lancesync_bench.bench.baselines import (
    LANCEDB_LOCAL,
    LANCEDB_S3,
    SYNC_TOOLS,
    FolderSync,
    LanceDBInputs,
    PlainLanceDB,
    record_skip,
    start_tools,
    time_tools,
)
from lancesync_bench.bench.probe import REFERENCE_PATH, fixed_job, settle
from lancesync_bench.bench.recall import exact_ids, measure_hard_set, recall_record, sweep_datasets
from lancesync_bench.bench.recorder import CellKey, Recorder, failure_of, failure_text
from lancesync_bench.config import LanceDBSyncConfig, StorageMode
from lancesync_bench.errors import ConfigError
from lancesync_bench.netem import NetworkProfile
from lancesync_bench.netem.process import ProxyProcess
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.scenarios import Profile, RecallSpec, Scenario
from lancesync_bench.storage.schema import TABLE_NAME
from lancesync_bench.storage.service import LanceDBStorageService
from lancesync_bench.workload import Dataset, Workload, recall_per_query

__all__ = ["CHEAP_MS", "CellPlan", "measure_cell"]

USER = "bench-user"
# An operation whose median over its first `repetitions` samples is below this is cheap:
# it gets more samples (CellPlan.cheap_n, within a time budget), so its p99 rests on more
# than the top one or two of 120 samples (issue 13: n >= 1,000 where an op costs < 10 ms).
CHEAP_MS = 10.0
# Samples per round when the service and its LanceDB baselines take turns: small enough
# that a 1.5-2x drift of the machine (FACTS: within minutes) reaches both sides within a
# few seconds, large enough that switching (an idle wait) costs little. The first
# `repetitions` samples come in at least ROUNDS_AT_LEAST rounds, so an operation that is
# not cheap (no samples past `repetitions`) still alternates.
ROUND = 40
ROUNDS_AT_LEAST = 3
TOOLS_ELSEWHERE = (
    "folder-copy tools run on the smallest table of each storage mode's first scenario, per"
    " profile (quick mode: first profile)"
)


class CellPlan:
    """How much to measure in one cell.

    Defaults are the full run's; :meth:`for_scenario` picks the quick run's where they differ.
    """

    def __init__(
        self,
        *,
        repetitions: int,
        warmup: int,
        batch_reps: int,
        queries: int,
        cold_opens: int = 3,
        sync_reps: int = 20,
        restore_reps: int = 3,
        s3_baseline_reps: int = 20,
        s3_baseline_budget_s: float = 4.0,
        tool_reps: int = 3,
        baselines: bool = True,
        cheap_n: int = 0,
        cheap_budget_s: float = 0.0,
        tail_budget_s: float = 0.0,
        hard_sets: tuple[Dataset, ...] = (),
        search_sweep: RecallSpec | None = None,
    ) -> None:
        self.repetitions = repetitions
        self.warmup = warmup
        self.batch_reps = batch_reps
        self.queries = queries
        # Cold opens are few: each builds a service and opens the table from scratch (1-2 s
        # in the S3 modes on 2 busy cores, mostly creating an S3 client). No target judges
        # them; 3 give a median.
        self.cold_opens = cold_opens
        # Sync-like calls move data; 20 of each give a median and a p95 without dominating
        # the run. A restore rebuilds the whole table (1-2 s on same-region): 3 give a median.
        self.sync_reps = sync_reps
        self.restore_reps = restore_reps
        # Plain LanceDB on S3 pays ~2-4 round trips per operation. It takes the service's n
        # like every baseline, but within s3_baseline_budget_s of its own time per
        # operation, and never fewer than s3_baseline_reps samples: at same-region RTT its
        # add_1 costs ~100 ms, and the service's 120 or 1,000 samples would add a minute
        # per cell to a run whose budget is 5.
        self.s3_baseline_reps = s3_baseline_reps
        self.s3_baseline_budget_s = s3_baseline_budget_s
        # aws/rclone are processes whose start-up (0.1-2 s on 2 cores) dominates a one-row
        # copy and varies little: 3 runs give the median a ratio needs, and keep the aws
        # CLI's share of the default run near 30 s. 0: no folder-copy baselines.
        self.tool_reps = tool_reps
        self.baselines = baselines
        # Cheap operations (median < CHEAP_MS) repeat until cheap_n samples or their time
        # budget, whichever comes first: cheap_budget_s, or tail_budget_s for an operation
        # judged at p99 (point reads; vector search at the vector target's size), whose
        # 95% interval needs 368 samples. 0: `repetitions` only.
        self.cheap_n = cheap_n
        self.cheap_budget_s = cheap_budget_s
        self.tail_budget_s = tail_budget_s
        # Datasets of the scenario's [recall] table measured in this cell, and the
        # plain-LanceDB search-parameter sweep (None: no sweep here).
        self.hard_sets = hard_sets
        self.search_sweep = search_sweep

    @classmethod
    def for_scenario(
        cls,
        scenario: Scenario,
        *,
        quick: bool,
        baselines: bool = True,
        tools: bool = True,
        profile: str | None = None,
        size: int | None = None,
    ) -> CellPlan:
        """Repetitions from the scenario (quick mode: its quick repetitions).

        ``tools``: whether this cell runs the folder-copy tools (the runner picks a few
        cells, see :func:`lancesync_bench.bench.runner.tool_cells`). ``profile`` and
        ``size`` name the cell: cheap operations get more samples, and the [recall] hard
        sets and search sweep run, only in the cells of the scenario's first default
        profile (loopback in the shipped files). Local reads and writes never touch the
        network, so other profiles would measure the same thing again; the time goes where
        the verdict needs it.
        """
        reps = scenario.repetitions(quick=quick)
        # Batch writes add 100 rows each; a fifth of the repetitions (at least 20, so p95 is
        # supported) keeps the table from growing far past its nominal size.
        plan = cls(
            repetitions=reps,
            warmup=scenario.workload.warmup,
            batch_reps=max(20, reps // 5),
            queries=min(scenario.workload.queries, reps),
            baselines=baselines,
        )
        if not tools:
            plan.tool_reps = 0
        first = next((p.name for p in scenario.profiles if p.default), None)
        if profile is not None and profile == first:
            # Budgets per operation, from this machine kind's medians (point read ~2 ms,
            # vector top-10 3-8 ms, one-document write 1-5 ms, each + 0.3 ms of probes):
            # 1.5 s buys ~300-700 samples of a p95-judged operation; 4 s buys the 368 a
            # p99 interval needs even for a 100k-row vector search, and 1,000 point reads.
            # About +35 s over the 8 first-profile cells of the default run (estimated). The
            # scenario's [workload] sets them; quick mode caps them at 400 samples (a p99
            # interval) within 1 s, for a smoke run of ~1 minute.
            w = scenario.workload
            plan.cheap_n = min(400, w.cheap_samples) if quick else w.cheap_samples
            plan.cheap_budget_s = min(1.0, w.cheap_budget_s) if quick else w.cheap_budget_s
            plan.tail_budget_s = min(1.0, w.tail_budget_s) if quick else w.tail_budget_s
            if size is not None and size in scenario.recall_sizes(quick=quick):
                plan.hard_sets = scenario.recall.datasets if scenario.recall else ()
                plan.search_sweep = scenario.recall
        if quick:
            # A smoke run only needs every code path once with a median: no target judges
            # these figures, and halving them keeps all four scenarios under ~2 minutes.
            # Restores stay 3: the median of 2 is their mean, and one slow restore of two
            # (245 against 82 ms) made a gate round of unchanged code read 2x.
            plan.cold_opens, plan.sync_reps, plan.restore_reps = 2, 10, 3
            plan.s3_baseline_reps, plan.tool_reps = 10, min(plan.tool_reps, 2)
            plan.s3_baseline_budget_s = 1.0
        return plan


def profile_of(p: Profile) -> NetworkProfile:
    """The proxy profile a scenario profile describes."""
    return NetworkProfile(name=p.name, rtt_ms=p.rtt_ms, jitter_ms=p.jitter_ms)


def _config(
    scenario: Scenario, endpoint: S3Endpoint, local: Path, device: str, **extra: str
) -> LanceDBSyncConfig:
    env = scenario.config_env(
        {
            "S3_BUCKET": endpoint.bucket,
            "LOCAL_STORAGE_PATH": str(local),
            "EMBEDDING_DIM": str(scenario.workload.dim),
            "DEVICE_ID": device,
            **extra,
        }
    )
    return LanceDBSyncConfig.from_env(env)


async def measure_cell(
    scenario: Scenario,
    profile: Profile,
    size: int,
    *,
    endpoint: S3Endpoint,
    workdir: Path,
    plan: CellPlan,
    run_id: str,
    seed: int = 0,
) -> Recorder:
    """Measure every operation of the scenario's mode for one table size and profile."""
    mode = scenario.storage_mode
    key = CellKey(scenario.name, mode.value, profile.name, size)
    cell_dir = workdir / f"{scenario.name}-{profile.name}-{size}-{uuid.uuid4().hex[:6]}"
    prefix = f"bench/{run_id}/{scenario.name}/{profile.name}/{size}"
    # The proxy runs in a process of its own: its relaying must not take the measured
    # interpreter's time (see lancesync_bench.netem.process).
    with ProxyProcess(endpoint.url or "", profile_of(profile), seed=seed) as proxy:
        ep = proxy.endpoint_for(endpoint).with_prefix(prefix)
        rec = Recorder(key, proxy)
        cell = _Cell(scenario, size, ep, cell_dir, plan, scenario.workload.workload(), rec)
        try:
            await _measure(cell)
        except ConfigError:
            raise  # the scenario or the environment is wrong: exit 2, not a failed cell
        except Exception as exc:  # any other failure ends the cell, named in results.json
            _cell_failed(rec, exc)
        finally:
            shutil.rmtree(cell_dir, ignore_errors=True)
    return rec


def _cell_failed(rec: Recorder, exc: Exception) -> None:
    """Name the exception that ended a cell; the operation that raised is recorded already."""
    text = failure_text(exc)
    rec.extras["aborted"] = text
    if not rec.failures or rec.failures[-1].error != text:
        rec.fail("cell", text)


def _setup_report(rec: Recorder, operation: str, report: Any) -> None:
    """Record an untimed set-up call that reported failure (S3 unreachable, say)."""
    why = failure_of(report)
    if why is not None:
        rec.fail(f"{operation} (set-up)", why)


@dataclass
class _Cell:
    """Everything one cell's measurements share."""

    scenario: Scenario
    size: int
    ep: S3Endpoint
    cell_dir: Path
    plan: CellPlan
    wl: Workload
    rec: Recorder
    truth: list[list[str]] | None = None  # exact top-10 ids of the timed queries

    @property
    def mode(self) -> StorageMode:
        return self.scenario.storage_mode

    @property
    def local_root(self) -> Path:
        """LOCAL_STORAGE_PATH of the measured service."""
        return self.cell_dir / "a"

    def skip(self, what: str, reason: str) -> None:
        """Record that a baseline was not measured in this cell, and why."""
        record_skip(self.rec, what, reason)


@contextlib.contextmanager
def _phase(cell: _Cell, name: str) -> Iterator[None]:
    """Add the wall time of a part of the cell to ``extras["phase_s"][name]`` (where a
    cell's time goes: set-up, baselines, each timed part)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        phases = cell.rec.extras.setdefault("phase_s", {})
        phases[name] = round(phases.get(name, 0.0) + time.perf_counter() - start, 3)


async def _measure(cell: _Cell) -> None:
    mode, ep, wl, size, plan = cell.mode, cell.ep, cell.wl, cell.size, cell.plan
    config = _config(cell.scenario, ep, cell.local_root, "bench-a")
    with _phase(cell, "set-up"):
        async with LanceDBStorageService(config, endpoint=ep) as svc:
            await svc.import_documents(USER, wl.arrow_table(0, size, metadata="json"))
            await svc.maintain(USER)
            if mode is StorageMode.LOCAL_PRIMARY_S3_SYNC:
                _setup_report(cell.rec, "sync", await svc.sync(USER))
            elif mode is StorageMode.LOCAL_PRIMARY_S3_BACKUP:
                _setup_report(cell.rec, "backup", await svc.backup(USER))

    most = max(plan.repetitions, plan.cheap_n)
    ids = wl.lookup_ids(most + plan.warmup, size)
    queries = wl.query_vectors(plan.queries + plan.warmup)
    with _phase(cell, "baselines open"):
        rivals = await _open_baselines(cell, ids, queries) if plan.baselines else []
    try:
        await _timed(cell, config, ids, queries, rivals)
    finally:
        for rival in rivals:
            rival.plain.close()
    if plan.search_sweep is not None:
        with _phase(cell, "search sweep"):
            cell.rec.extras["search_sweep"] = await sweep_datasets(
                cell.scenario.workload, cell.wl.data, cell.size, plan.search_sweep, cell.cell_dir
            )


async def _timed(
    cell: _Cell,
    config: LanceDBSyncConfig,
    ids: list[str],
    queries: np.ndarray,
    rivals: list[_Rival],
) -> None:
    mode, ep, plan = cell.mode, cell.ep, cell.plan

    async def cold(i: int) -> Any:
        async with LanceDBStorageService(config, endpoint=ep) as fresh:
            return await fresh.get_document(USER, ids[i % len(ids)])

    with _phase(cell, "settle, cold opens, reference job"):
        # Timed phases start on a calm machine: the set-up's writes flushed, the CPU at speed.
        cell.rec.extras["settle_s"] = round(await settle(), 3)
        await cell.rec.run("cold_read", cold, repetitions=plan.cold_opens, phase="cold")

        async def reference(_: int) -> int:
            return fixed_job()

        # The machine's own spread, in the same cell: a job that does the same work each time.
        await cell.rec.run(
            "fixed_cpu_job", reference, repetitions=plan.repetitions, path=REFERENCE_PATH
        )
    async with LanceDBStorageService(config, endpoint=ep) as svc:
        with _phase(cell, "reads"):
            await _reads(svc, cell, ids, queries, rivals)
        with _phase(cell, "writes"):
            await _writes(svc, cell, rivals)
        with _phase(cell, "S3 calls"):
            if mode is StorageMode.LOCAL_PRIMARY_S3_SYNC:
                await _push_calls(svc, cell, "sync")
            elif mode is StorageMode.LOCAL_PRIMARY_S3_BACKUP:
                await _push_calls(svc, cell, "backup")
                await svc.wait_idle(USER)  # maintenance the pushes started is not a restore's
                await cell.rec.run(
                    "restore_latest", lambda i: svc.restore(USER), repetitions=plan.restore_reps
                )
            elif mode is StorageMode.S3_PRIMARY_LOCAL_CACHE:
                other = _config(cell.scenario, ep, cell.cell_dir / "b", "bench-b")
                await _cache_calls(svc, other, cell)
        with _phase(cell, "hard sets"):
            for data in plan.hard_sets:  # last: their set-up must not disturb the figures above
                wl_hard = cell.scenario.workload.workload(data)
                record = await measure_hard_set(
                    svc, cell.rec, wl_hard, cell.size, user=f"{USER}-{data}", plan=plan
                )
                cell.rec.extras.setdefault("recall", []).append(record)


def _recall(cell: _Cell, queries: np.ndarray, results: list[list[str]]) -> list[float]:
    """recall@10 of each timed query's ``results`` (in order) against exact search.

    The exact answers are computed once per cell (at 100k rows, regenerating the vectors
    and a brute-force search take seconds) and shared by the service and its baselines.
    Only the first ``plan.queries`` results count: later searches repeat those queries.
    """
    if cell.truth is None:
        cell.truth = exact_ids(cell.wl, cell.size, queries[cell.plan.warmup :], cell.plan.queries)
    results = results[: len(cell.truth)]
    return recall_per_query(results, cell.truth[: len(results)])


@dataclass
class _Rival:
    """A LanceDB baseline that takes turns with the service, and what it has measured."""

    plain: PlainLanceDB
    # Its own time per operation after which it stops matching the service's n (None:
    # never), once it holds `floor` samples.
    budget_s: float | None = None
    floor: int = 0
    found: dict[str, list[Any]] = field(default_factory=dict)  # results per operation


async def _interleaved(
    cell: _Cell,
    operation: str,
    fn: Callable[[int], Awaitable[Any]],
    rivals: Sequence[tuple[_Rival, Callable[[int], Awaitable[Any]]]] = (),
    *,
    tail: bool = False,
    between: Callable[[], Awaitable[Any]] | None = None,
) -> list[Any]:
    """Time ``fn`` (the service) and each rival's function in alternating rounds.

    The service takes ``plan.repetitions`` samples; a cheap operation (the median of those
    below :data:`CHEAP_MS`) goes on until ``plan.cheap_n`` or the operation's time budget
    (``tail_budget_s`` when ``tail``: judged at p99), counted over the service's own rounds,
    so its p99 keeps the samples an interval needs however slow a baseline is. After
    each service round every rival takes as many samples, so each ends with the service's
    n (a rival with a ``budget_s`` stops once it spent that and holds ``floor`` samples).
    ``between`` runs untimed before each rival's round: the service's background work
    (flushes after writes) is finished then, so a rival is never charged with it.
    ``fn(i)`` gets a running index, so every sample reads a fresh id or writes a fresh
    document; so does each rival's. Returns the service's results; each rival's go to
    ``rival.found[operation]``.
    """
    plan, rec = cell.plan, cell.rec
    service_s = 0.0  # the service's own time: the baselines' rounds do not eat its budget
    target = plan.repetitions
    size = min(ROUND, max(1, -(-plan.repetitions // ROUNDS_AT_LEAST)))
    out: list[Any] = []
    spent = {id(r): 0.0 for r, _ in rivals}

    async def round_of(
        f: Callable[[int], Awaitable[Any]], done: int, count: int, path: str
    ) -> list[Any]:
        if done == 0:
            return await rec.run(operation, f, repetitions=count, warmup=plan.warmup, path=path)

        async def shifted(i: int) -> Any:
            return await f(i + done + plan.warmup)

        return await rec.run(operation, shifted, repetitions=count, path=path, first_iteration=done)

    while len(out) < target:
        t_service = time.perf_counter()
        out += await round_of(fn, len(out), min(size, target - len(out)), "service")
        service_s += time.perf_counter() - t_service
        for rival, rfn in rivals:
            got = rival.found.setdefault(operation, [])
            lacking = _rival_count(rival, len(out), len(got), spent[id(rival)])
            if lacking <= 0:
                continue
            if between is not None:
                await between()
            t0 = time.perf_counter()
            got += await round_of(rfn, len(got), lacking, rival.plain.path)
            spent[id(rival)] += time.perf_counter() - t0
        if len(out) == plan.repetitions and target == plan.repetitions:
            first = [
                s["latency_ms"]
                for s in rec.samples
                if s["operation"] == operation and s["path"] == "service" and s["phase"] == "warm"
            ]
            if first and float(np.median(first)) < CHEAP_MS and plan.cheap_n > target:
                target, size = plan.cheap_n, ROUND
        if len(out) >= plan.repetitions and target > plan.repetitions:
            budget = plan.tail_budget_s if tail else plan.cheap_budget_s
            if service_s >= budget:
                break
    if target > plan.repetitions:
        rec.extras.setdefault("samples_n", {})[operation] = len(out)
    if between is not None:
        await between()
    return out


def _rival_count(rival: _Rival, service_n: int, rival_n: int, spent_s: float) -> int:
    """How many samples a rival takes in this round: up to the service's n, and for a rival
    with a time budget, what fits in what is left of it (but at least up to its floor)."""
    lacking = service_n - rival_n
    if rival.budget_s is None or lacking <= 0:
        return max(0, lacking)
    left = rival.budget_s - spent_s
    if left <= 0:
        fits = 0
    elif rival_n == 0:
        fits = lacking
    else:
        fits = int(left / max(spent_s / rival_n, 1e-6)) + 1
    return min(lacking, max(rival.floor - rival_n, fits))


async def _reads(
    svc: LanceDBStorageService,
    cell: _Cell,
    ids: list[str],
    queries: np.ndarray,
    rivals: Sequence[_Rival],
) -> None:
    rec = cell.rec

    async def point(i: int) -> Any:
        return await svc.get_document(USER, ids[i])

    async def idle() -> None:
        await svc.wait_idle(USER)

    found = await _interleaved(
        cell, "point_read", point, [(r, r.plain.point) for r in rivals], tail=True, between=idle
    )
    rec.extras["point_read_hits"] = sum(d is not None for d in found) / max(1, len(found))

    results = await _interleaved(
        cell,
        "vector_search",
        lambda i: svc.search(USER, queries[i % len(queries)], k=10),
        [(r, r.plain.search) for r in rivals],
        tail=cell.size == cell.scenario.targets.vector_top10_size,
        between=idle,
    )
    per_query = _recall(cell, queries, [[d["id"] for d in r] for r in results])
    record = recall_record("vector_search", cell.wl, cell.size, per_query)
    rec.extras.setdefault("recall", []).append(record)
    rec.extras["recall_at_10"] = record["mean"]
    if rivals:
        rec.extras["baseline_recall_at_10"] = {
            r.plain.path: float(np.mean(_recall(cell, queries, r.found["vector_search"])))
            for r in rivals
        }


async def _writes(svc: LanceDBStorageService, cell: _Cell, rivals: Sequence[_Rival]) -> None:
    plan, rec, wl, size = cell.plan, cell.rec, cell.wl, cell.size
    singles = wl.documents(size, _adds(plan))

    async def idle() -> None:
        await svc.wait_idle(USER)

    await _interleaved(
        cell,
        "add_1",
        lambda i: svc.add_documents(USER, [singles[i]]),
        [(r, r.plain.add_one) for r in rivals],
        between=idle,
    )
    size_b = cell.scenario.workload.batch_size
    start = size + _adds(plan)
    batches = wl.documents(start, size_b * (plan.batch_reps + plan.warmup))
    await rec.run(
        "add_batch",
        lambda i: svc.add_documents(USER, batches[i * size_b : (i + 1) * size_b]),
        repetitions=plan.batch_reps,
        warmup=plan.warmup,
    )
    await svc.wait_idle(USER)


async def _push_calls(svc: LanceDBStorageService, cell: _Cell, kind: str) -> None:
    """Add one document, then time the push (``sync`` or ``backup``) alone.

    The add is untimed, so the figure compares like with like against the folder-copy
    tools, which copy the same table change right after (``plan.tool_reps`` times).
    """
    rec, wl, size, plan = cell.rec, cell.wl, cell.size, cell.plan
    push = svc.sync if kind == "sync" else svc.backup
    await push(USER)  # push what the write phase added, untimed
    await svc.wait_idle(USER)
    tools: list[FolderSync] = []
    if plan.baselines and plan.tool_reps:
        table = cell.local_root / "users" / USER / f"{TABLE_NAME}.lance"
        dest = cell.ep.key("baselines", "{tool}", "users", USER, f"{TABLE_NAME}.lance")
        tools = await start_tools(rec, table, cell.ep, dest, scratch=cell.cell_dir)
    elif plan.baselines:
        for path in SYNC_TOOLS:
            cell.skip(path, TOOLS_ELSEWHERE)
    docs = wl.documents(size * 2, plan.sync_reps)
    op = f"{kind}_after_add_1"
    reports = []
    for i in range(plan.sync_reps):
        await svc.add_documents(USER, [docs[i]])
        reports += await rec.run(op, lambda _: push(USER), repetitions=1, first_iteration=i)
        if i < plan.tool_reps and tools:
            await svc.wait_idle(USER)  # no compaction may change the folder mid-copy
            tools = await time_tools(rec, tools, op, i)
    reports = [r for r in reports if failure_of(r) is None]  # failures are not figures
    if reports:
        rec.extras[f"{kind}_bytes_up_median"] = float(np.median([r.bytes_up for r in reports]))
        rec.extras[f"{kind}_files_up_median"] = float(np.median([r.files_up for r in reports]))
    await rec.run(f"{kind}_no_change", lambda i: push(USER), repetitions=plan.sync_reps)


async def _cache_calls(
    svc: LanceDBStorageService, other_config: LanceDBSyncConfig, cell: _Cell
) -> None:
    """Another backend instance writes; this one refreshes its cache and reads the new doc."""
    rec, wl, size, ep, reps = cell.rec, cell.wl, cell.size, cell.ep, cell.plan.sync_reps
    docs = wl.documents(size * 2, reps)
    async with LanceDBStorageService(other_config, endpoint=ep) as writer:
        for i in range(reps):
            await writer.add_documents(USER, [docs[i]])

            async def miss(_: int, i: int = i) -> Any:
                report = await svc.refresh(USER)
                if failure_of(report) is not None:
                    return report  # the recorder counts it as failed, not as a read
                return await svc.get_document(USER, docs[i]["id"])

            found = await rec.run("miss_read", miss, repetitions=1, first_iteration=i)
            if found[0] is None:
                rec.extras["miss_read_not_found"] = rec.extras.get("miss_read_not_found", 0) + 1
    await rec.run("refresh_no_change", lambda i: svc.refresh(USER), repetitions=reps)
    known = [d["id"] for d in docs]

    async def fresh(i: int) -> Any:
        """A point read at CACHE_MAX_STALENESS_MS=0: S3 is asked for news before each one."""
        report = await svc.refresh(USER)
        if failure_of(report) is not None:
            return report
        return await svc.get_document(USER, known[i % len(known)])

    await rec.run("fresh_read", fresh, repetitions=reps)


# -- baselines (see lancesync_bench.bench.baselines) ------------------------------------


def _adds(plan: CellPlan) -> int:
    """How many documents add_1 may append: the most samples it can take, and warm-up."""
    return max(plan.repetitions, plan.cheap_n) + plan.warmup


async def _open_baselines(cell: _Cell, ids: list[str], queries: np.ndarray) -> list[_Rival]:
    """Plain LanceDB on local disk (every mode) and on S3 (the S3-primary mode), opened."""
    plan = cell.plan
    inputs = LanceDBInputs(cell.wl, cell.size, ids, queries, cell.size, _adds(plan))
    rivals = [_Rival(PlainLanceDB(LANCEDB_LOCAL, str(cell.cell_dir / "plain"), inputs))]
    if cell.mode is StorageMode.S3_PRIMARY_LOCAL_CACHE:
        plain = PlainLanceDB(
            LANCEDB_S3,
            cell.ep.uri("baselines", "lancedb-s3"),
            inputs,
            storage_options=cell.ep.storage_options(),
        )
        rivals.append(_Rival(plain, plan.s3_baseline_budget_s, plan.s3_baseline_reps))
    else:
        # Local-primary modes never read or write S3 on the request path; plain LanceDB on
        # S3 is the alternative to the S3-primary mode and is measured there.
        cell.skip(LANCEDB_S3, "local-primary mode: reads and writes never touch S3")
    opened: list[_Rival] = []
    try:
        for rival in rivals:
            await rival.plain.open()
            opened.append(rival)
    except BaseException:
        for rival in opened:
            rival.plain.close()
        raise
    return rivals
