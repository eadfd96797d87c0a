"""Scenario (c): an S3-primary backend's cache fills, serves hits, and sees other writes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lancesync_bench.config import StorageMode
from lancesync_bench.demo.lab import DemoLab
from lancesync_bench.demo.tables import counts_row, demo_documents
from lancesync_bench.storage.service import LanceDBStorageService

__all__ = ["READER", "WRITER", "CacheDemo", "s3_primary_cache"]

USER = "casey"
WRITER, READER = "web-1", "web-2"


@dataclass(frozen=True)
class CacheDemo:
    """What the S3-primary cache demo showed.

    ``reads``: per step, S3 requests per read (GET, LIST, other) counted by the proxy in
    front of the reading instance, bytes down, time, and how many documents were found.
    ``cache_age_ms`` is an upper bound on how old the reader's view of S3 was at step 4;
    while it is below ``staleness_ms`` the reader does not look at S3, so the other
    instance's new document is not visible yet (``visible_within_bound``).
    """

    reads: pd.DataFrame
    staleness_ms: int
    cache_age_ms: float
    visible_within_bound: bool
    visible_after_bound: bool
    new_id: str


async def _timed_reads(
    lab: DemoLab, reader: LanceDBStorageService, step: str, ids: Sequence[str]
) -> dict[str, Any]:
    before = lab.proxy.snapshot()
    start = time.perf_counter()
    found = [await reader.get_document(USER, doc_id) for doc_id in ids]
    ms = (time.perf_counter() - start) * 1000
    counts = lab.proxy.snapshot() - before
    return {
        "step": step,
        "reads": len(ids),
        **counts_row(counts, reads=len(ids)),
        "ms per read": round(ms / len(ids), 2),
        "found": f"{sum(doc is not None for doc in found)} of {len(ids)}",
    }


async def s3_primary_cache(lab: DemoLab) -> CacheDemo:
    """Two web backends in the cloud (S3 primary, local cache) share one user's table.

    ``web-1`` writes the seeded documents (reaching S3 directly) and flushes them into the
    S3 table, so that no log object of it is pending. ``web-2``, through the
    counting proxy, reads: the first read opens its cache and fills it from S3; the next
    reads are cache hits (no S3 request) while its view is younger than the staleness
    bound; after the bound a read costs two LISTs when nothing changed (the write log's
    writers, then the newest manifest). Then ``web-1`` writes a new document (one PUT of a
    log object): ``web-2`` does not see it within the bound and does right after it.
    """
    run = lab.run("cache")
    n, dim = run.sizes.docs, run.sizes.dim
    bound_s = run.sizes.staleness_ms / 1000
    docs = demo_documents(dim, 0, n)
    ids = [d["id"] for d in docs]
    new_doc = demo_documents(dim, n, 1)[0]
    mode = StorageMode.S3_PRIMARY_LOCAL_CACHE
    rows = []
    async with (
        run.service(mode, device=WRITER, direct=True) as writer,
        run.service(mode, device=READER) as reader,
    ):
        await writer.add_documents(USER, docs)
        # Into the S3 table, log objects deleted: a writer with objects pending costs every
        # refresh one LIST more (its objects), which step 3 would show.
        await writer.wait_idle(USER)
        first = "1. first read: opens the cache and fills it from S3"
        rows.append(await _timed_reads(lab, reader, first, ids[:1]))
        hits = "2. more reads within the bound: cache hits"
        rows.append(await _timed_reads(lab, reader, hits, ids[1:6]))
        await asyncio.sleep(bound_s)  # let the reader's view age past the bound
        checked_at = time.monotonic()
        check = "3. a read after the bound: one check of S3, nothing new"
        rows.append(await _timed_reads(lab, reader, check, ids[6:7]))
        refreshed_by = time.monotonic()  # the reader's view is at least this fresh
        await writer.add_documents(USER, [new_doc])
        cache_age_ms = (time.monotonic() - checked_at) * 1000
        within = f"4. {WRITER} added {new_doc['id']}; {READER} reads it within the bound"
        rows.append(await _timed_reads(lab, reader, within, [new_doc["id"]]))
        await asyncio.sleep(max(0.0, refreshed_by + bound_s - time.monotonic()))
        after = "5. the same read once the bound has passed"
        rows.append(await _timed_reads(lab, reader, after, [new_doc["id"]]))
    reads = pd.DataFrame(rows).set_index("step")
    return CacheDemo(
        reads=reads,
        staleness_ms=run.sizes.staleness_ms,
        cache_age_ms=round(cache_age_ms, 1),
        visible_within_bound=reads["found"].iloc[3] == "1 of 1",
        visible_after_bound=reads["found"].iloc[4] == "1 of 1",
        new_id=new_doc["id"],
    )
