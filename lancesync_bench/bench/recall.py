"""Recall beside latency: exact answers, recall records, hard sets, the search sweep.

A recall figure is only as good as the statement of what it was measured on, so every
record carries its data (dataset, rows, dim, queries) beside the mean recall@10 and its
bootstrap interval. The hard sets (:class:`~lancesync_bench.scenarios.RecallSpec`) run the
service's own vector search on harder data than the workload's clusters.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from lancesync_bench.bench.probe import settle
from lancesync_bench.bench.recorder import Recorder
from lancesync_bench.bench.search_sweep import sweep_search
from lancesync_bench.intervals import mean_interval
from lancesync_bench.scenarios import RecallSpec, WorkloadSpec
from lancesync_bench.workload import Dataset, Workload, doc_id, exact_top_k, recall_per_query

__all__ = ["exact_ids", "measure_hard_set", "recall_record", "sweep_datasets"]

_K = 10


class _Plan(Protocol):
    queries: int
    warmup: int


class _Searcher(Protocol):
    async def import_documents(self, user_id: str, table: Any) -> Any: ...
    async def maintain(self, user_id: str) -> Any: ...
    async def wait_idle(self, user_id: str) -> Any: ...
    async def search(self, user_id: str, vector: Any, k: int = ...) -> Any: ...


def exact_ids(
    wl: Workload, size: int, queries: npt.NDArray[np.float32], count: int
) -> list[list[str]]:
    """Exact top-10 ids of ``queries[:count]`` over rows ``0 .. size-1`` (brute force)."""
    vectors = wl.arrays(0, size).vectors
    return [[doc_id(int(j)) for j in row] for row in exact_top_k(vectors, queries[:count], _K)]


def recall_record(
    operation: str, wl: Workload, size: int, per_query: list[float]
) -> dict[str, Any]:
    """The recall of ``operation`` with its interval and the data it was measured on."""
    ci = mean_interval(per_query)
    return {
        "operation": operation,
        "dataset": wl.data,
        "data": wl.describe(size, len(per_query)),
        "rows": size,
        "dim": wl.dim,
        "queries": len(per_query),
        "k": _K,
        "mean": float(np.mean(per_query)) if per_query else 0.0,
        "ci_low": None if ci is None else ci.low,
        "ci_high": None if ci is None else ci.high,
    }


async def measure_hard_set(
    svc: _Searcher, rec: Recorder, wl: Workload, size: int, *, user: str, plan: _Plan
) -> dict[str, Any]:
    """Time the service's vector search on ``wl``'s data, in a table of user ``user``.

    The service builds and searches that table's index exactly as for the workload's own
    data. Timed as ``vector_search_<data>``; returns its :func:`recall_record`.
    """
    operation = f"vector_search_{wl.data}"
    await svc.import_documents(user, wl.arrow_table(0, size, metadata="json"))
    await svc.maintain(user)
    await svc.wait_idle(user)
    queries = wl.query_vectors(plan.queries + plan.warmup)
    rec.extras[f"settle_s:{wl.data}"] = round(await settle(), 3)
    results = await rec.run(
        operation,
        lambda i: svc.search(user, queries[i % len(queries)], k=_K),
        repetitions=plan.queries,
        warmup=plan.warmup,
    )
    truth = exact_ids(wl, size, queries[plan.warmup :], plan.queries)
    per_query = recall_per_query([[d["id"] for d in r] for r in results], truth)
    return recall_record(operation, wl, size, per_query)


async def sweep_datasets(
    spec_w: WorkloadSpec, own: Dataset, size: int, spec: RecallSpec, workdir: Path
) -> list[dict[str, Any]]:
    """Plain LanceDB over nprobes x refine_factor, on the cell's data and each hard set."""
    datasets = [own, *(d for d in spec.datasets if d != own)]
    points: list[dict[str, Any]] = []
    warmup = 3  # search_sweep's own warm-up searches per setting
    for data in datasets:
        wl = spec_w.workload(data)
        queries = wl.query_vectors(spec.sweep_queries + warmup)
        truth = exact_ids(wl, size, queries[warmup:], spec.sweep_queries)
        folder = workdir / f"sweep-{data}"
        points += await sweep_search(
            wl,
            size,
            queries,
            truth,
            folder=folder,
            nprobes=spec.sweep_nprobes,
            refine=spec.sweep_refine,
        )
        shutil.rmtree(folder, ignore_errors=True)
    return points
