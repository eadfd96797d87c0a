"""The storage modes that talk to S3: backup, multi-device sync, and S3 primary."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lancesync_bench.errors import CommitOutcomeUnknown, LanceSyncError, S3Error, S3Unavailable
from lancesync_bench.storage.doctable import DocTable, MaintenancePolicy
from lancesync_bench.storage.log import decode_records, parse_frames
from lancesync_bench.storage.memtable import MemTable
from lancesync_bench.storage.replica import BaseMoved, Replica
from lancesync_bench.storage.reports import StoreStatus, SyncReport
from lancesync_bench.storage.s3log import ADOPT_AFTER_S, S3Log
from lancesync_bench.storage.schema import TABLE_NAME, record_to_document, sql_string
from lancesync_bench.storage.stores import LocalStore, StoreContext, read_json, write_json_atomic
from lancesync_bench.storage.transfer import (
    FileInfo,
    RemoteTable,
    TransferStats,
    local_files,
    manifest_version,
    same_bytes,
)

__all__ = ["BackupStore", "S3PrimaryStore", "SyncStore"]

_log = logging.getLogger("lancesync_bench.storage")


def _report(
    op: str, ctx: StoreContext, stats: TransferStats, start: float, **extra: Any
) -> SyncReport:
    report = SyncReport(
        operation=op,
        user_id=ctx.user_id,
        mode=ctx.mode,
        files_up=stats.files_up,
        bytes_up=stats.bytes_up,
        files_down=stats.files_down,
        bytes_down=stats.bytes_down,
        requests=dict(stats.requests),
        duration_s=time.perf_counter() - start,
    )
    for key, value in extra.items():
        setattr(report, key, value)
    return report


class BackupStore(LocalStore):
    """Local-first storage with incremental, crash-consistent backups to S3."""

    def __init__(self, ctx: StoreContext, remote: RemoteTable) -> None:
        super().__init__(ctx)
        self.remote = remote
        self.state_path = ctx.user_dir / "backup-state.json"
        state = read_json(self.state_path)
        self.last_push: float | None = state.get("last_push")
        self.remote_version: int | None = state.get("remote_version")
        # Local files a finished backup put on S3 (so their records were written).
        self._confirmed: set[str] = set(state.get("confirmed", []))
        # The newest record timestamp a finished backup holds (None: not known yet).
        self.backed_up_through: int | None = state.get("backed_up_through")
        # (newest timestamp, records) of each write no finished backup holds yet; None until
        # first counted from the table (a compaction may since have merged or dropped some).
        self._unbacked: list[tuple[int, int]] | None = None

    def _written(self, newest: int, rows: int) -> None:
        """Count an acknowledged write as not yet backed up."""
        if self._unbacked is not None:
            self._unbacked.append((newest, rows))

    async def _pending(self) -> int:
        """How many records written here no finished backup holds."""
        if self._unbacked is None:
            through = -1 if self.backed_up_through is None else self.backed_up_through
            keys = await self.docs.keys(f"updated_at > {through}")
            stamps = keys.column("updated_at")
            self._unbacked = [(int(pc.max(stamps).as_py()), keys.num_rows)] if keys.num_rows else []
        return sum(rows for _, rows in self._unbacked)

    async def backup(self) -> SyncReport:
        """Upload the files S3 lacks, manifests last; report what moved.

        Offline, it returns at once with ``reachable=False``; the next call uploads
        everything pending. Safe to interrupt at any moment.
        """
        start = time.perf_counter()
        stats = TransferStats()
        await self.flush()  # every acknowledged write into a Lance version first
        # No compaction while files are listed and read: its cleanup would delete them.
        async with self.maintenance_lock:
            async with self.write_lock:
                # Every write stamped up to here is in these files (the flush above moved
                # them, oldest first), also those whose records a compaction since dropped.
                through = max(
                    await self.docs.max_updated_at(),
                    -1 if self.tier is None else self.tier.lance_max_ts,
                )
                files = local_files(self.table_dir)
            try:
                if self.remote_version is not None:
                    # S3 still ends at this device's last finished backup (a one-key listing
                    # says so): everything it holds that this backup needs is in the
                    # confirmed set, so upload the rest, manifests last. No full listing,
                    # whose cost grows with the history S3 keeps (~100 ms at 160 versions).
                    latest = await asyncio.to_thread(self.remote.latest_version, stats)
                    if latest == self.remote_version:
                        news = sorted(set(files) - self._confirmed)
                        created = await asyncio.to_thread(
                            self.remote.push, self.table_dir, news, stats, writer=self.ctx.writer
                        )
                        newest = max(created, default=latest)
                        return self._backed_up(
                            stats, start, files, newest, created=created, through=through
                        )
                # First backup, or S3 moved on (another device, an interrupted push): plan
                # from the full listing.
                remote = await asyncio.to_thread(self.remote.list_files, stats)
                new, also = self._plan_backup(files, remote)
                created = await asyncio.to_thread(
                    self.remote.push,
                    self.table_dir,
                    new,
                    stats,
                    writer=self.ctx.writer,
                    also_record=also,
                )
            except S3Unavailable as exc:
                self.last_error = str(exc)
                return _report("backup", self.ctx, stats, start, reachable=False, error=str(exc))
        remote_latest = max((v for v in map(manifest_version, remote) if v), default=None)
        return self._backed_up(stats, start, files, remote_latest, created=created, through=through)

    def _backed_up(
        self,
        stats: TransferStats,
        start: float,
        files: dict[str, int],
        remote_latest: int | None,
        *,
        created: list[int],
        through: int,
    ) -> SyncReport:
        """Record a finished backup of ``files`` (records up to ``through``); report it."""
        versions = [v for v in map(manifest_version, files) if v is not None]
        self.remote_version = max(
            [*versions, *([remote_latest] if remote_latest is not None else [])], default=None
        )
        self.last_push = time.time()
        self.last_error = None
        self._confirmed = set(files)
        self.backed_up_through = through
        if self._unbacked is not None:
            self._unbacked = [(stamp, rows) for stamp, rows in self._unbacked if stamp > through]
        self._save_state()
        return _report(
            "backup",
            self.ctx,
            stats,
            start,
            versions_created=created,
            local_version=max(versions, default=None),
            remote_version=self.remote_version,
        )

    def _plan_backup(
        self, files: dict[str, int], remote: dict[str, FileInfo]
    ) -> tuple[list[str], list[str]]:
        """Which files to upload, and which already-uploaded ones the record must list.

        * absent on S3: upload;
        * a data file of another size on S3: a damaged or cut-short copy (names are random,
          so no other writer made it): upload again;
        * a manifest S3 already has, newer than the last confirmed backup: offer it again;
          the conditional put then tells our own interrupted push (same SHA-256) from
          another device's version (a conflict);
        * on S3 but not confirmed by a finished backup: a file an interrupted backup sent;
          the record of this push lists it so readers fetch it.
        """
        confirmed_version = self.remote_version or 0
        new: list[str] = []
        also: list[str] = []
        for rel, size in files.items():
            info = remote.get(rel)
            version = manifest_version(rel)
            damaged = version is None and info is not None and info.size != size
            if info is None or damaged or (version or 0) > confirmed_version:
                new.append(rel)
            elif version is None and rel not in self._confirmed:
                also.append(rel)
        return new, also

    async def restore(self, version: int | None) -> SyncReport:
        """Rebuild the local table from the backup at ``version`` (latest when None).

        Everything is downloaded and verified into a staging folder, opened and read in full,
        and only then swapped in. An older version is restored as a new latest version, so
        history stays linear and the next backup continues it.
        """
        start = time.perf_counter()
        stats = TransferStats()
        await self.flush()  # nothing acknowledged stays in memory over the old table
        async with self.maintenance_lock:
            return await self._restore(version, stats, start)

    async def _restore(self, version: int | None, stats: TransferStats, start: float) -> SyncReport:
        staging_root = self.ctx.user_dir / f".restore-{uuid.uuid4().hex[:8]}"
        try:
            remote_files = await asyncio.to_thread(self.remote.list_files, stats)
            versions = {v for v in map(manifest_version, remote_files) if v is not None}
            if not versions:
                raise LanceSyncError(f"there is no backup for user {self.ctx.user_id!r} on S3")
            target = max(versions) if version is None else version
            if target not in versions:
                shown = sorted(versions)
                available = f"{shown[0]}..{shown[-1]}" if len(shown) > 5 else str(shown)
                raise LanceSyncError(
                    f"version {version} is not in the backup; available versions: {available}"
                )
            staging = Replica(self.remote, staging_root, dim=self.ctx.dim, writer=self.ctx.writer)
            self._link_local_files(staging.table_dir, remote_files)
            # Every version with its record: each file is checked against the SHA-256 its
            # push recorded in a manifest (an object overwritten on S3 carries no record).
            await staging.open(stats, all_versions=True)
            table = staging.table
            if target != max(versions):
                await table.checkout(target)
                await table.restore()
            rows = (await table.to_arrow()).num_rows  # reads every data file: proves them readable
            async with self.write_lock:
                if self.tier is not None:  # flushed above; open() below starts a new one
                    await self.tier.close()
                    self.tier = None
                self._table = None
                old = self.ctx.user_dir / f".old-{uuid.uuid4().hex[:8]}"
                if self.table_dir.exists():
                    os.replace(self.table_dir, old)
                os.replace(staging.table_dir, self.table_dir)
                shutil.rmtree(old, ignore_errors=True)
                await self.open()
            # Everything restored came from a finished backup: the next one sends only news.
            self._confirmed = {r for r in local_files(self.table_dir) if r in remote_files}
            self.remote_version = max(versions)
            self.backed_up_through = await self.docs.max_updated_at()
            self._unbacked = []  # the table is the backup's
            self._save_state()
        except S3Unavailable as exc:
            self.last_error = str(exc)
            return _report("restore", self.ctx, stats, start, reachable=False, error=str(exc))
        finally:
            shutil.rmtree(staging_root, ignore_errors=True)
        return _report(
            "restore",
            self.ctx,
            stats,
            start,
            records_down=rows,
            local_version=await self.docs.version(),
            remote_version=max(versions),
        )

    def _link_local_files(self, dest: Path, remote: dict[str, FileInfo]) -> None:
        """Seed the staging folder with local files (hard links) to avoid downloads.

        Only files S3 holds under the same name and size: anything else (a table this device
        made before restoring, a damaged copy) stays out of the restored table. Data file
        names are random, so name and size identify them.

        Manifests are linked only when no data file is left to download, and only those
        whose MD5 is the S3 object's ETag (a version number may name another device's
        manifest). A download is verified against the SHA-256 that the record of the
        manifest's push lists, so while anything must be downloaded every manifest is
        fetched with its record. Otherwise this spares one GET per backed-up version
        (~1 s for 160 versions on loopback).
        """
        local = local_files(self.table_dir)
        linkable = {
            rel: size
            for rel, size in local.items()
            if (info := remote.get(rel)) is not None and info.size == size
        }
        missing = [r for r in remote if manifest_version(r) is None and r not in linkable]
        for rel in linkable:
            if manifest_version(rel) is not None and (
                missing or not same_bytes(self.table_dir / rel, remote[rel])
            ):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                os.link(self.table_dir / rel, target)

    def _save_state(self) -> None:
        write_json_atomic(
            self.state_path,
            {
                "last_push": self.last_push,
                "remote_version": self.remote_version,
                "confirmed": sorted(self._confirmed),
                "backed_up_through": self.backed_up_through,
            },
        )

    async def status(self) -> StoreStatus:
        """Local and backed-up versions, and how many changes (documents added, replaced or
        deleted) no finished backup holds yet: each write counted as it is acknowledged
        (after a restart, the table's records newer than the last backup)."""
        base = await super().status()
        local = base.local_version or 0
        remote = self.remote_version or 0
        base.remote_version = self.remote_version
        base.pending_changes = await self._pending()
        base.in_sync = local == remote and base.pending_changes == 0
        base.last_push = self.last_push
        return base


class SyncStore(LocalStore):
    """Local-first storage that exchanges records with other devices through S3."""

    def __init__(self, ctx: StoreContext, remote: RemoteTable) -> None:
        super().__init__(ctx)
        self.replica = Replica(remote, ctx.user_dir / "remote", dim=ctx.dim, writer=ctx.writer)
        self.replica_policy = MaintenancePolicy(
            max_fragments=ctx.policy.max_fragments,
            vector_index_min_rows=10**12,  # nobody searches the shared copy
            keep_tombstones=True,
            cleanup_older_than=ctx.policy.cleanup_older_than,
        )
        self.state_path = ctx.user_dir / "sync-state.json"
        state = read_json(self.state_path)
        self.last_push: float | None = state.get("last_push")
        self.last_pull: float | None = state.get("last_pull")
        # Watermarks survive compaction: once this device's records up to `pushed` reached S3,
        # and other devices' records up to `pulled[origin]` arrived here, they are never
        # exchanged again, even after maintenance removed the losing ones from a table
        # (re-sending a removed record could bring back a deleted document).
        self.pushed: int = int(state.get("pushed", -1))
        self.pulled: dict[str, int] = {str(k): int(v) for k, v in state.get("pulled", {}).items()}
        self.pushed_remote_version: int = int(state.get("pushed_remote_version", 0))
        self._replica_open = False
        # Kept between syncs so that one with nothing to do reads no table: the newest
        # timestamp per origin in the replica and (other devices') in the local table, and
        # the newest this device wrote (None: not read yet).
        self._remote_marks: dict[str, int] | None = None
        self._local_marks: dict[str, int] | None = None
        self._own_newest_stamp: int | None = None
        # One sync at a time per device: two at once would both open the replica (the second
        # fails creating a table the first made) or push the same records twice.
        self.sync_lock = asyncio.Lock()
        # The state file's write, started as a sync returns and waited for by the next one
        # (and by wait_idle/close): see _persist_state.
        self._state_write: asyncio.Task[None] | None = None

    def _written(self, newest: int, rows: int) -> None:
        """Note the newest timestamp this device wrote (a sync with nothing newer than its
        last push skips looking for its records)."""
        if self._own_newest_stamp is not None:
            self._own_newest_stamp = max(self._own_newest_stamp, newest)

    async def _watermarks(
        self, docs: DocTable, known: dict[str, int] | None = None
    ) -> dict[str, int]:
        """The newest timestamp per origin in ``docs``: with ``known`` marks, only the
        records newer than those are read (what arrived since), and the marks never go
        back (a compaction that dropped an origin's newest, superseded record does not
        make it unseen)."""
        marks = dict(known or {})
        where = None
        if known:
            newer = [f"(origin = {sql_string(o)} AND updated_at > {m})" for o, m in known.items()]
            others = ", ".join(sql_string(o) for o in known)
            where = " OR ".join([*newer, f"origin NOT IN ({others})"])
        for origin, mark in _newest_per_origin(await docs.keys(where)).items():
            marks[origin] = max(marks.get(origin, -1), mark)
        return marks

    async def _own_newest(self) -> int:
        """The newest timestamp this device wrote (read from the table once per open)."""
        if self._own_newest_stamp is None:
            keys = await self.docs.keys(f"origin = {sql_string(self.ctx.writer)}")
            stamps = keys.column("updated_at")
            self._own_newest_stamp = int(pc.max(stamps).as_py()) if keys.num_rows else -1
        return self._own_newest_stamp

    async def sync(self) -> SyncReport:
        """Push this device's new records, pull other devices' new records.

        Convergence: both sides end up holding the union of records, and every replica picks
        the same winner per id. Offline, it returns at once with ``reachable=False``.

        Its cost follows what changed: one one-key LIST when nothing did (per-origin marks
        are kept between syncs, so no table is scanned), and only records newer than the
        marks are read when something did.
        """
        async with self.sync_lock:
            return await self._sync()

    async def _sync(self) -> SyncReport:
        start = time.perf_counter()
        stats = TransferStats()
        saved = self._saved_state()
        try:
            if not self._replica_open:
                await self.flush()
                await self.replica.open(stats)
                self._replica_open = True
                changed, mine = True, None
                pushed = None
            else:
                changed, mine, pushed = await self._push_ahead(stats)
                if pushed is None and self.replica.s3_went_back():
                    _log.warning(
                        "user %s: the S3 table holds an older version than this device's copy "
                        "(wiped or replaced); opening the copy again on what S3 holds",
                        self.ctx.user_id,
                    )
                    await self.replica.open(stats)
                    changed, mine = True, None
            if (self.replica.remote_version or 0) < self.pushed_remote_version:
                self.pushed = -1  # the S3 table was replaced: what it holds is all that counts
                self._remote_marks = mine = None
            if changed or self._remote_marks is None:
                self._remote_marks = await self._watermarks(self.replica.docs, self._remote_marks)
            if mine is None:
                mine = await self._unpushed()
            if pushed is None:
                pushed = await self._push_mine(mine, stats)
            self.pushed_remote_version = self.replica.remote_version or 0
            pulled = await self._pull_incoming()
            self.last_pull = time.time()
            if (changed or pushed) and await self.replica.docs.needs_maintenance(
                self.replica_policy
            ):
                await self.replica.commit(
                    lambda d: d.maintain(self.replica_policy), stats, may_delete=True
                )
        except S3Unavailable as exc:
            self.last_error = str(exc)
            return _report("sync", self.ctx, stats, start, reachable=False, error=str(exc))
        self.last_error = None
        if self._saved_state() != saved:
            await self._state_written()  # one write at a time; the last one's error is raised
            self._persist_state()
        return _report(
            "sync",
            self.ctx,
            stats,
            start,
            records_up=pushed,
            records_down=pulled,
            local_version=await self.docs.version(),
            remote_version=self.replica.remote_version,
        )

    async def _push_ahead(self, stats: TransferStats) -> tuple[bool, pa.Table, int | None]:
        """A sync's first steps on an open replica: (changed, this device's unpushed
        records, how many went up; None when the push is still to do).

        S3's newest version is asked for (one one-key LIST) while this device's records are
        read, committed to the replica and their data files uploaded; the manifest follows
        once the answer shows S3 still at the replica's version, the usual case (nothing
        came from elsewhere since the last sync). A one-document push thus waits for two
        round trips in a row, not three. When S3 moved on, the commit is withdrawn before
        its manifest and the answer serves as the refresh's listing; so it does with
        nothing to push.
        """
        listing = self.replica.ask_latest(stats)
        pulls = self.replica.pulls
        mine = await self._unpushed()
        if self._remote_marks is not None and self._not_on_s3(mine).num_rows:
            with contextlib.suppress(BaseMoved):
                pushed = await self._push_mine(mine, stats, expect_base=listing)
                # A manifest PUT that lost a race pulled the winners and committed again.
                return self.replica.pulls != pulls, mine, pushed
        changed = await self.replica.refresh(stats, listed=await asyncio.wrap_future(listing))
        return changed, mine, None

    def _not_on_s3(self, mine: pa.Table) -> pa.Table:
        """``mine`` less the records S3 holds by now (by this device's mark on S3)."""
        assert self._remote_marks is not None
        if not mine.num_rows:
            return mine
        on_s3 = self._remote_marks.get(self.ctx.writer, -1)
        return mine.filter(pc.greater(mine.column("updated_at"), on_s3))

    async def _unpushed(self) -> pa.Table:
        """This device's records newer than what S3 holds of them as last seen (none read
        when nothing newer was written).

        When all of them are still in the write tier's memory (the usual case between two
        syncs), they are taken from there: no flush into the local table and no scan of it
        on the sync's path (a one-document sync spent ~40 % of its time on those); the tier
        flushes them later, as it does any write. Otherwise the log is flushed and the
        table read.
        """
        me = self.ctx.writer
        floor = max((self._remote_marks or {}).get(me, -1), self.pushed)
        if self.tier is not None:
            held = self.tier.records_after(floor, me)
            if held is not None:
                return held
        await self.flush()
        if await self._own_newest() <= floor:
            return pa.table({})
        async with self.write_lock:
            return await self.docs.records(f"origin = {sql_string(me)} AND updated_at > {floor}")

    async def _push_mine(
        self,
        mine: pa.Table,
        stats: TransferStats,
        *,
        expect_base: Future[int | None] | None = None,
    ) -> int:
        """Commit ``mine``, less what S3 holds by now, to the shared table; how many.
        ``expect_base``: see :meth:`Replica.commit` (raises :class:`BaseMoved`)."""
        assert self._remote_marks is not None
        me = self.ctx.writer
        mine = self._not_on_s3(mine)
        if not mine.num_rows:
            return 0
        pulls = self.replica.pulls
        await self.replica.commit(lambda d: d.append(mine), stats, expect_base=expect_base)
        # ``mine`` is this device's records only: their newest is a max (a group-by of one
        # row took 0.26 ms, the max 0.01 ms, timeit).
        newest = int(pc.max(mine.column("updated_at")).as_py())
        self.pushed = max(self.pushed, newest)
        self._remote_marks[me] = max(self._remote_marks.get(me, -1), newest)
        if self.replica.pulls != pulls:  # it lost a race: other devices' versions came in
            self._remote_marks = await self._watermarks(self.replica.docs, self._remote_marks)
        self.last_push = time.time()
        return int(mine.num_rows)

    async def _pull_incoming(self) -> int:
        """Append other devices' records newer than this device holds; how many."""
        assert self._remote_marks is not None
        if self._local_marks is None:
            self._local_marks = await self._watermarks(self.docs)
        floors = {o: max(m, self.pulled.get(o, -1)) for o, m in self._local_marks.items()}
        floors.update({o: w for o, w in self.pulled.items() if o not in floors})
        incoming = await self._incoming(self._remote_marks, floors)
        if incoming.num_rows:
            async with self.write_lock:
                await self.docs.append(incoming)
            arrived = _newest_per_origin(incoming)
            newest = max(arrived.values())
            if self.tier is not None:
                self.tier.observe_lance(newest)
            self.clock.observe(newest)  # later local writes win over what just arrived
            for origin, mark in arrived.items():
                self._local_marks[origin] = max(self._local_marks.get(origin, -1), mark)
            self._after_write(incoming.num_rows)
        for origin, mark in self._remote_marks.items():
            if origin != self.ctx.writer:
                self.pulled[origin] = max(self.pulled.get(origin, -1), mark)
        return int(incoming.num_rows)

    def _state(self) -> dict[str, Any]:
        return {
            "last_push": self.last_push,
            "last_pull": self.last_pull,
            "pushed": self.pushed,
            "pulled": dict(self.pulled),
            "pushed_remote_version": self.pushed_remote_version,
        }

    def _persist_state(self) -> None:
        """Write the state file (with fsync) in a thread while the sync returns: what S3
        holds was settled by the push; the file only spares the next open from deriving the
        marks again, and nothing reads it while this process runs. The next sync that
        changes the state, and wait_idle/close, wait for the write (a failure surfaces
        there); a sync with nothing new does not. It took 0.6-1.1 ms of a one-document
        sync's path."""
        state = self._state()
        self._state_write = asyncio.get_running_loop().create_task(
            asyncio.to_thread(write_json_atomic, self.state_path, state)
        )

    async def _state_written(self) -> None:
        """Wait for the state file's write a sync started (its error is raised here)."""
        write, self._state_write = self._state_write, None
        if write is not None:
            await write

    async def wait_idle(self) -> None:
        await super().wait_idle()
        await self._state_written()

    def _saved_state(self) -> dict[str, Any]:
        """The state that matters for correctness (the times are kept with the next change)."""
        return {k: v for k, v in self._state().items() if not k.startswith("last_")}

    async def _incoming(
        self, remote_marks: dict[str, int], local_marks: dict[str, int]
    ) -> pa.Table:
        others = [
            o
            for o in remote_marks
            if o != self.ctx.writer and remote_marks[o] > local_marks.get(o, -1)
        ]
        if not others:
            return pa.table({})
        clause = " OR ".join(
            f"(origin = {sql_string(o)} AND updated_at > {local_marks.get(o, -1)})" for o in others
        )
        return await self.replica.docs.records(clause)

    async def status(self) -> StoreStatus:
        """Local and remote versions and how many of this device's records are unpushed."""
        base = await super().status()
        keys = await self.docs.keys(
            f"origin = {sql_string(self.ctx.writer)} AND updated_at > {self.pushed}"
        )
        pending = keys.num_rows
        base.remote_version = self.replica.remote_version
        base.pending_changes = pending
        base.in_sync = pending == 0 and self._replica_open
        base.reachable = None if not self._replica_open else self.last_error is None
        base.last_push, base.last_pull = self.last_push, self.last_pull
        return base


# The share of the staleness bound after which a refresh starts in the background: late
# enough to add a quarter to the refresh LISTs of steady traffic, early enough that a
# refresh (10-15 ms on loopback, a few round trips elsewhere) ends well before the bound.
REFRESH_AHEAD = 0.75


class S3PrimaryStore(LocalStore):
    """S3 holds the table; a verified local replica serves reads within a staleness bound.

    With the cache on, writes go through the write tier with S3 as its log
    (:mod:`lancesync_bench.storage.s3log`): a write is one PUT of a log object, readable at
    once by this instance (in memory) and by others at their next refresh (which reads the
    log objects they lack); the tier folds them into Lance versions in the background,
    committed through the replica. Without a cache, each write is a LanceDB commit to S3.
    """

    def __init__(
        self,
        ctx: StoreContext,
        remote: RemoteTable,
        *,
        cache: bool,
        staleness_ms: int,
        connect_s3: Callable[[], Any],
    ) -> None:
        super().__init__(ctx)
        self.cache = cache
        self.staleness_s = staleness_ms / 1000.0
        self.replica = Replica(remote, ctx.user_dir / "cache", dim=ctx.dim, writer=ctx.writer)
        self._connect_s3 = connect_s3
        self._s3_db: Any = None
        self.stale = False
        self.last_refresh_report: SyncReport | None = None
        # The S3 log (cache on): this writer's objects, and the ones of others read so far.
        self.wal: S3Log | None = None
        self._others: dict[str, pa.Table] = {}  # log object key -> its records
        self._adopted: set[str] = set()  # other writers' objects taken over (see s3log)
        # A refresh started once the view is this share of the staleness bound old, so that
        # reads and writes rarely wait for one (see _fresh_view); 0 turns it off.
        self.refresh_ahead = REFRESH_AHEAD
        self._ahead: asyncio.Task[Any] | None = None

    async def open(self) -> None:
        """Open the replica (pulling what it lacks) or, without a cache, the S3 table itself.

        With the cache, this writer's log objects that no Lance version holds yet (a crash
        before their flush) are replayed, and other writers' are read.
        """
        stats = TransferStats()
        if self.cache:
            self.wal = S3Log(
                self.replica.remote, f"{self.replica.remote.sidecar_key}.wal", self.ctx.writer
            )
            # The other writers' log before S3's versions, as in refresh: a writer commits a
            # version and then deletes the objects it folded in, so what is missing from the
            # log read first is in a version the later listing finds. The other order can
            # miss both (a fold landing between the two reads).
            others, orphans = await self._fetch_others(stats)
            await self.replica.open(stats)
            self._table = self.replica.table
            self.docs = self.replica.docs
            self.tier = self._new_tier(
                log=self.wal, commit=self._commit_flush, recheck=self._recheck
            )
            await self.tier.open()
            self._take_over(orphans)
            self._apply_others(others)
        else:
            import lancedb.index

            from lancesync_bench.storage.schema import schema

            self._s3_db = await self._connect_s3()
            # Other backend instances write this S3 table directly: no key directory.
            self.docs = DocTable(lambda: self._table, dim=self.ctx.dim, sole_writer=False)
            try:
                self._table = await self._s3_db.open_table(TABLE_NAME)
            except (ValueError, FileNotFoundError):
                self._table = await self._s3_db.create_table(
                    TABLE_NAME, schema=schema(self.ctx.dim)
                )
                await self._table.create_index("id", config=lancedb.index.BTree())
        await self._init_clock(self.docs)
        if self.tier is not None:
            self.clock.observe(self.tier.max_updated_at())
        if self.cache:  # without a cache the indexes are on S3: load them as reads need them
            self.load_search_params()
            self.start_prewarm()
            await self.calibrate_when_due()

    async def connection(self) -> Any:
        """The user's S3 connection (the primary)."""
        if self._s3_db is None:
            self._s3_db = await self._connect_s3()
        return self._s3_db

    async def _write(self, build: Callable[[list[int]], pa.Table], n: int) -> int:
        """Make ``n`` freshly stamped records durable on S3: with the cache, one log object
        through the write tier; without it, a LanceDB commit to the S3 table."""
        if self.tier is not None:
            # One PUT of a log object (see storage.s3log). Writes of different instances
            # do not contend for anything on S3, so their order is the clock's: each write
            # is stamped past everything this instance has seen. A view older than the
            # staleness bound is refreshed first, so a write always outranks every write
            # S3 acknowledged more than the bound before it, whatever the clocks say
            # (only writes closer in time than that, unseen by each other, are ordered by
            # the instances' clocks). Within the bound a write is that one PUT.
            await self._fresh_view()
            self.clock.observe(self.replica.newest_seen)
        elif self.cache:
            raise RuntimeError("the user's store is closed")
        try:
            if self.tier is not None:
                written = await super()._write(build, n)
            else:  # no cache: a LanceDB commit straight to the S3 table
                async with self.write_lock:
                    records = build(self.clock.take(n))
                    await self.docs.append(records)
                    written = int(records.num_rows)
                self._after_write()
        except CommitOutcomeUnknown as exc:
            self.last_error = f"write outcome unknown: {exc}"
            raise CommitOutcomeUnknown(
                f"write of {n} document(s) may or may not be on S3: {exc}"
            ) from exc
        except S3Error as exc:
            self.last_error = f"write not committed: {exc}"
            # Same class (S3Unavailable stays S3Unavailable), a message that says the
            # outcome: S3 does not hold the write.
            raise type(exc)(
                f"write of {n} document(s) was not committed (nothing was written): {exc}"
            ) from exc
        self.last_error = None
        return written

    async def _commit_flush(self, records: pa.Table) -> None:
        """The tier's flush: one Lance version through the replica (conflict-safe)."""
        await self.replica.commit(lambda docs: docs.append(records), TransferStats())
        self._table = self.replica.table

    async def _recheck(self) -> None:
        """Before asking whether an interrupted flush landed: see what S3 holds now."""
        await self.replica.refresh(TransferStats())
        self._table = self.replica.table

    async def _index_new_rows(self) -> None:
        """Add flushed rows to the id index, committed to S3 like any other version."""
        if not self.cache:
            return
        await self.replica.commit(lambda docs: docs.index_new_rows(), TransferStats())
        self._table = self.replica.table

    async def _read_others(self, stats: TransferStats) -> dict[str, pa.Table]:
        """Other writers' log objects: one LIST of the writers (one more per other writer
        with objects), then a GET of each object not read before.

        Objects older than ``ADOPT_AFTER_S`` lost their writer: the tier takes them over
        (they are read at once and folded into Lance by the next flush).
        """
        others, orphans = await self._fetch_others(stats)
        self._take_over(orphans)
        return others

    async def _fetch_others(
        self, stats: TransferStats
    ) -> tuple[dict[str, pa.Table], dict[str, pa.Table]]:
        """The S3 reads of :meth:`_read_others`: the current objects of other writers, and
        those whose writer is gone (see :meth:`_take_over`), each key with its records."""
        assert self.wal is not None
        wal = self.wal
        listing, lists = await asyncio.to_thread(wal.list_others)
        stats.count("LIST", lists)
        now = time.time()
        current: dict[str, pa.Table | None] = {}
        adopt: list[str] = []
        listed = set()
        for obj in listing:
            listed.add(obj.key)
            if obj.key in wal.mine or obj.key in self._adopted:
                continue  # held by the tier already
            if now - obj.modified >= ADOPT_AFTER_S:
                adopt.append(obj.key)
            else:
                current[obj.key] = self._others.get(obj.key)
        self._adopted &= listed
        wanted = [k for k, v in current.items() if v is None] + adopt
        read: dict[str, pa.Table] = {}
        for start in range(0, len(wanted), 8):
            chunk = wanted[start : start + 8]
            stats.count("GET", len(chunk))
            tables = await asyncio.gather(*(self._read_object(k, stats) for k in chunk))
            read.update(zip(chunk, tables, strict=True))
        others = {k: (v if v is not None else read[k]) for k, v in current.items()}
        return others, {key: read[key] for key in adopt}

    def _take_over(self, orphans: dict[str, pa.Table]) -> None:
        """Give the tier the log objects whose writer is gone (folded in by its next flush)."""
        assert self.tier is not None
        for key, records in orphans.items():
            if not records.num_rows:
                continue  # gone meanwhile: its writer folded it in after all
            _log.info("taking over log object %s (its writer is gone)", key)
            self.tier.adopt(records, [key])
            self._adopted.add(key)

    async def _read_object(self, key: str, stats: TransferStats) -> pa.Table:
        assert self.wal is not None
        data = await asyncio.to_thread(self.wal.get, key)
        if data is None:  # folded into a version (which the refresh then installs), deleted
            return pa.table({})
        stats.down(len(data))
        frames = parse_frames(data, f"s3://{self.wal.remote.bucket}/{key}")
        tables = [decode_records(payload) for _, payload in frames]
        tables = [t for t in tables if t.num_rows]
        return pa.concat_tables(tables) if tables else pa.table({})

    def _apply_others(self, others: dict[str, pa.Table]) -> None:
        """Show reads the other writers' records just read (a new in-memory table when the
        set of objects changed)."""
        assert self.tier is not None
        if others.keys() == self._others.keys():
            return
        self._others = others
        tables = [t for t in others.values() if t.num_rows]
        if not tables:
            self.tier.others = None
            return
        mem = MemTable(self.ctx.dim)
        for table in tables:
            mem.insert(table)
        self.tier.others = mem
        self.clock.observe(mem.max_updated_at)

    async def get(self, doc_id: str) -> dict[str, Any] | None:
        """The live document, or None; its timestamp joins what this instance has seen."""
        if self.tier is not None:
            return await super().get(doc_id)
        record = await (await self.read_docs()).get_record(doc_id)
        if record is None:
            return None
        self.clock.observe(int(record["updated_at"]))
        return None if record["deleted"] else record_to_document(record)

    async def read_docs(self) -> DocTable:
        """The replica, refreshed first when its view is older than the staleness bound."""
        if self.cache:
            await self._fresh_view()
        return self.docs

    async def _fresh_view(self) -> None:
        """Make this instance's view of S3 younger than the staleness bound before a read
        or write: refresh when it is older, after waiting for a refresh already under way.

        Once the view is :data:`REFRESH_AHEAD` of the bound old, a refresh starts in the
        background, so that a caller rarely waits for one: under sustained writes, the
        writes that waited for a refresh (one a bound, 1.2 % of them) were 15.5 ms at p50
        against 6.3 ms, and half of the writes above p99. The price: under steady traffic
        one refresh (2 LISTs) every 0.75 bound instead of every bound. (Tried before the
        refresh's listing took no lock when nothing changed, a refresh ahead made p99
        worse: the refreshes competed with the flushes for the replica's lock.)
        """
        age = time.monotonic() - self.replica.last_refresh
        ahead = self._ahead if self._ahead is not None and not self._ahead.done() else None
        if age >= self.staleness_s:
            if ahead is not None:
                await asyncio.shield(ahead)
                if time.monotonic() - self.replica.last_refresh < self.staleness_s:
                    return
            await self.refresh()
        elif self.refresh_ahead and ahead is None and age >= self.staleness_s * self.refresh_ahead:
            self._ahead = asyncio.get_running_loop().create_task(self._refresh_in_background())

    async def _refresh_in_background(self) -> None:
        try:
            await self.refresh()  # S3 unreachable: recorded by refresh itself
        except Exception as exc:
            self._upkeep_failed("refresh ahead of the staleness bound", exc)

    async def refresh(self) -> SyncReport:
        """Check S3 for newer versions and pull them into the cache."""
        start = time.perf_counter()
        stats = TransferStats()
        began = time.monotonic()
        try:
            # The log first: an object missing from it was folded into a version that the
            # manifest listing after it then finds (the writer commits, then deletes).
            others = await self._read_others(stats) if self.tier is not None else None
            await self.replica.refresh(stats)
            # The view is as old as its first listing (the log's), not its last.
            self.replica.last_refresh = min(self.replica.last_refresh, began)
        except S3Unavailable as exc:
            self.stale = True
            self.last_error = str(exc)
            # Serve the cache; try S3 again after another staleness interval.
            self.replica.last_refresh = time.monotonic()
            return _report("refresh", self.ctx, stats, start, reachable=False, error=str(exc))
        self.stale = False
        self.last_error = None
        self._table = self.replica.table
        self.clock.observe(self.replica.newest_seen)
        if self.tier is not None and others is not None:
            self.tier.observe_lance(self.replica.newest_seen)
            self._apply_others(others)
        report = _report(
            "refresh", self.ctx, stats, start, remote_version=self.replica.remote_version
        )
        self.last_refresh_report = report
        return report

    async def maintain(self) -> Any:
        """Compact through the replica so that the result is committed to S3."""
        await self.flush()
        await self.wait_calibration()
        async with self.maintenance_lock:
            if not self.cache:
                return await self.docs.maintain(self.ctx.policy)
            # Writes wait while the replica is locked: the commit holds it for what must
            # reach S3 (dead records dropped, the rewrite recorded, index deltas). The rest runs
            # after it without that lock: old local versions are cleaned up, and the
            # indexes are loaded into the cache.
            # The fragments are rewritten and uploaded before that, also without the lock
            # (storage.compaction): the commit then only records the rewrite.
            # Index deltas merge every 4th pass: each pass's files go to S3 inside the commit,
            # and a merge of every delta grows with the rows since the index was built.
            committed = dataclasses.replace(
                self.ctx.policy,
                cleanup=False,
                prewarm_indexes=False,
                index_delta_segments=max(4, self.ctx.policy.index_delta_segments),
            )
            stats = TransferStats()
            prepared = await self.replica.prepare_compaction(stats)
            try:
                report = await self.replica.commit(
                    lambda d: d.maintain(committed, prepared), stats, uploaded=prepared
                )
            finally:
                if prepared is not None:
                    prepared.discard()
            await self.replica.cleanup(self.ctx.policy.cleanup_older_than)
        if self.ctx.policy.prewarm_indexes:
            await self.docs.prewarm()
        await self.calibrate_when_due()
        return report

    async def wait_idle(self) -> None:
        """Also wait for a background refresh and until the flushed log objects are deleted
        from S3."""
        if self._ahead is not None:
            await asyncio.wait({self._ahead})
        await super().wait_idle()
        if self.wal is not None:
            await self.wal.settle()

    async def _flush_for_status(self) -> None:
        """Flush before counting; with S3 unreachable, count what Lance holds and say so
        (the log objects on S3 keep the rest)."""
        try:
            await self.flush()
        except S3Unavailable as exc:
            self.stale = True
            self.last_error = f"flush before status failed: {exc}"

    async def close(self) -> None:
        """Flush and release. With S3 unreachable the flush cannot commit: the writes stay
        in their log objects on S3 (acknowledged writes are never only in memory here),
        and the next open folds them in."""
        if self._ahead is not None:
            await asyncio.wait({self._ahead})
        try:
            await super().close()
        except S3Unavailable as exc:
            _log.warning(
                "user %s: closed with writes still in the S3 log (flush failed: %s)",
                self.ctx.user_id,
                exc,
            )
            self.tier = None
            self._table = None

    async def status(self) -> StoreStatus:
        """Cache and S3 versions, and whether reads may be stale.

        Without a cache the S3 version is asked of S3 (a one-key listing): the opened table
        is a view that other instances' commits move past.
        """
        base = await super().status()
        if self.cache:
            base.remote_version = self.replica.remote_version
        else:
            try:
                base.remote_version = await asyncio.to_thread(
                    self.replica.remote.latest_version, TransferStats()
                )
            except S3Unavailable as exc:
                self.stale = True
                base.last_error = self.last_error = str(exc)
            else:
                self.stale = False
        base.in_sync = (base.local_version == base.remote_version) and not self.stale
        base.pending_changes = 0  # every acknowledged write is on S3
        base.reads_may_be_stale = self.stale
        base.reachable = not self.stale
        return base


def _newest_per_origin(records: pa.Table) -> dict[str, int]:
    """origin -> the largest ``updated_at`` among ``records`` of that origin."""
    if not records.num_rows:
        return {}
    grouped = records.group_by("origin").aggregate([("updated_at", "max")])
    origins = grouped["origin"].to_pylist()
    return {o: int(m) for o, m in zip(origins, grouped["updated_at_max"].to_pylist(), strict=True)}


def pa_filter_count(table: pa.Table, column: str, value: str) -> int:
    """How many rows of ``table`` have ``column == value``."""
    return int(pc.sum(pc.equal(table.column(column), value)).as_py() or 0)
