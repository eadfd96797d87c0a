"""What each millisecond of vector search buys: plain LanceDB over a grid of search settings.

For the latency-vs-recall figure of the report. On the cell's own rows (and on each hard
set of the scenario's ``[recall]`` table) a plain LanceDB table gets the index the service
builds (IVF_FLAT, ``max(8, sqrt(n))`` partitions, L2), prewarmed as the service prewarms it;
then every ``(nprobes, refine_factor)`` pair answers the same queries. Each point of the
figure is one setting: its median and p95 latency, and its mean recall@10 against exact
search with a bootstrap interval. The service itself searches with one fixed setting; this
sweep shows where that setting sits.

Samples are kept raw in the cell's extras (``search_sweep``), not in ``samples.csv``: no
target judges them, and they must not mix with the service's own vector_search figures.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lancesync_bench.bench.probe import settle
from lancesync_bench.intervals import mean_interval
from lancesync_bench.workload import Workload, recall_per_query

__all__ = ["index_partitions", "sweep_search"]

_TOP_K = 10
# A few searches per setting before timing: the first touches partitions not yet cached.
_WARMUP = 3


async def _search(
    table: Any, vector: npt.NDArray[np.float32], nprobes: int, refine: int
) -> list[str]:
    """The ids of one top-10 search (timed with the conversion, as the service's search)."""
    q = table.query().nearest_to(vector).nprobes(nprobes)
    if refine:
        q = q.refine_factor(refine)
    result = await q.limit(_TOP_K).to_arrow()
    return [str(x) for x in result.column("id").to_pylist()]


def index_partitions(rows: int) -> int:
    """IVF partitions the service gives a table of ``rows`` (DocTable.ensure_indexes)."""
    return max(8, int(rows**0.5))


async def sweep_search(
    wl: Workload,
    size: int,
    queries: npt.NDArray[np.float32],
    truth: Sequence[Sequence[str]],
    *,
    folder: Path,
    nprobes: Sequence[int],
    refine: Sequence[int],
) -> list[dict[str, Any]]:
    """Time ``len(truth)`` searches per setting on a plain LanceDB table of ``size`` rows.

    ``queries`` holds the warm-up queries first, then one per entry of ``truth`` (the
    exact top-10 ids of those queries). Returns one dict per setting.
    """
    import lancedb
    import lancedb.index

    db = await lancedb.connect_async(str(folder))
    table = await db.create_table("sweep", data=wl.arrow_table(0, size, metadata="json"))
    partitions = index_partitions(size)
    points: list[dict[str, Any]] = []
    try:
        await table.create_index("vector", config=lancedb.index.IvfFlat(num_partitions=partitions))
        for index in await table.list_indices():
            await table.prewarm_index(index.name)
        await settle()
        timed = queries[_WARMUP : _WARMUP + len(truth)]
        for probes in nprobes:
            for factor in refine:
                for v in queries[:_WARMUP]:
                    await _search(table, v, probes, factor)
                latencies, found = [], []
                for v in timed:
                    start = time.perf_counter_ns()
                    ids = await _search(table, v, probes, factor)
                    latencies.append((time.perf_counter_ns() - start) / 1e6)
                    found.append(ids)
                recalls = recall_per_query(found, truth)
                ci = mean_interval(recalls)
                points.append(
                    {
                        "dataset": wl.data,
                        "data": wl.describe(size, len(truth)),
                        "rows": size,
                        "partitions": partitions,
                        "nprobes": probes,
                        "refine_factor": factor,
                        "queries": len(truth),
                        "p50_ms": float(np.median(latencies)),
                        "p95_ms": float(np.percentile(latencies, 95)),
                        "recall_at_10": float(np.mean(recalls)),
                        "recall_ci_low": None if ci is None else ci.low,
                        "recall_ci_high": None if ci is None else ci.high,
                        "latencies_ms": [round(x, 4) for x in latencies],
                    }
                )
    finally:
        table.close()  # type: ignore[no-untyped-call]  # lancedb leaves it unannotated
    return points
