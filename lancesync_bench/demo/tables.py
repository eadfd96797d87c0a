"""Small pieces the live demos share: demo documents, live-document listings, report rows.

Everything here reads through the storage service's public API, except
:func:`record_history`, which reads the raw record log of a user's table to show which
record won (the service only ever returns the winner).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pandas as pd

from lancesync_bench.netem import RequestCounts
from lancesync_bench.storage.reports import SyncReport
from lancesync_bench.storage.schema import TABLE_NAME, sql_string
from lancesync_bench.storage.service import LanceDBStorageService
from lancesync_bench.workload import Workload

__all__ = [
    "DEMO_SEED",
    "WINNER_RULE",
    "Attempt",
    "attempt",
    "counts_row",
    "demo_documents",
    "edited",
    "live_documents",
    "record_history",
    "report_row",
    "side_by_side",
]

T = TypeVar("T")
DEMO_SEED = 2024
# The storage service's maximum k: far above any demo's document count.
_LIST_ALL_K = 10_000
ABSENT = "(absent)"
WINNER_RULE = (
    "Per id, the record with the greatest (updated_at, device id) wins: the later write, "
    "ties broken by device id so that every device picks the same one. A winning tombstone "
    "(deleted=True) hides the id."
)


def demo_documents(dim: int, start: int, count: int) -> list[dict[str, Any]]:
    """Seeded workload documents ``doc-<start>`` on, with the first sentence as their text.

    The workload's ids, vectors and metadata, unchanged; one sentence keeps tables narrow.
    """
    docs = Workload(DEMO_SEED, dim).documents(start, count)
    for doc in docs:
        doc["text"] = doc["text"].split(". ")[0].rstrip(".") + "."
    return docs


def edited(doc: Mapping[str, Any], text: str) -> dict[str, Any]:
    """``doc`` with a new text (same id, vector and metadata): an update."""
    return {**doc, "text": text}


async def live_documents(service: LanceDBStorageService, user: str) -> dict[str, dict[str, Any]]:
    """id -> live document (text, vector, metadata, updated_at), through ``search``.

    A search from the zero vector with a large ``k`` returns every live document once: the
    service resolves replacements and deletes exactly as for any other read.
    """
    zero = [0.0] * service.config.embedding_dim
    found = await service.search(user, zero, k=_LIST_ALL_K)
    return {d["id"]: {k: v for k, v in d.items() if k not in ("id", "distance")} for d in found}


def side_by_side(
    left: Mapping[str, Mapping[str, Any]],
    right: Mapping[str, Mapping[str, Any]],
    names: tuple[str, str],
) -> pd.DataFrame:
    """One row per id in either side: each side's text (or "(absent)") and whether they agree.

    ``same`` compares the whole documents (text, vector, metadata, timestamp), not only the
    text shown.
    """
    rows = []
    for doc_id in sorted(set(left) | set(right)):
        a, b = left.get(doc_id), right.get(doc_id)
        rows.append(
            {
                "id": doc_id,
                names[0]: ABSENT if a is None else a["text"],
                names[1]: ABSENT if b is None else b["text"],
                "same": a == b,
            }
        )
    return pd.DataFrame(rows, columns=["id", *names, "same"]).set_index("id")


async def record_history(
    service: LanceDBStorageService, user: str, ids: Sequence[str]
) -> pd.DataFrame:
    """Every stored record of ``ids`` on one device, oldest first, with the winner marked."""
    db = await service.get_user_connection(user)
    table = await db.open_table(TABLE_NAME)
    where = f"id IN ({', '.join(sql_string(i) for i in ids)})"
    columns = ["id", "text", "origin", "updated_at", "deleted"]
    rows: list[dict[str, Any]] = (
        await table.query().where(where).select(columns).to_arrow()
    ).to_pylist()
    winners: dict[str, dict[str, Any]] = {}
    for row in rows:
        best = winners.get(row["id"])
        if best is None or (row["updated_at"], row["origin"]) > (
            best["updated_at"],
            best["origin"],
        ):
            winners[row["id"]] = row
    frame = pd.DataFrame(
        [{**r, "wins": winners[r["id"]] is r} for r in rows], columns=[*columns, "wins"]
    )
    frame = frame.sort_values(["id", "updated_at"]).rename(columns={"origin": "device"})
    frame["updated_at"] = pd.to_datetime(frame["updated_at"], unit="ns", utc=True)
    return frame.reset_index(drop=True)


def _kinds(requests: Mapping[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(requests.items()) if n) or "-"


def report_row(step: str, report: SyncReport) -> dict[str, Any]:
    """One table row for a sync, backup, restore or refresh report."""
    return {
        "step": step,
        "reachable": report.reachable,
        "records up": report.records_up,
        "records down": report.records_down,
        "files up": report.files_up,
        "bytes up": report.bytes_up,
        "files down": report.files_down,
        "bytes down": report.bytes_down,
        "S3 requests": report.requests_total,
        "by kind": _kinds(report.requests),
        "remote version": report.remote_version,
        "ms": round(report.duration_s * 1000, 1),
    }


def counts_row(counts: RequestCounts, *, reads: int = 1) -> dict[str, Any]:
    """Proxy counts as a row, per read when ``reads`` > 1 (GET, LIST, other, bytes down)."""
    per = max(reads, 1)
    other = counts.total - counts.gets - counts.lists
    return {
        "S3 requests per read": counts.total / per,
        "GET": counts.gets / per,
        "LIST": counts.lists / per,
        "other": other / per,
        "bytes down per read": round(counts.bytes_down / per),
    }


@dataclass(frozen=True)
class Attempt:
    """The outcome of one awaited call: its value or its error, and how long it took."""

    value: Any
    error: BaseException | None
    ms: float

    @property
    def ok(self) -> bool:
        """True when the call returned."""
        return self.error is None

    @property
    def error_text(self) -> str:
        """``ErrorType: message`` (empty when the call returned)."""
        return "" if self.error is None else f"{type(self.error).__name__}: {self.error}"


async def attempt(call: Awaitable[T]) -> Attempt:
    """Await ``call``, keeping a library error as data instead of raising it."""
    from lancesync_bench.errors import LanceSyncError

    start = time.perf_counter()
    try:
        value: Any = await call
    except LanceSyncError as exc:
        return Attempt(None, exc, (time.perf_counter() - start) * 1000)
    return Attempt(value, None, (time.perf_counter() - start) * 1000)
