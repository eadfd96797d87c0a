"""The write tier: a log and an in-memory table in front of a local Lance table.

A write is a log append, not a Lance commit::

    write -> log frame (durable; group commit) -> in-memory table -> acknowledged
    read  -> in-memory tables + Lance table, merged (newest record wins; tombstones hide)
    flush (background; by rows, bytes or age) -> one Lance version for many writes
    open  -> replay the log: segments not yet in Lance go back into memory and get flushed

Measured on the project's 2-core machine (see the README's architecture section for the
benchmark): a one-row Lance commit costs ~2-4 ms p50 and makes a version and a fragment per
write, where a log append costs ~0.01 ms plus, with ``fsync``, ~0.25 ms of fdatasync.

Ordering: a flush *freezes* the active in-memory table (later writes go to a new one and
to a new log segment), waits until every write queued before the freeze is durable, commits
the frozen rows as one Lance version, and only then drops them from memory and deletes
their segment. A reader that saw the frozen rows and then reads the new version finds the
same records twice and keeps one (same key). A crash after the commit and before the
segment is deleted is recognised at the next open (its first record is already in Lance).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from lancesync_bench.storage.doctable import DocTable
from lancesync_bench.storage.log import (
    Durability,
    WriteLog,
    decode_records,
    encode_records,
)
from lancesync_bench.storage.memtable import MemTable, RecordKey
from lancesync_bench.storage.schema import record_to_document

__all__ = ["TierLog", "TierPolicy", "WriteTier"]


class TierLog(Protocol):
    """Where the tier makes writes durable: the local :class:`WriteLog`, or the S3-primary
    mode's :class:`~lancesync_bench.storage.s3log.S3Log`."""

    @property
    def durability(self) -> str: ...

    frames: int
    flushes: int

    def append(
        self, frame: bytes, then: Callable[[], None] | None = None
    ) -> asyncio.Future[None]: ...

    def rotate(self) -> Any: ...

    async def drain(self) -> None: ...

    def remove(self, segment: Any) -> None: ...

    async def segments(self) -> list[Any]: ...

    async def read(self, segment: Any) -> list[tuple[int, bytes]]: ...

    def segment_count(self) -> int: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class TierPolicy:
    """How writes become durable and when they move into Lance.

    A flush is one Lance commit (one version, one fragment) in the background; fewer, larger
    flushes keep fragments few (reads slow down as fragments pile up, see
    :class:`~lancesync_bench.storage.doctable.MaintenancePolicy`) at the cost of more rows
    scanned exactly in memory (~0.05 ms per 1,000 rows of 384 floats).
    """

    durability: Durability = "process"
    flush_rows: int = 2_048
    flush_bytes: int = 32 << 20
    # A write reaches a Lance version within about this long even when writes are sparse, so
    # that other processes (which read the Lance table only) and crash replays stay small.
    # Each flush is a fragment the id index must then take in: fewer, larger ones cost reads
    # less (one unindexed fragment of 400 rows ~0.4 ms a read, see LocalStore).
    flush_age_s: float = 2.0

    def __post_init__(self) -> None:
        if self.flush_rows < 1 or self.flush_bytes < 1 or self.flush_age_s <= 0:
            raise ValueError(
                f"TierPolicy(flush_rows={self.flush_rows}, flush_bytes={self.flush_bytes}, "
                f"flush_age_s={self.flush_age_s}): each must be positive"
            )


@dataclass
class _Frozen:
    """Rows waiting for their Lance commit, and the log segments that hold them."""

    mem: MemTable
    segments: list[Any] = field(default_factory=list)
    attempted: bool = False


class WriteTier:
    """Durable, read-your-writes access to one local Lance table of records."""

    def __init__(
        self,
        docs: DocTable,
        folder: Path,
        *,
        dim: int,
        policy: TierPolicy | None = None,
        on_flush: Callable[[int, bool], None] | None = None,
        log: TierLog | None = None,
        commit: Callable[[pa.Table], Awaitable[Any]] | None = None,
        recheck: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``log``: where writes become durable (default: a local log in ``folder``);
        ``commit``: how a flush commits records (default: append to ``docs``); ``recheck``:
        run before asking whether an interrupted commit landed (the S3-primary mode
        refreshes its replica there, so the answer is S3's)."""
        self.docs = docs
        self.dim = dim
        self.policy = policy or TierPolicy()
        self.log: TierLog = log or WriteLog(folder, durability=self.policy.durability)
        self._commit = commit or docs.append
        self._recheck = recheck
        self._on_flush = on_flush
        # Other writers' acknowledged records not yet in a Lance version this process has
        # installed (the S3-primary mode reads them from S3's log): read, never flushed here.
        self.others: MemTable | None = None
        self.active = MemTable(dim)
        self._active_since: float | None = None
        self._frozen: list[_Frozen] = []
        self._flush_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self.lance_max_ts = -1  # the largest updated_at in the Lance table
        self.replayed_rows = 0
        self.flushes = 0
        self.flushed_rows = 0
        self.last_flush_error: str | None = None
        self.flush_failures = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Replay what the log holds beyond the Lance table, then start the flusher."""
        self.lance_max_ts = await self.docs.max_updated_at()
        replay = _Frozen(MemTable(self.dim))
        for path in await self.log.segments():
            batches = [decode_records(payload) for _, payload in await self.log.read(path)]
            batches = [b for b in batches if b.num_rows]
            if batches and not await self._committed(batches[0]):
                for batch in batches:
                    replay.mem.insert(batch)
            replay.segments.append(path)  # committed or empty ones go with the next flush
        if replay.mem.rows:
            self.replayed_rows = replay.mem.rows
            self._frozen.append(replay)
        else:
            for segment in replay.segments:
                self.log.remove(segment)
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        if self._frozen:
            self._wake.set()

    async def _committed(self, batch: pa.Table) -> bool:
        """Whether a segment's records reached Lance (a crash between commit and delete)."""
        row = batch.slice(0, 1).to_pylist()[0]
        return await self.docs.has_record(row["id"], row["updated_at"], row["origin"])

    async def close(self) -> None:
        """Flush everything to Lance and close the log (its folder is then empty)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._flusher is not None:
            # Not cancelled: a flush under way finishes its commit, then the loop ends.
            await asyncio.wait({self._flusher})
        await self.flush()
        await self.log.aclose()

    # -- writes -----------------------------------------------------------------------------

    async def write(self, records: pa.Table) -> None:
        """Make ``records`` durable in the log and visible to reads; returns when both hold."""
        if self._closed:
            raise RuntimeError("the table's write tier is closed")
        frame = encode_records(records)
        mem = self.active
        await self.log.append(frame, then=lambda: self._inserted(mem, records))

    def _inserted(self, mem: MemTable, records: pa.Table) -> None:
        mem.insert(records)
        if mem is self.active:
            if self._active_since is None:
                self._active_since = time.monotonic()
            if mem.rows >= self.policy.flush_rows or mem.bytes >= self.policy.flush_bytes:
                self._wake.set()

    def max_updated_at(self) -> int:
        """The largest ``updated_at`` this tier knows of (Lance table and memory)."""
        return max([self.lance_max_ts, *(m.max_updated_at for m in self._memtables())])

    def observe_lance(self, max_updated_at: int) -> None:
        """Records up to ``max_updated_at`` reached the Lance table by another path (sync)."""
        self.lance_max_ts = max(self.lance_max_ts, max_updated_at)

    # -- flushing ---------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        """Flush when the active rows pass a size bound (woken by the writer) or an age."""
        while not self._closed:
            timeout = self.policy.flush_age_s
            if self._active_since is not None:
                age = time.monotonic() - self._active_since
                timeout = max(0.0, self.policy.flush_age_s - age)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            if self._closed or not self._flush_due():
                continue
            try:
                await self.flush(background=True)
            except Exception as exc:  # kept in memory and in the log; retried next round
                self.flush_failures += 1
                self.last_flush_error = f"flush failed: {type(exc).__name__}: {exc}"
                await asyncio.sleep(min(5.0, 0.1 * 2 ** min(self.flush_failures, 6)))

    def _flush_due(self) -> bool:
        mem, policy = self.active, self.policy
        aged = (
            self._active_since is not None
            and time.monotonic() - self._active_since >= policy.flush_age_s
        )
        return (
            bool(self._frozen)
            or aged
            or mem.rows >= policy.flush_rows
            or (mem.bytes >= policy.flush_bytes)
        )

    async def flush(self, *, background: bool = False) -> int:
        """Commit every write acknowledged so far to Lance; returns the rows committed.

        ``background``: the flusher's own (by size or age), as opposed to one a caller asked
        for before reading the table's files (sync, backup, status, close); ``on_flush``
        gets it, so that only the flusher's commits are followed by index upkeep at once.
        """
        async with self._flush_lock:
            if self.active.rows:
                old = self.log.rotate()
                self._frozen.append(_Frozen(self.active, [old] if old is not None else []))
                self.active = MemTable(self.dim)
                self._active_since = None
            await self.log.drain()  # every frame queued before the freeze is in memory now
            committed = 0
            while self._frozen:
                frozen = self._frozen[0]
                if frozen.mem.rows:
                    records = frozen.mem.to_table()
                    # A commit interrupted after Lance took it (a cancelled task) must not
                    # be made twice: look for its first record before trying again.
                    if frozen.attempted and self._recheck is not None:
                        await self._recheck()
                    if not (frozen.attempted and await self._committed(records)):
                        frozen.attempted = True
                        await self._commit(records)
                    self.lance_max_ts = max(self.lance_max_ts, frozen.mem.max_updated_at)
                    committed += frozen.mem.rows
                    self.flushes += 1
                # No await from here on: readers never see the rows in neither place.
                self._frozen.pop(0)
                for segment in frozen.segments:
                    self.log.remove(segment)
                if frozen.mem.rows and self._on_flush is not None:
                    self._on_flush(frozen.mem.rows, background)
            self.flushed_rows += committed
            self.last_flush_error = None
            return committed

    # -- reads ------------------------------------------------------------------------------

    def adopt(self, records: pa.Table, segments: list[Any]) -> None:
        """Take over records whose writer is gone (their log ``segments`` are removed once
        they are in Lance): they are read from now on and flushed with the next flush."""
        mem = MemTable(self.dim)
        mem.insert(records)
        # As if a commit had been tried: the flush first asks whether the writer committed
        # them before it went away.
        self._frozen.append(_Frozen(mem, segments, attempted=True))
        self._wake.set()

    def records_after(self, floor: int, origin: str) -> pa.Table | None:
        """``origin``'s records newer than ``floor`` when every one of them is still in
        memory (acknowledged, in the log, in no Lance version yet); None when some may be in
        the Lance table (its newest record is newer than ``floor``): read it there."""
        if self.lance_max_ts > floor:
            return None
        mems = (self.active, *(f.mem for f in self._frozen))
        found = [t for m in mems if (t := m.records_after(floor, origin)) is not None]
        if not found:
            return pa.table({})
        return found[0] if len(found) == 1 else pa.concat_tables(found)

    def _memtables(self) -> list[MemTable]:
        mems = [self.active, *(f.mem for f in reversed(self._frozen))]
        return mems if self.others is None else [*mems, self.others]

    @staticmethod
    def _mem_winner(
        doc_id: str, mems: Sequence[MemTable]
    ) -> tuple[RecordKey, bool, MemTable] | None:
        best: tuple[RecordKey, bool, MemTable] | None = None
        for mem in mems:
            found = mem.key_of(doc_id)
            if found is not None and (best is None or found[0] > best[0]):
                best = (found[0], found[1], mem)
        return best

    async def get(self, doc_id: str) -> dict[str, Any] | None:
        """The live document with ``doc_id`` (the newest write at once), or None."""
        mems = self._memtables()
        best = self._mem_winner(doc_id, mems)
        if best is not None and best[0][0] > self.lance_max_ts:
            # Newer than anything in Lance: no table look-up needed.
            return None if best[1] else record_to_document(_row(best[2], doc_id))
        lance = await self.docs.get_record(doc_id)
        if best is not None and (lance is None or best[0] >= lance_key(lance)):
            return None if best[1] else record_to_document(_row(best[2], doc_id))
        if lance is None or lance["deleted"]:
            return None
        return record_to_document(lance)

    async def search(
        self, vector: Sequence[float] | np.ndarray, k: int, *, nprobes: int = 20
    ) -> list[dict[str, Any]]:
        """The ``k`` live documents nearest to ``vector``: the in-memory rows scanned exactly,
        merged with the index search of the Lance table."""
        query = np.asarray(vector, dtype=np.float32)
        mems = self._memtables()
        mem_hits = self._mem_nearest(query, k, mems)
        mem_hits = await self._beat_lance(mem_hits)

        def superseded(doc_id: str, key: RecordKey) -> bool:
            best = self._mem_winner(doc_id, mems)
            return best is not None and best[0] >= key

        if not any(m.rows for m in mems):
            return await self.docs.search(query, k, nprobes=nprobes)
        table_hits = await self.docs.search(query, k, nprobes=nprobes, superseded=superseded)
        merged = table_hits + [
            {**record_to_document(_row(mem, doc_id)), "distance": dist}
            for dist, doc_id, mem in mem_hits
        ]
        merged.sort(key=lambda d: d["distance"] if d.get("distance") is not None else np.inf)
        return merged[:k]

    def _mem_nearest(
        self, query: np.ndarray, k: int, mems: Sequence[MemTable]
    ) -> list[tuple[float, str, MemTable]]:
        """The ``k`` nearest in-memory records that are their id's newest in memory."""
        hits: list[tuple[float, str, MemTable]] = []
        for mem in mems:
            want = k
            while True:
                found = mem.nearest(query, want)
                kept = [
                    (d, i, mem)
                    for d, i in found
                    if (best := self._mem_winner(i, mems)) is not None and best[2] is mem
                ]
                if len(kept) >= k or len(found) < want:
                    hits += kept[:k]
                    break
                want *= 4
        hits.sort(key=lambda h: h[0])
        return hits[:k]

    async def _beat_lance(
        self, hits: list[tuple[float, str, MemTable]]
    ) -> list[tuple[float, str, MemTable]]:
        """Drop in-memory hits that an equal-or-newer Lance record replaces.

        Only records not newer than the whole Lance table need the look-up (records another
        device wrote with an older clock, pulled by sync); a local write never does.
        """
        doubtful = [
            h
            for h in hits
            if (key := h[2].key_of(h[1])) is not None and key[0][0] <= self.lance_max_ts
        ]
        if not doubtful:
            return hits
        losers = set()
        for _, doc_id, mem in doubtful:
            lance = await self.docs.get_record(doc_id)
            found = mem.key_of(doc_id)
            if lance is not None and found is not None and lance_key(lance) > found[0]:
                losers.add(doc_id)
        return [h for h in hits if h[1] not in losers]

    # -- status -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """What the tier holds and has done (for ``status()`` and the benchmark)."""
        return {
            "durability": self.log.durability,
            "memory_rows": sum(m.rows for m in self._memtables()),
            "log_segments": self.log.segment_count(),
            "log_frames": self.log.frames,
            "log_flushes": self.log.flushes,
            "lance_flushes": self.flushes,
            "lance_rows_flushed": self.flushed_rows,
            "replayed_rows": self.replayed_rows,
            "flush_failures": self.flush_failures,
            "last_flush_error": self.last_flush_error,
        }


def lance_key(record: dict[str, Any]) -> RecordKey:
    """A record row's ``(updated_at, origin)``."""
    return (record["updated_at"], record["origin"])


def _row(mem: MemTable, doc_id: str) -> dict[str, Any]:
    row = mem.record(doc_id)
    assert row is not None
    return row
