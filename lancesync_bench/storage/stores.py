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
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lancesync_bench.storage.doctable import DocTable, MaintenancePolicy
from lancesync_bench.storage.reports import StoreStatus, SyncReport
from lancesync_bench.storage.schema import TABLE_NAME, records_table, schema, tombstones_table

__all__ = ["Clock", "LocalStore", "StoreContext"]


class Clock:
    """Strictly increasing nanosecond timestamps for one writer.

    Wall-clock based so that last-writer-wins matches what users expect across devices, and
    never repeating or going backwards within a writer, which sync's per-writer watermarks
    rely on.
    """

    def __init__(self, floor: int = 0) -> None:
        self.last = floor

    def take(self, n: int) -> list[int]:
        """``n`` fresh timestamps, each larger than any handed out before."""
        start = max(time.time_ns(), self.last + 1)
        self.last = start + n - 1
        return list(range(start, start + n))


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
    ) -> None:
        self.user_id = user_id
        self.user_dir = user_dir
        self.dim = dim
        self.writer = writer
        self.policy = policy
        self.mode = mode


class LocalStore:
    """A user's table on local disk (the ``local_only`` mode, and the base of the others)."""

    def __init__(self, ctx: StoreContext) -> None:
        self.ctx = ctx
        self.table_dir = ctx.user_dir / f"{TABLE_NAME}.lance"
        self.db: Any = None
        self._table: Any = None
        self.docs = DocTable(lambda: self._table, dim=ctx.dim)
        self.clock = Clock()
        # Held while timestamps are taken and records appended, so that a sync snapshot
        # never misses a write that took its timestamp earlier.
        self.write_lock = asyncio.Lock()
        self._appends_since_maintenance = 0
        self._maintenance: asyncio.Task[Any] | None = None
        # One maintenance pass at a time: two concurrent optimize() calls on one table make
        # Lance reject the second commit (its index rewrite was preempted by the first).
        self.maintenance_lock = asyncio.Lock()
        self._prewarm: asyncio.Task[Any] | None = None
        self.last_error: str | None = None

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
        await self._init_clock(self.docs)
        self.start_prewarm()

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
                self.last_error = f"index prewarm failed: {type(exc).__name__}: {exc}"

        self._prewarm = asyncio.get_running_loop().create_task(prewarm())

    async def _init_clock(self, docs: DocTable) -> None:
        mine = await docs.keys(where=f"origin = '{self.ctx.writer}'")
        if mine.num_rows:
            self.clock.last = max(
                self.clock.last, int(np.max(mine.column("updated_at").to_numpy()))
            )

    @property
    def table(self) -> Any:
        """The LanceDB table reads and writes use."""
        return self._table

    async def connection(self) -> Any:
        """The user's LanceDB connection (local folder)."""
        return self.db

    # -- writes -----------------------------------------------------------------------------

    async def _commit(self, records: pa.Table) -> None:
        await self.docs.append(records)

    async def add(self, documents: Sequence[dict[str, Any]]) -> int:
        """Append the documents (replacing any with the same id); returns how many."""
        async with self.write_lock:
            records = records_table(
                documents,
                dim=self.ctx.dim,
                origin=self.ctx.writer,
                timestamps=self.clock.take(len(documents)),
            )
            await self._commit(records)
        self._after_write()
        return int(records.num_rows)

    async def import_table(self, table: pa.Table) -> int:
        """Append a whole Arrow table of documents as one commit; returns how many."""
        from lancesync_bench.storage.bulk import records_from_arrow

        async with self.write_lock:
            records = records_from_arrow(
                table,
                dim=self.ctx.dim,
                origin=self.ctx.writer,
                timestamps=self.clock.take(table.num_rows),
            )
            await self._commit(records)
        self._after_write()
        return int(records.num_rows)

    async def delete(self, ids: Sequence[str]) -> int:
        """Append tombstones for ``ids``; returns how many."""
        ids = list(ids)
        if not ids:
            return 0
        async with self.write_lock:
            records = tombstones_table(
                ids, dim=self.ctx.dim, origin=self.ctx.writer, timestamps=self.clock.take(len(ids))
            )
            await self._commit(records)
        self._after_write()
        return len(ids)

    # -- reads ------------------------------------------------------------------------------

    async def read_docs(self) -> DocTable:
        """The table reads go to (a hook for the S3-primary staleness check)."""
        return self.docs

    async def get(self, doc_id: str) -> dict[str, Any] | None:
        """The live document, or None."""
        return await (await self.read_docs()).get(doc_id)

    async def search(self, vector: Sequence[float], k: int) -> list[dict[str, Any]]:
        """The ``k`` nearest live documents."""
        return await (await self.read_docs()).search(vector, k)

    # -- maintenance ------------------------------------------------------------------------

    def _after_write(self) -> None:
        self._appends_since_maintenance += 1
        if self._appends_since_maintenance >= self.ctx.policy.max_fragments and (
            self._maintenance is None or self._maintenance.done()
        ):
            self._appends_since_maintenance = 0
            self._maintenance = asyncio.get_running_loop().create_task(self._maintain_quietly())

    async def _maintain_quietly(self) -> None:
        try:
            await self.maintain()
        except Exception as exc:
            self.last_error = f"maintenance failed: {type(exc).__name__}: {exc}"

    async def maintain(self) -> Any:
        """Compact now: drop superseded records, merge fragments, refresh indexes."""
        async with self.maintenance_lock:
            return await self.docs.maintain(self.ctx.policy)

    async def wait_idle(self) -> None:
        """Wait for background maintenance and prewarming to finish (benchmarks call this
        between phases)."""
        tasks = {t for t in (self._prewarm, self._maintenance) if t is not None}
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
        """Local version and counts; no remote in this mode."""
        return StoreStatus(
            user_id=self.ctx.user_id,
            mode=self.ctx.mode,
            local_version=int(await self._table.version()),
            remote_version=None,
            in_sync=None,
            pending_changes=0,
            last_error=self.last_error,
            documents=await self.docs.live_count(),
        )

    async def close(self) -> None:
        """Finish background work and release the table (a prewarm still running is dropped:
        it only fills a cache that goes away with the table)."""
        if self._prewarm is not None and not self._prewarm.done():
            self._prewarm.cancel()
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
