"""Measure one (scenario, table size, network profile) cell through the storage service.

Order of work, chosen so each figure is taken in a known state:

1. load ``size`` seeded documents in one import, compact, build indexes, and bring the
   mode's S3 copy up to date (initial sync or backup) - none of it timed;
2. cold reads: a fresh service opens the table and answers one read (open included);
3. warm reads: point reads by id and vector top-10, with recall@10 against exact search;
4. writes: one document, then batches;
5. the mode's sync-like calls: sync, backup, restore, cache refresh, miss read.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lancesync_bench.bench.recorder import CellKey, Recorder
from lancesync_bench.config import LanceDBSyncConfig, StorageMode
from lancesync_bench.netem import NetworkProfile, S3Proxy
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.scenarios import Profile, Scenario
from lancesync_bench.storage.service import LanceDBStorageService
from lancesync_bench.workload import Workload, doc_id, exact_top_k, recall_at_k

__all__ = ["CellPlan", "measure_cell"]

USER = "bench-user"
# Cold opens are few: each builds a service and opens the table from scratch.
_COLD_OPENS = 5
# Sync-like calls move data; 20 of each give a median and a p95 without dominating the run.
_SYNC_REPS = 20
_RESTORE_REPS = 5


class CellPlan:
    """How much to measure in one cell."""

    def __init__(self, *, repetitions: int, warmup: int, batch_reps: int, queries: int) -> None:
        self.repetitions = repetitions
        self.warmup = warmup
        self.batch_reps = batch_reps
        self.queries = queries

    @classmethod
    def for_scenario(cls, scenario: Scenario, *, quick: bool) -> CellPlan:
        """Repetitions from the scenario (quick mode: its quick repetitions)."""
        reps = scenario.repetitions(quick=quick)
        # Batch writes add 100 rows each; a fifth of the repetitions (at least 20, so p95 is
        # supported) keeps the table from growing far past its nominal size.
        return cls(
            repetitions=reps,
            warmup=scenario.workload.warmup,
            batch_reps=max(20, reps // 5),
            queries=min(scenario.workload.queries, reps),
        )


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
    with S3Proxy(endpoint.url or "", profile_of(profile), seed=seed) as proxy:
        ep = proxy.endpoint_for(endpoint).with_prefix(prefix)
        rec = Recorder(key, proxy)
        cell = _Cell(scenario, size, ep, cell_dir, plan, scenario.workload.workload(), rec)
        try:
            await _measure(cell)
        finally:
            shutil.rmtree(cell_dir, ignore_errors=True)
    return rec


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

    @property
    def mode(self) -> StorageMode:
        return self.scenario.storage_mode


async def _measure(cell: _Cell) -> None:
    mode, ep, wl, size = cell.mode, cell.ep, cell.wl, cell.size
    config = _config(cell.scenario, ep, cell.cell_dir / "a", "bench-a")
    async with LanceDBStorageService(config, endpoint=ep) as svc:
        await svc.import_documents(USER, wl.arrow_table(0, size, metadata="json"))
        await svc.maintain(USER)
        if mode is StorageMode.LOCAL_PRIMARY_S3_SYNC:
            await svc.sync(USER)
        elif mode is StorageMode.LOCAL_PRIMARY_S3_BACKUP:
            await svc.backup(USER)

    ids = wl.lookup_ids(cell.plan.repetitions + cell.plan.warmup, size)

    async def cold(i: int) -> Any:
        async with LanceDBStorageService(config, endpoint=ep) as fresh:
            return await fresh.get_document(USER, ids[i % len(ids)])

    await cell.rec.run("cold_read", cold, repetitions=_COLD_OPENS, phase="cold")

    async with LanceDBStorageService(config, endpoint=ep) as svc:
        await _reads(svc, cell, ids)
        await _writes(svc, cell)
        if mode is StorageMode.LOCAL_PRIMARY_S3_SYNC:
            await _sync_calls(svc, cell)
        elif mode is StorageMode.LOCAL_PRIMARY_S3_BACKUP:
            await _backup_calls(svc, cell)
        elif mode is StorageMode.S3_PRIMARY_LOCAL_CACHE:
            other = _config(cell.scenario, ep, cell.cell_dir / "b", "bench-b")
            await _cache_calls(svc, other, cell)


async def _reads(svc: LanceDBStorageService, cell: _Cell, ids: list[str]) -> None:
    plan, rec, wl = cell.plan, cell.rec, cell.wl

    async def point(i: int) -> Any:
        return await svc.get_document(USER, ids[i])

    found = await rec.run("point_read", point, repetitions=plan.repetitions, warmup=plan.warmup)
    rec.extras["point_read_hits"] = sum(d is not None for d in found) / max(1, len(found))

    queries = wl.query_vectors(plan.queries + plan.warmup)
    results = await rec.run(
        "vector_search",
        lambda i: svc.search(USER, queries[i % len(queries)], k=10),
        repetitions=plan.queries,
        warmup=plan.warmup,
    )
    vectors = wl.arrays(0, cell.size).vectors
    truth = exact_top_k(vectors, queries[plan.warmup :], 10)
    true_ids = [[doc_id(int(j)) for j in row] for row in truth]
    found_ids = [[d["id"] for d in r] for r in results]
    rec.extras["recall_at_10"] = float(recall_at_k(found_ids, true_ids))


async def _writes(svc: LanceDBStorageService, cell: _Cell) -> None:
    plan, rec, wl, size = cell.plan, cell.rec, cell.wl, cell.size
    n_one = plan.repetitions + plan.warmup
    singles = wl.documents(size, n_one)
    await rec.run(
        "add_1",
        lambda i: svc.add_documents(USER, [singles[i]]),
        repetitions=plan.repetitions,
        warmup=plan.warmup,
    )
    await svc.wait_idle(USER)
    size_b = cell.scenario.workload.batch_size
    start = size + n_one
    batches = wl.documents(start, size_b * (plan.batch_reps + plan.warmup))
    await rec.run(
        "add_batch",
        lambda i: svc.add_documents(USER, batches[i * size_b : (i + 1) * size_b]),
        repetitions=plan.batch_reps,
        warmup=plan.warmup,
    )
    await svc.wait_idle(USER)


async def _sync_calls(svc: LanceDBStorageService, cell: _Cell) -> None:
    rec, wl, size = cell.rec, cell.wl, cell.size
    await svc.sync(USER)  # push what the write phase added, untimed
    docs = wl.documents(size * 2, _SYNC_REPS)

    async def one(i: int) -> Any:
        await svc.add_documents(USER, [docs[i]])
        return await svc.sync(USER)

    reports = await rec.run("sync_after_add_1", one, repetitions=_SYNC_REPS, phase="warm")
    rec.extras["sync_bytes_up_median"] = float(np.median([r.bytes_up for r in reports]))
    rec.extras["sync_files_up_median"] = float(np.median([r.files_up for r in reports]))
    await rec.run("sync_no_change", lambda i: svc.sync(USER), repetitions=_SYNC_REPS)


async def _backup_calls(svc: LanceDBStorageService, cell: _Cell) -> None:
    rec, wl, size = cell.rec, cell.wl, cell.size
    await svc.backup(USER)
    docs = wl.documents(size * 2, _SYNC_REPS)

    async def one(i: int) -> Any:
        await svc.add_documents(USER, [docs[i]])
        return await svc.backup(USER)

    reports = await rec.run("backup_after_add_1", one, repetitions=_SYNC_REPS)
    rec.extras["backup_bytes_up_median"] = float(np.median([r.bytes_up for r in reports]))
    rec.extras["backup_files_up_median"] = float(np.median([r.files_up for r in reports]))
    await rec.run("backup_no_change", lambda i: svc.backup(USER), repetitions=_SYNC_REPS)
    await rec.run("restore_latest", lambda i: svc.restore(USER), repetitions=_RESTORE_REPS)


async def _cache_calls(
    svc: LanceDBStorageService, other_config: LanceDBSyncConfig, cell: _Cell
) -> None:
    """Another backend instance writes; this one refreshes its cache and reads the new doc."""
    rec, wl, size, ep = cell.rec, cell.wl, cell.size, cell.ep
    docs = wl.documents(size * 2, _SYNC_REPS)
    async with LanceDBStorageService(other_config, endpoint=ep) as writer:
        for i in range(_SYNC_REPS):
            await writer.add_documents(USER, [docs[i]])

            async def miss(_: int, i: int = i) -> Any:
                await svc.refresh(USER)
                return await svc.get_document(USER, docs[i]["id"])

            found = await rec.run("miss_read", miss, repetitions=1, first_iteration=i)
            if found[0] is None:
                rec.extras["miss_read_not_found"] = rec.extras.get("miss_read_not_found", 0) + 1
    await rec.run("refresh_no_change", lambda i: svc.refresh(USER), repetitions=_SYNC_REPS)
