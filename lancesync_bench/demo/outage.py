"""Scenario (d): S3 goes away and comes back, for a local-primary and an S3-primary backend.

The path is cut at the lab's proxy (every connection reset, as when a network drops), so
the service under test loses S3 while a second device or instance, reaching S3 directly,
keeps it: the situation of one laptop going offline, or one backend losing its route.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lancesync_bench.config import StorageMode
from lancesync_bench.demo.lab import DemoLab
from lancesync_bench.demo.tables import Attempt, attempt, demo_documents, edited
from lancesync_bench.storage.reports import StoreStatus, SyncReport

__all__ = ["OUTCOMES", "OutageDemo", "s3_outage"]

USER = "olive"
# Outcome labels, in the order figures list them.
OUTCOMES = ("ok", "stale", "unreachable", "failed")


@dataclass(frozen=True)
class OutageDemo:
    """What the outage demo showed, one table per storage mode.

    Each row: the step, whether the S3 path was up or cut, the outcome (``ok``, ``stale``:
    served from the cache while S3 was away, ``unreachable``: a sync or refresh that
    reported S3 missing, ``failed``: an error raised to the caller), what happened, and how
    long the call took.
    """

    local_primary: pd.DataFrame
    s3_primary: pd.DataFrame
    write_error: str


class _Log:
    """The rows of one outage table, and whether the path is up or cut right now."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.path = "up"

    def add(self, step: str, outcome: str, detail: str, ms: float) -> None:
        self.rows.append(
            {
                "step": f"{len(self.rows) + 1}. {step}",
                "S3 path": self.path,
                "outcome": outcome,
                "detail": detail,
                "ms": ms,
            }
        )

    def call(
        self, step: str, result: Attempt, detail: Callable[[Any], str], *, ok: str = "ok"
    ) -> None:
        """A row for a call that returned (outcome ``ok``, ``detail(value)``) or raised."""
        if result.ok:
            self.add(step, ok, detail(result.value), result.ms)
        else:
            self.add(step, "failed", result.error_text, result.ms)

    def sync(self, step: str, result: Attempt, detail: Callable[[SyncReport], str]) -> None:
        """A row for a sync or refresh: ``unreachable`` when its report says so."""
        report: SyncReport | None = result.value
        if report is not None and not report.reachable:
            self.add(step, "unreachable", f"reachable=False: {report.error}", result.ms)
        else:
            self.call(step, result, detail)

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows).set_index("step")
        frame["ms"] = frame["ms"].round(1)
        return frame


def _status_text(status: StoreStatus) -> str:
    return (
        f"pending_changes={status.pending_changes}, in_sync={status.in_sync}, "
        f"reads_may_be_stale={status.reads_may_be_stale}, last_error={status.last_error!r}"
    )


def _text(doc: dict[str, Any] | None) -> str:
    return repr(doc["text"]) if doc is not None else "not found"


async def _local_primary(lab: DemoLab) -> pd.DataFrame:
    run = lab.run("outage-local")
    n, dim = run.sizes.docs, run.sizes.dim
    mode = StorageMode.LOCAL_PRIMARY_S3_SYNC
    log = _Log()
    async with (
        run.service(mode, device="device-a") as a,
        run.service(mode, device="device-b", direct=True) as b,
    ):
        await a.add_documents(USER, demo_documents(dim, 0, n))
        log.sync("A syncs", await attempt(a.sync(USER)), lambda r: f"pushed {r.records_up}")
        extra = demo_documents(dim, n, 3)
        lab.proxy.cut()
        log.path = "cut"
        try:
            result = await attempt(a.add_documents(USER, extra))
            log.call("A writes 3 documents", result, lambda _: "written locally")
            result = await attempt(a.get_document(USER, extra[0]["id"]))
            log.call(f"A reads {extra[0]['id']}", result, lambda d: f"local: {_text(d)}")
            log.sync("A syncs", await attempt(a.sync(USER)), lambda r: f"pushed {r.records_up}")
            log.call("A status", await attempt(a.status(USER)), _status_text)
        finally:
            lab.proxy.restore()
            log.path = "up"
        result = await attempt(a.sync(USER))
        log.sync("A syncs", result, lambda r: f"caught up: pushed {r.records_up} records")
        result = await attempt(b.sync(USER))
        log.sync("B syncs", result, lambda r: f"pulled {r.records_down} records")
        result = await attempt(b.status(USER))
        log.call("B status", result, lambda s: f"B has {s.documents} documents")
    return log.frame()


async def _s3_primary(lab: DemoLab) -> tuple[pd.DataFrame, str]:
    run = lab.run("outage-s3")
    n, dim = run.sizes.docs, run.sizes.dim
    mode = StorageMode.S3_PRIMARY_LOCAL_CACHE
    docs = demo_documents(dim, 0, n)
    first = docs[0]["id"]
    new_doc = demo_documents(dim, n, 1)
    log = _Log()
    write_error = ""
    async with (
        run.service(mode, device="web-1") as p1,
        run.service(mode, device="web-2", direct=True) as p2,
    ):
        result = await attempt(p1.add_documents(USER, docs))
        log.call(f"web-1 writes {n} documents", result, lambda _: "committed to S3")
        log.call(f"web-1 reads {first}", await attempt(p1.get_document(USER, first)), _text)
        lab.proxy.cut()
        log.path = "cut"
        try:
            result = await attempt(p2.add_documents(USER, [edited(docs[0], "Updated by web-2.")]))
            log.call(f"web-2 (still online) edits {first}", result, lambda _: "committed to S3")
            result = await attempt(p1.refresh(USER))
            log.sync("web-1 refreshes its cache", result, lambda _: "refreshed")
            result = await attempt(p1.get_document(USER, first))
            log.call(f"web-1 reads {first}", result, lambda d: f"cache: {_text(d)}", ok="stale")
            log.call("web-1 status", await attempt(p1.status(USER)), _status_text)
            result = await attempt(p1.add_documents(USER, new_doc))
            write_error = result.error_text
            log.call("web-1 writes a document", result, lambda _: "committed (S3 is cut!)")
        finally:
            lab.proxy.restore()
            log.path = "up"
        result = await attempt(p1.refresh(USER))
        log.sync("web-1 refreshes its cache", result, lambda r: f"S3 at v{r.remote_version}")
        log.call(f"web-1 reads {first}", await attempt(p1.get_document(USER, first)), _text)
        result = await attempt(p1.add_documents(USER, new_doc))
        log.call("web-1 writes the document again", result, lambda _: "committed to S3")
    return log.frame(), write_error


async def s3_outage(lab: DemoLab) -> OutageDemo:
    """Cut S3 away from one device/instance of each kind, work on, and bring S3 back.

    Local primary (sync mode): writes and reads go on; ``sync`` returns
    ``reachable=False`` at once and the status counts pending changes; once S3 is back
    the next sync pushes them and another device pulls them. S3 primary: reads are served
    from the cache (stale: another instance changed a document meanwhile), a write fails
    fast with an :class:`S3Unavailable` error; once S3 is back the cache catches up and
    writes succeed.
    """
    local = await _local_primary(lab)
    s3_primary, write_error = await _s3_primary(lab)
    return OutageDemo(local_primary=local, s3_primary=s3_primary, write_error=write_error)
