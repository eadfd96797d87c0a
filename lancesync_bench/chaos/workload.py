"""A seeded mixed workload for the outage and flaky sections, and its operation log.

Operations: writes (one document; ids from a small pool, so later writes replace earlier
ones), reads of an acknowledged id, searches, and every tenth operation the mode's
transfer (sync, backup, or an S3-primary cache refresh). Every write that returns is
acknowledged; the sections check at the end that each one survived.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lancesync_bench.chaos.common import (
    DIM,
    PRIMARY,
    SYNC,
    Acked,
    document,
    latency_figures,
    missing_acked,
)
from lancesync_bench.errors import S3Error
from lancesync_bench.storage.reports import SyncReport
from lancesync_bench.storage.service import LanceDBStorageService

__all__ = ["OpLog", "Workload"]

_POOL = 60  # ids: about half of the writes replace an earlier document
TRANSFER_EVERY = 10  # a sync/backup/refresh every tenth operation, as a periodic sync would
# Catching up tries this often, this far apart: 30 x 0.2 s is far beyond the one or two
# calls a healthy catch-up takes (and the few a flaky path may need).
_LEVEL_ATTEMPTS = 30
_LEVEL_PAUSE_S = 0.2


@dataclass
class OpRecord:
    """One operation as the workload saw it."""

    phase: str
    kind: str
    ok: bool
    ns: int
    error: str | None = None
    requests: int | None = None


@dataclass
class OpLog:
    """Every operation of a run, with helpers to slice it."""

    records: list[OpRecord] = field(default_factory=list)

    def add(self, record: OpRecord) -> None:
        """Append one record."""
        self.records.append(record)

    def select(
        self, *, phase: str | None = None, kind: str | None = None, ok: bool | None = None
    ) -> list[OpRecord]:
        """The records matching every given field."""
        return [
            r
            for r in self.records
            if (phase is None or r.phase == phase)
            and (kind is None or r.kind == kind)
            and (ok is None or r.ok == ok)
        ]

    def latency(self, **match: Any) -> dict[str, Any]:
        """Latency figures of the matching records."""
        return latency_figures(r.ns for r in self.select(**match))

    def errors(self, **match: Any) -> dict[str, int]:
        """Error types of the matching records, counted."""
        return dict(Counter(r.error or "none" for r in self.select(**match) if not r.ok))


class Workload:
    """Drives one service for one user with seeded operations; remembers what was acked."""

    def __init__(self, service: LanceDBStorageService, user: str, *, seed: int, mode: str) -> None:
        self.service = service
        self.user = user
        self.mode = mode
        self.rng = random.Random(seed)
        self.acked = Acked.empty()
        self.log = OpLog()
        self.seq = 0
        self.stale_seen = False
        self.wrong_reads: list[str] = []
        self.unexpected: list[str] = []  # errors that are not S3 errors: always a finding

    def lost(
        self,
        remote: Mapping[str, Mapping[str, Any]],
        local: Mapping[str, Mapping[str, Any]] | None,
    ) -> set[str]:
        """Ids of acknowledged writes that S3 (``remote``) or, where a local primary was
        read, ``local`` does not hold as live: what the section must find empty."""
        lost = set(missing_acked(remote, self.acked))
        if local is not None:
            lost |= set(missing_acked(local, self.acked))
        return lost

    def next_kind(self, index: int) -> str:
        """The kind of operation ``index`` (transfers on a fixed period, the rest drawn)."""
        if index % TRANSFER_EVERY == TRANSFER_EVERY - 1:
            return "transfer"
        draw = self.rng.random()
        if draw < 0.5 or not self.acked.seqs:
            return "write"
        return "read" if draw < 0.85 else "search"

    async def transfer(self) -> SyncReport:
        """The mode's transfer: sync, backup, or an S3-primary refresh."""
        if self.mode == SYNC:
            return await self.service.sync(self.user)
        if self.mode == PRIMARY:
            return await self.service.refresh(self.user)
        return await self.service.backup(self.user)

    async def step(self, index: int, phase: str) -> OpRecord:
        """Run operation ``index`` of the seeded schedule and log it."""
        return await self.do(self.next_kind(index), phase)

    async def setup(self, writes: int = 4) -> None:
        """A few writes and one transfer: the table is on S3 (and cached) before measuring."""
        for _ in range(writes):
            await self.do("write", "setup")
        await self.do("transfer", "setup")

    async def do(self, kind: str, phase: str) -> OpRecord:
        """Run one operation of ``kind`` and log it. Errors are outcomes to count, not
        crashes: the sections judge which error types were acceptable where."""
        start = time.perf_counter_ns()
        try:
            error = await self._run(kind)
        except Exception as exc:
            error = type(exc).__name__
            if not isinstance(exc, S3Error):
                self.unexpected.append(f"{kind}: {error}: {exc}"[:300])
        record = OpRecord(phase, kind, error is None, time.perf_counter_ns() - start, error)
        self.log.add(record)
        return record

    async def _run(self, kind: str) -> str | None:
        """Run one operation; None when it succeeded, else what went wrong."""
        if kind == "write":
            self.seq += 1
            doc_id = f"o{self.rng.randrange(_POOL)}"
            await self.service.add_documents(self.user, [document(doc_id, self.seq)])
            self.acked.add(doc_id, self.seq)
            return None
        if kind == "read":
            doc_id = self.rng.choice(sorted(self.acked.seqs))
            doc = await self.service.get_document(self.user, doc_id)
            if doc is None or int(doc["metadata"]["seq"]) != self.acked.seqs[doc_id]:
                # Reads must show this writer's own acknowledged writes, outage or not.
                self.wrong_reads.append(doc_id)
            return None
        if kind == "search":
            vector = [self.rng.uniform(-1, 1) for _ in range(DIM)]
            await self.service.search(self.user, vector, k=5)
            return None
        report = await self.transfer()
        if self.mode == PRIMARY:
            status = await self.service.status(self.user)
            self.stale_seen |= status.reads_may_be_stale
        return None if report.reachable else "unreachable"

    async def level(self) -> tuple[bool, int]:
        """Transfer until S3 is level with this writer; (done, attempts).

        Local-primary: sync/backup until it reaches S3 and nothing is pending. S3-primary: a
        refresh that reaches S3, then one more write that S3 takes.
        """
        svc, user = self.service, self.user
        for attempt in range(1, _LEVEL_ATTEMPTS + 1):
            try:
                report = await self.transfer()
                if report.reachable and self.mode == PRIMARY:
                    self.seq += 1
                    await svc.add_documents(user, [document("o-level", self.seq)])
                    self.acked.add("o-level", self.seq)
                    return True, attempt
                if report.reachable and (await svc.status(user)).pending_changes == 0:
                    return True, attempt
            except Exception as exc:
                if not isinstance(exc, S3Error):
                    self.unexpected.append(f"level: {type(exc).__name__}: {exc}"[:300])
            await asyncio.sleep(_LEVEL_PAUSE_S)
        return False, _LEVEL_ATTEMPTS
