"""One user's storage, one class per storage mode.

* :class:`LocalStore` (``local_only``): a LanceDB table in the user's local folder.
* :class:`BackupStore` (``local_primary_s3_backup``): the same, plus incremental,
  crash-consistent backups of its files to S3 and point-in-time restore.
* :class:`SyncStore` (``local_primary_s3_sync``): the same, plus record-level sync with other
  devices through a shared S3 table (union of records, last writer wins per id).
* :class:`S3PrimaryStore` (``s3_primary_local_cache``): the S3 table is the truth; writes
  commit to it, reads come from a verified local replica refreshed within a staleness bound
  (or straight from S3 with the cache off).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from lancesync_bench.storage.doctable import DocTable, MaintenancePolicy
from lancesync_bench.storage.reports import StoreStatus, SyncReport
from lancesync_bench.storage.schema import TABLE_NAME, records_table, schema, tombstones_table
from lancesync_bench.storage.tier import TierPolicy, WriteTier

__all__ = ["Clock", "LocalStore", "StoreContext"]

_log = logging.getLogger("lancesync_bench.storage")


class Clock:
    """A hybrid logical clock: strictly increasing nanosecond timestamps for one writer.

    A timestamp is the wall clock's reading, unless this writer has handed out or *seen* a
    larger one (every record of the table at open, records pulled by sync, versions a
    refresh brings in, the record a read returned): then it is one past that. So a write
    always wins over every record its writer could have read before it, whatever the
    devices' clocks say, and timestamps never repeat or go backwards within a writer (sync's
    per-writer watermarks rely on it), even when the wall clock is set back while running.
    Only writes that neither device had seen from the other (concurrent edits) are ordered
    by the wall clocks, so within the clocks' skew the later of them in real time may lose.

    ``wall`` reads the wall clock in nanoseconds: tests and the reliability suite give a
    device a skewed one.
    """

    def __init__(self, floor: int = 0, *, wall: Callable[[], int] = time.time_ns) -> None:
        self.last = floor
        self.wall = wall

    def observe(self, seen: int) -> None:
        """Move past a timestamp seen in the table (own or another device's)."""
        self.last = max(self.last, seen)

    def take(self, n: int) -> list[int]:
        """``n`` fresh timestamps, each larger than any handed out or seen before."""
        start = max(self.wall(), self.last + 1)
        self.last = start + n - 1
        return list(range(start, start + n))


@dataclass
class BackgroundRecord:
    """What the periodic sync or backup of one user did: failures counted, never dropped."""

    failures: int = 0  # since the last success
    total_failures: int = 0
    last_error: str | None = None
    last_success: float | None = None  # wall-clock time

    def record(self, error: str | None) -> None:
        """Count one background push: ``error`` None for a success."""
        if error is None:
            self.failures = 0
            self.last_success = time.time()
        else:
            self.failures += 1
            self.total_failures += 1
            self.last_error = error


class StoreContext:
    """What every store needs: paths, dimension, writer id, policy, S3 pieces."""

    def __init__(
        self,
        *,
        user_id: str,
        user_dir: Path,
        dim: int,
        writer: str,
        policy: MaintenancePolicy,
        mode: str,
        tier: TierPolicy | None = None,
        wall_clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.user_id = user_id
        self.user_dir = user_dir
        self.dim = dim
        self.writer = writer
        self.policy = policy
        self.mode = mode
        self.tier = tier or TierPolicy()
        self.wall_clock = wall_clock


class LocalStore:
    """A user's table on local disk (the ``local_only`` mode, and the base of the others)."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx
        self.table_dir = ctx.user_dir / f"{TABLE_NAME}.lance"
        self.db: Any = None
        self._table: Any = None
        self.docs = DocTable(lambda: self._table, dim=ctx.dim)
        self.clock = Clock(wall=ctx.wall_clock)
        # Local writes go through a write log and an in-memory table (see storage.tier);
        # None where writes commit elsewhere (the S3-primary mode).
        self.tier: WriteTier | None = None
        self.wal_dir = ctx.user_dir / f"{TABLE_NAME}.wal"
        # Held while records reach the Lance table by a path other than the tier (sync's
        # pulls, a restore's swap), and around commits of stores without a tier, so that a
        # sync snapshot never misses a write that took its timestamp earlier.
        self.write_lock = asyncio.Lock()
        self._appends_since_maintenance = 0
        self._maintenance: asyncio.Task[Any] | None = None
        self._indexing: asyncio.Task[None] | None = None
        self._index_again = False
        self._unindexed_rows = 0
        self._calibration: asyncio.Task[None] | None = None
        # One maintenance pass at a time: two concurrent optimize() calls on one table make
        # Lance reject the second commit (its index rewrite was preempted by the first).
        self.maintenance_lock = asyncio.Lock()
        self._prewarm: asyncio.Task[Any] | None = None
        self.last_error: str | None = None
        self.background = BackgroundRecord()  # the periodic sync or backup
        self.upkeep = BackgroundRecord()  # background maintenance, indexing, calibration

    async def open(self) -> None:
        """Open (or create) the local table and set the clock past this writer's records."""
        import lancedb
        import lancedb.index

        self.ctx.user_dir.mkdir(parents=True, exist_ok=True)
        self.docs.invalidate()  # a (re)opened table, e.g. after a restore
        self.db = await lancedb.connect_async(str(self.ctx.user_dir))
        if self.table_dir.exists():
            self._table = await self.db.open_table(TABLE_NAME)
        else:
            self._table = await self.db.create_table(TABLE_NAME, schema=schema(self.ctx.dim))
            await self._table.create_index("id", config=lancedb.index.BTree())
        self.tier = self._new_tier()
        await self.tier.open()  # replays what a crash left in the log
        self.clock.observe(self.tier.max_updated_at())
        self.load_search_params()
        self.start_prewarm()
        await self.calibrate_when_due()
        await self._reshape_on_open()

    def _new_tier(self, **where: Any) -> WriteTier:
        """The write tier over ``self.docs`` (``where``: the S3-primary mode's log and
        commit path; by default a local log in ``wal_dir``)."""
        return WriteTier(
            self.docs,
            self.wal_dir,
            dim=self.ctx.dim,
            policy=self.ctx.tier,
            on_flush=self._after_write,
            **where,
        )

    async def _reshape_on_open(self) -> None:
        """Bring a neglected table back to shape without being asked: compact one left with
        many small fragments (an older version's per-write commits, a writer that crashed
        again and again before its maintenance came due). In the background: reads go on
        meanwhile. (Rows a crash left in the log come back through the flusher, whose
        commits join the id index at once.)"""
        if await self.docs.fragment_count() >= self.ctx.policy.max_flushes:
            self._appends_since_maintenance = 0
            self._maintenance = asyncio.get_running_loop().create_task(self._maintain_quietly())

    def start_prewarm(self) -> None:
        """Load the table's indexes into the cache in the background (see the policy).

        In the background so that opening stays fast: the first reads run meanwhile, at the
        speed they would have had without it.
        """
        if not self.ctx.policy.prewarm_indexes:
            return

        async def prewarm() -> None:
            try:
                await self.docs.prewarm()
            except Exception as exc:  # a cache hint: reads work without it
                self._upkeep_failed("index prewarm", exc)

        self._prewarm = asyncio.get_running_loop().create_task(prewarm())

    async def _init_clock(self, docs: DocTable) -> None:
        self.clock.observe(await docs.max_updated_at())

    @property
    def table(self) -> Any:
        """The LanceDB table reads and writes use."""
        return self._table

    async def connection(self) -> Any:
        """The user's LanceDB connection (local folder)."""
        return self.db

    # -- writes -----------------------------------------------------------------------------

    async def _commit(self, records: pa.Table) -> None:
        """Commit records where this mode keeps them (stores without a write tier)."""
        await self.docs.append(records)

    async def _write(self, build: Callable[[list[int]], pa.Table], n: int) -> int:
        """Build records with ``n`` fresh timestamps and write them; returns how many.

        Through the tier, taking the timestamps and queueing the log frame happen with no
        await in between (so a flush never misses a write with an earlier timestamp), and
        concurrent writers then share a log flush. Without it, under the write lock.
        """
        if self.tier is not None:
            stamps = self.clock.take(n)
            records = build(stamps)
            await self.tier.write(records)
        else:
            async with self.write_lock:
                stamps = self.clock.take(n)
                records = build(stamps)
                await self._commit(records)
            self._after_write()
        if stamps:
            self._written(stamps[-1], int(records.num_rows))
        return int(records.num_rows)

    def _written(self, newest: int, rows: int) -> None:
        """An acknowledged write of ``rows`` records, the newest stamped ``newest`` (a hook
        for the modes that track what S3 does not hold yet)."""

    async def add(self, documents: Sequence[dict[str, Any]]) -> int:
        """Append the documents (replacing any with the same id); returns how many."""
        return await self._write(
            lambda stamps: records_table(
                documents, dim=self.ctx.dim, origin=self.ctx.writer, timestamps=stamps
            ),
            len(documents),
        )

    async def import_table(self, table: pa.Table) -> int:
        """Append a whole Arrow table of documents (one log frame); returns how many."""
        from lancesync_bench.storage.bulk import records_from_arrow

        return await self._write(
            lambda stamps: records_from_arrow(
                table, dim=self.ctx.dim, origin=self.ctx.writer, timestamps=stamps
            ),
            table.num_rows,
        )

    async def delete(self, ids: Sequence[str]) -> int:
        """Append tombstones for ``ids``; returns how many."""
        ids = list(ids)
        if not ids:
            return 0
        return await self._write(
            lambda stamps: tombstones_table(
                ids, dim=self.ctx.dim, origin=self.ctx.writer, timestamps=stamps
            ),
            len(ids),
        )

    async def flush(self) -> None:
        """Move every acknowledged write from the log into the Lance table now."""
        if self.tier is not None:
            await self.tier.flush()

    # -- reads ------------------------------------------------------------------------------

    async def read_docs(self) -> DocTable:
        """The table reads go to (a hook for the S3-primary staleness check)."""
        return self.docs

    async def get(self, doc_id: str) -> dict[str, Any] | None:
        """The live document, or None (the newest acknowledged write, always)."""
        docs = await self.read_docs()
        if self.tier is not None:
            return await self.tier.get(doc_id)
        return await docs.get(doc_id)

    async def search(self, vector: Sequence[float], k: int) -> list[dict[str, Any]]:
        """The ``k`` nearest live documents."""
        docs = await self.read_docs()
        if self.tier is not None:
            return await self.tier.search(vector, k)
        return await docs.search(vector, k)

    # -- maintenance ------------------------------------------------------------------------

    def _after_write(self, rows: int = 0, background: bool = False) -> None:
        """Count a Lance append (a tier flush of ``rows``, a sync pull, a direct commit);
        compact when due.

        With a write tier, each flush is one fragment of many rows, and maintenance runs every
        ``max_flushes`` of them. Between passes, the flusher's own commits (``background``)
        join the id index at once, and others once ``index_rows`` rows wait: a flush that a
        sync or backup asked for is then not followed by another version racing its upload.
        """
        self._appends_since_maintenance += 1
        self._unindexed_rows += rows
        policy = self.ctx.policy
        due = policy.max_flushes if self.tier is not None else policy.max_fragments
        idle = self._maintenance is None or self._maintenance.done()
        if self._appends_since_maintenance >= due and idle:
            self._appends_since_maintenance = 0
            self._unindexed_rows = 0
            self._maintenance = asyncio.get_running_loop().create_task(self._maintain_quietly())
        elif (
            self.tier is not None
            and idle
            and self._unindexed_rows
            and (background or self._unindexed_rows >= policy.index_rows)
        ):
            self._unindexed_rows = 0
            self._index_flushed_rows()

    def _index_flushed_rows(self) -> None:
        """Add the rows of new fragments to the id index, in the background.

        Measured at 10k rows: 20 unindexed fragments of 400 rows made a point read 9.9 ms
        p50 (each is scanned for the id), 2.4 ms once indexed, 2.0 ms compacted; one
        unindexed fragment of 2,048 rows 3.6 ms against 1.9. The index update took 27 ms in
        a worker thread. One runs at a time; a flush during it asks for another.
        """
        if self._indexing is not None and not self._indexing.done():
            self._index_again = True
            return
        self._index_again = False

        async def index() -> None:
            try:
                async with self.maintenance_lock:
                    await self._index_new_rows()
            except Exception as exc:  # reads stay correct, only slower
                self._upkeep_failed("id index update", exc)
            if self._index_again:
                self._index_flushed_rows()

        self._indexing = asyncio.get_running_loop().create_task(index())

    async def _index_new_rows(self) -> None:
        """Add flushed rows to the id index (the S3-primary mode commits it to S3)."""
        await self.docs.index_new_rows()

    async def _maintain_quietly(self) -> None:
        try:
            await self.maintain()
        except Exception as exc:
            self._upkeep_failed("maintenance", exc)
        else:
            self.upkeep.record(None)

    def _upkeep_failed(self, what: str, exc: BaseException) -> None:
        """Record a failure of background upkeep (maintenance, index updates, calibration,
        prewarming): in ``last_error``, counted in ``status().upkeep``, and logged."""
        error = f"{what} failed: {type(exc).__name__}: {exc}"
        self.last_error = error
        self.upkeep.record(error)
        _log.warning("user %s: %s", self.ctx.user_id, error)

    async def maintain(self) -> Any:
        """Compact now: drop superseded records, merge fragments, refresh indexes."""
        await self.flush()
        await self.wait_calibration()
        async with self.maintenance_lock:
            report = await self.docs.maintain(self.ctx.policy)
        await self.calibrate_when_due()
        return report

    async def wait_calibration(self) -> None:
        """Wait for a calibration under way: it samples rows by id, which compaction moves."""
        if self._calibration is not None and not self._calibration.done():
            await asyncio.wait({self._calibration})

    # -- search accuracy --------------------------------------------------------------------

    @property
    def search_params_path(self) -> Path:
        """Where the calibrated search parameters are kept (beside the table, not in it:
        a Lance version would be shipped by sync and backup)."""
        return self.ctx.user_dir / f"{TABLE_NAME}.search.json"

    def load_search_params(self) -> None:
        """Use the parameters a previous calibration of this table saved, if any."""
        from lancesync_bench.storage.calibrate import SearchParams

        saved = read_json(self.search_params_path)
        try:
            self.docs.search_params = SearchParams.from_dict(saved) if saved else None
        except (ValueError, TypeError, KeyError):
            self.docs.search_params = None  # another format: calibrate again

    async def calibrate_when_due(self) -> None:
        """Start a calibration when the table has a vector index and no parameters yet, or
        has grown past twice the rows they were measured on (background; see
        :mod:`lancesync_bench.storage.calibrate`)."""
        if self._calibration is not None and not self._calibration.done():
            return
        table = self.docs.table
        if table is None or "://" in str(await table.uri()):
            return  # a table on S3: the exact truth would read every vector over the network
        if not any(ix.columns == ["vector"] for ix in await table.list_indices()):
            return
        params = self.docs.search_params
        if params is not None and await table.count_rows() <= 2 * params.rows:
            return

        async def run() -> None:
            from lancesync_bench.storage.calibrate import calibrate

            try:  # maintain() waits for this (row ids must hold still while sampled)
                found = await calibrate(self.docs.table, query_filter="deleted = false")
                self.docs.search_params = found
                write_json_atomic(self.search_params_path, found.as_dict())
            except Exception as exc:  # searches keep the previous parameters
                self._upkeep_failed("search calibration", exc)

        self._calibration = asyncio.get_running_loop().create_task(run())

    async def wait_idle(self) -> None:
        """Flush the write log, then wait for background maintenance and prewarming to
        finish (benchmarks call this between phases)."""
        await self.flush()
        tasks = {
            t
            for t in (self._prewarm, self._maintenance, self._indexing, self._calibration)
            if t is not None
        }
        if tasks:
            # wait() neither raises the tasks' errors (they are recorded in last_error) nor
            # their cancellation, while a cancellation of this call still propagates.
            await asyncio.wait(tasks)

    # -- sync-like calls (overridden where the mode has them) -----------------------------

    def _not_here(self, what: str) -> Exception:
        from lancesync_bench.errors import ConfigError

        return ConfigError(f"{what}() is not available in storage mode {self.ctx.mode}")

    async def sync(self) -> SyncReport:
        """Exchange changes with S3 (sync mode only)."""
        raise self._not_here("sync")

    async def backup(self) -> SyncReport:
        """Push a backup to S3 (backup mode only)."""
        raise self._not_here("backup")

    async def restore(self, version: int | None) -> SyncReport:
        """Rebuild local data from S3 (backup mode only)."""
        raise self._not_here("restore")

    async def refresh(self) -> SyncReport:
        """Refresh the cache from S3 (S3-primary mode only)."""
        raise self._not_here("refresh")

    async def status(self) -> StoreStatus:
        """Local version and counts; no remote in this mode.

        Counting documents reads the Lance table, so the write log is flushed first.
        """
        await self._flush_for_status()
        return StoreStatus(
            user_id=self.ctx.user_id,
            mode=self.ctx.mode,
            local_version=await self.docs.version(),
            remote_version=None,
            in_sync=None,
            pending_changes=0,
            last_error=self.last_error,
            documents=await self.docs.live_count(),
            write_tier=None if self.tier is None else self.tier.stats(),
            search=None if self.docs.search_params is None else self.docs.search_params.as_dict(),
            background=asdict(self.background),
            upkeep=asdict(self.upkeep),
        )

    async def _flush_for_status(self) -> None:
        await self.flush()

    async def close(self) -> None:
        """Finish background work and release the table (a prewarm still running is dropped:
        it only fills a cache that goes away with the table)."""
        if self._prewarm is not None and not self._prewarm.done():
            self._prewarm.cancel()
        if self.tier is not None:
            await self.tier.close()  # the table folder is now a plain Lance table
            self.tier = None
        await self.wait_idle()
        self._table = None
        self.db = None


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that a crash leaves either the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON state file, or {} when absent or unreadable (state is always re-derivable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
