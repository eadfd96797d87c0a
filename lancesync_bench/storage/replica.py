"""A local folder that mirrors one S3 Lance table: verified pulls, conflict-safe commits.

The S3-primary mode reads from it (it is the cache) and commits through it; the sync mode
uses one as its view of the shared remote table. A commit runs a LanceDB operation on the
local copy, then pushes exactly the files it created, manifest last with
``If-None-Match: *``. When another writer took that version first, the local attempt is
rolled back, the new remote versions are pulled, and the operation runs again on top.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from lancesync_bench.errors import IntegrityError, MissingChecksum, SyncConflict
from lancesync_bench.storage.compaction import PreparedCompaction, prepare_compaction
from lancesync_bench.storage.doctable import DocTable
from lancesync_bench.storage.schema import TABLE_NAME, schema
from lancesync_bench.storage.transfer import (
    FileInfo,
    RemoteTable,
    TransferStats,
    latest_version,
    local_files,
    manifest_version,
    newest_manifest,
    same_bytes,
    sha256_file,
)

__all__ = ["BaseMoved", "Replica"]

T = TypeVar("T")
_ASK = object()  # refresh(): no listing given, make one


class BaseMoved(Exception):
    """A commit made ahead of its check (``commit(expect_base=...)``) was withdrawn before
    its manifest went up: S3's newest version was not the one the commit sits on."""

    def __init__(self, base: int, latest: int | None) -> None:
        super().__init__(f"S3's newest version is {latest}, not {base} as this copy's")
        self.base = base
        self.latest = latest


# Each retry pulls the winner's version first, so a retry only loses to yet another write.
# A writer that lost is also the slower one next time (it must pull before retrying), so
# while others write in a tight loop it keeps losing: three instances writing six documents
# each at once starved one for more than 8 rounds. 32 rounds (about a second of retries on
# loopback) cover such bursts without spinning forever.
_MAX_COMMIT_ATTEMPTS = 32
# Records read (one HEAD each, 8 at a time) when a cache installs only the latest version:
# the versions since the last compaction (at most 64 appends by default) cover nearly all
# of its files.
_MAX_RECORD_READS = 64


class Replica:
    """A local mirror of the remote table ``remote`` in the folder ``root``."""

    def __init__(self, remote: RemoteTable, root: Path, *, dim: int, writer: str) -> None:
        self.remote = remote
        self.root = root
        self.table_dir = root / f"{TABLE_NAME}.lance"
        self.dim = dim
        self.writer = writer
        self.lock = asyncio.Lock()
        self.remote_version: int | None = None
        self.last_refresh: float = 0.0
        self._db: Any = None
        self._table: Any = None
        self._files: dict[str, int] = {}
        # The newest version among ``_files`` and its manifest (see _adopt).
        self._latest = 0
        self._latest_rel: str | None = None
        self.docs = DocTable(lambda: self._table, dim=dim)
        # The largest record timestamp of the versions installed here (-1: none yet): the
        # writer's clock moves past it before stamping a commit.
        self.newest_seen = -1
        # How many times a refresh installed other writers' versions (a commit that lost a
        # race pulls them before trying again).
        self.pulls = 0

    @property
    def table(self) -> Any:
        """The LanceDB table over the local copy."""
        return self._table

    def local_version(self) -> int:
        """The newest version whose manifest is in the local copy (0 when empty)."""
        return latest_version(local_files(self.table_dir))

    async def _reopen(self) -> None:
        import lancedb

        self.docs.invalidate()
        self._db = await lancedb.connect_async(str(self.root))
        self._table = await self._db.open_table(TABLE_NAME)

    async def _note_newest(self) -> None:
        """Move ``newest_seen`` past the records that arrived (only those are read back)."""
        import pyarrow.compute as pc

        newer = (
            await self._table.query()
            .where(f"updated_at > {self.newest_seen}")
            .select(["updated_at"])
            .to_arrow()
        )
        if newer.num_rows:
            newest = int(pc.max(newer.column("updated_at")).as_py())
            self.newest_seen = max(self.newest_seen, newest)

    async def open(self, stats: TransferStats, *, all_versions: bool = False) -> None:
        """Bring the local copy to the remote's latest version, creating the table if needed.

        Only the latest version is installed (its manifest and the files it needs), unless
        ``all_versions`` asks for every version S3 keeps (a restore of an older one).

        Local versions the remote never received (a crash between commit and push) are
        pushed when they still fit on top of the remote, and dropped otherwise: they were
        never acknowledged.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if all_versions or not await self._open_from_newest(stats):
            await self._open_from_listing(stats, all_versions=all_versions)
        await self._reopen()
        self._adopt(local_files(self.table_dir), whole=True)
        self.remote_version = self._latest
        await self._note_newest()
        self.last_refresh = time.monotonic()

    async def _open_from_newest(self, stats: TransferStats) -> bool:
        """Install S3's newest version without listing the table: one one-key LIST, a HEAD
        of the local newest manifest (when there is one and S3 has moved on), the new
        manifest, the files this copy lacks, and a LIST per index folder it lacks that the
        newest push did not add. False (nothing changed) when this path cannot tell: no
        version on S3, a local version S3 does not hold byte for byte, S3 behind, manifests
        plain LanceDB wrote, or the older manifest naming; the caller then lists the table.
        """
        local = local_files(self.table_dir)
        local_latest = latest_version(local)
        newest = await asyncio.to_thread(self.remote.newest_manifest, stats)
        remote_latest = 0 if newest is None else manifest_version(newest.path) or 0
        if newest is None or remote_latest < local_latest:
            return False
        have: tuple[str, ...] = ()  # index folders complete here
        if local_latest:
            local_rel = next(r for r in local if manifest_version(r) == local_latest)
            if remote_latest == local_latest:
                return newest.path == local_rel and same_bytes(self.table_dir / local_rel, newest)
            mine = await asyncio.to_thread(self.remote.head_file, local_rel, stats)
            if mine is None or not same_bytes(self.table_dir / local_rel, mine):
                return False
            _, have = await asyncio.to_thread(
                _manifest_layout, (self.table_dir / local_rel).read_bytes(), local_rel
            )
        got = await asyncio.to_thread(self.remote.get_manifests, [newest], stats)
        body, listed = got[newest.path]
        if listed is None:
            return False
        needed, folders = await asyncio.to_thread(_manifest_layout, body, newest.path)
        recorded = {f.path: f for f in listed}
        index_files: dict[str, FileInfo] = {}
        for folder in sorted(set(folders) - set(have)):
            # A segment's files are all written by one commit: when the newest push added
            # the segment its record lists them; an older one's folder is listed.
            found = {r: f for r, f in recorded.items() if r.startswith(folder)}
            if not found:
                found = await asyncio.to_thread(self.remote.list_under, folder, stats)
            if not found:
                raise IntegrityError(
                    f"version {remote_latest} on S3 needs index files under {folder} that S3 "
                    "does not hold; not installed"
                )
            index_files.update(found)
        todo = [
            recorded.get(r)
            or dataclasses.replace(index_files.get(r) or FileInfo(r, -1), needs_sha256=True)
            for r in sorted((needed | set(index_files)) - set(local))
        ]
        try:
            await asyncio.to_thread(self.remote.download, todo, self.table_dir, stats)
        except MissingChecksum:
            # A file whose object lost the SHA-256 its push stored (rewritten by hand, say):
            # the listing path reads the older records, which hold it.
            return False
        self._write_manifest(newest.path, body)
        stats.down(len(body))
        return True

    def _write_manifest(self, rel: str, body: bytes) -> None:
        """Install a manifest (last: a version is visible once its files are all here)."""
        dest = self.table_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".lancesync-{dest.name}.part")
        tmp.write_bytes(body)
        tmp.replace(dest)

    async def _open_from_listing(self, stats: TransferStats, *, all_versions: bool) -> None:
        """Open by listing the whole remote table: a first open, a local copy with versions
        S3 never took, a restore of an older version."""
        remote_files = await asyncio.to_thread(self.remote.list_files, stats)
        if not any(manifest_version(r) is not None for r in remote_files):
            if not self.table_dir.exists():
                await self._create_local()
            try:
                await asyncio.to_thread(
                    self.remote.push,
                    self.table_dir,
                    list(local_files(self.table_dir)),
                    stats,
                    writer=self.writer,
                )
            except SyncConflict:
                shutil.rmtree(self.table_dir, ignore_errors=True)
                remote_files = await asyncio.to_thread(self.remote.list_files, stats)
        await self._reconcile(remote_files, stats, all_versions=all_versions)

    async def _create_local(self) -> None:
        import lancedb
        import lancedb.index

        self._db = await lancedb.connect_async(str(self.root))
        self._table = await self._db.create_table(TABLE_NAME, schema=schema(self.dim))
        await self._table.create_index("id", config=lancedb.index.BTree())

    async def _reconcile(
        self, remote_files: dict[str, FileInfo], stats: TransferStats, *, all_versions: bool
    ) -> None:
        local = local_files(self.table_dir)
        cut_short = await self._cut_short_uploads(local, remote_files, stats)
        if cut_short:
            await asyncio.to_thread(
                self.remote.push, self.table_dir, cut_short, stats, writer=self.writer
            )
            for rel in cut_short:
                remote_files[rel] = FileInfo(rel, local[rel])
        extra = [r for r in local if r not in remote_files]
        unpushed = [r for r in extra if manifest_version(r) is not None]
        if unpushed:
            # The interrupted push may have uploaded some of its files already; list every
            # local file S3 holds in the record, or a reader would install the version
            # without them.
            resumed = [r for r in local if r in remote_files and manifest_version(r) is None]
            try:
                await asyncio.to_thread(
                    self.remote.push,
                    self.table_dir,
                    extra,
                    stats,
                    writer=self.writer,
                    also_record=resumed,
                )
                return await self._reconcile(
                    await asyncio.to_thread(self.remote.list_files, stats),
                    stats,
                    all_versions=all_versions,
                )
            except SyncConflict:
                for rel in extra:
                    (self.table_dir / rel).unlink(missing_ok=True)
        for rel, size in local.items():
            info = remote_files.get(rel)
            if info is not None and info.size != size:
                raise IntegrityError(
                    f"local copy {self.table_dir / rel} ({size} bytes) differs from S3 "
                    f"({info.size} bytes); move the folder away to rebuild it from S3"
                )
        if all_versions:
            local = local_files(self.table_dir)
            manifests = {
                r: i for r, i in remote_files.items() if r not in local and manifest_version(r)
            }
            await self._pull_versions(manifests, stats, remote_files=remote_files)
        else:
            await self._install_latest(remote_files, stats)

    async def _install_latest(
        self, remote_files: dict[str, FileInfo], stats: TransferStats
    ) -> None:
        """Install S3's newest version when it is newer than the local copy's: its manifest
        and the files it references that are missing here, nothing of the versions between
        (after a long pause, those are most of the history: 929 GETs for 300 writes).

        Each file is verified against the SHA-256 that the push which added it recorded:
        the records are read newest first (a HEAD each) until every needed file is covered
        or ``_MAX_RECORD_READS`` were read (the first segment of an index stays from the
        table's first version on); a file still uncovered must carry the SHA-256 its push
        stored with the object, and match it.
        """
        versions = {v: r for r in remote_files if (v := manifest_version(r)) is not None}
        local = local_files(self.table_dir)
        if not versions or max(versions) <= latest_version(local):
            return
        rel = versions[max(versions)]
        got = await asyncio.to_thread(self.remote.get_manifests, [remote_files[rel]], stats)
        body, listed = got[rel]
        needed = await asyncio.to_thread(_referenced_files, body, rel, remote_files)
        missing = needed - set(local)
        recorded = {f.path: f for f in listed or [] if f.path in missing}
        older = [versions[v] for v in sorted(versions, reverse=True)[1 : _MAX_RECORD_READS + 1]]
        batch = self.remote.workers
        while older and not missing <= set(recorded):
            heads, older = older[:batch], older[batch:]
            records = await asyncio.to_thread(
                self.remote.get_records, [remote_files[r] for r in heads], stats
            )
            for files in records.values():
                recorded.update((f.path, f) for f in files or [] if f.path in missing)
        # A file no record read lists: from an older push of ours (the object carries its
        # SHA-256), or, under a manifest plain LanceDB wrote, checked by size and ETag.
        ours = listed is not None
        todo = [
            recorded.get(r) or dataclasses.replace(remote_files[r], needs_sha256=ours)
            for r in sorted(missing)
        ]
        await asyncio.to_thread(self.remote.download, todo, self.table_dir, stats)
        self._write_manifest(rel, body)
        stats.down(len(body))

    async def _cut_short_uploads(
        self, local: dict[str, int], remote_files: dict[str, FileInfo], stats: TransferStats
    ) -> list[str]:
        """Data files whose S3 copy is an upload of this very file that arrived cut short.

        A push killed mid-upload can leave an object with the request's metadata and fewer
        bytes than were sent (seen on SeaweedFS: an empty object whose recorded SHA-256 is
        the local file's). Such a copy is sent again; any other difference stays an error.
        Manifests are never resent (they are conditional puts, handled by the push).
        """
        suspects = [
            r
            for r, size in local.items()
            if (info := remote_files.get(r)) is not None
            and info.size != size
            and manifest_version(r) is None
        ]
        resend = []
        for rel in suspects:
            recorded = await asyncio.to_thread(self.remote.recorded_sha256, rel, stats)
            if recorded is not None and recorded == sha256_file(self.table_dir / rel):
                resend.append(rel)
        return resend

    def ask_latest(self, stats: TransferStats) -> Future[int | None]:
        """S3's newest version, asked now (one one-key LIST in the background) for a caller
        that works meanwhile and hands the answer to :meth:`commit` or :meth:`refresh`."""
        return self.remote.in_background(self.remote.latest_version, stats)

    async def refresh(self, stats: TransferStats, *, listed: Any = _ASK) -> bool:
        """Pull versions newer than the local copy; True when something new arrived.

        One one-key LIST when nothing changed (none when the caller ``listed`` S3's newest
        version already, from :meth:`ask_latest`); otherwise a LIST of ``_versions/``, one
        GET per new manifest (its metadata lists the files it needs), and one per new file.
        """
        # The one-key LIST needs no lock: when S3's newest version is the one this copy
        # holds, nothing is installed and nothing the lock guards is touched, so a refresh
        # does not wait for a commit under way (a write on a stale view used to wait for a
        # whole flush: its local commit and three PUTs).
        if listed is _ASK:
            latest = await asyncio.to_thread(self.remote.latest_version, stats)
        else:
            latest = listed
        if latest is not None and latest == self._local_latest():
            self.last_refresh = time.monotonic()
            self.remote_version = latest
            return False
        async with self.lock:
            # S3's newest differs: a commit of this copy may have landed meanwhile (then
            # the copy holds it by now), or another writer's version is new, or the table
            # was replaced (an older newest). Decided under the lock, on this listing.
            local_latest = self._local_latest()
            self.last_refresh = time.monotonic()
            if latest is not None and latest <= local_latest:
                self.remote_version = latest
                return False
            versions = await asyncio.to_thread(self.remote.list_versions, stats)
            newer = {v: i for v, i in versions.items() if v > local_latest}
            if not newer:
                self.remote_version = max(versions, default=0)
                return False
            manifests = {i.path: i for i in newer.values()}
            await self._pull_versions(manifests, stats)
            self._adopt(local_files(self.table_dir, known=self._files))
            self.docs.invalidate()  # other writers' records arrived
            await self._table.checkout_latest()
            self.remote_version = max(versions)
            await self._note_newest()
            self.pulls += 1
            return True

    def s3_went_back(self) -> bool:
        """True when the last refresh found S3's newest version older than this copy's (or
        no version at all): the S3 table was wiped or replaced, and a commit on this copy
        would publish a version whose older files S3 no longer holds. :meth:`open` deals
        with it (it puts back the versions S3 lacks when they still fit on what it holds)."""
        return self.remote_version is not None and self.remote_version < self._local_latest()

    def _local_latest(self) -> int:
        """The copy's newest version: from the files of the last open, commit or refresh
        (a folder scan when none yet)."""
        return self._latest if self._files else self.local_version()

    def _adopt(self, files: dict[str, int], *, whole: bool = False) -> None:
        """Take ``files`` as the copy's listing. Its newest version is looked for among the
        names new since the last listing only (a commit, refresh or cleanup never removes
        the newest version; if it went, every name is read): a sync's cost must not grow
        with the versions kept here (at 1,900 files, reading every name took 0.6 ms, and a
        sync did so several times)."""
        if whole or self._latest_rel is None or self._latest_rel not in files:
            self._latest, self._latest_rel = newest_manifest(files)
        else:
            version, rel = newest_manifest(files.keys() - self._files.keys())
            if version > self._latest:
                self._latest, self._latest_rel = version, rel
        self._files = files

    async def _pull_versions(
        self,
        manifests: dict[str, FileInfo],
        stats: TransferStats,
        *,
        remote_files: dict[str, FileInfo] | None = None,
    ) -> None:
        """Install new versions: their files first (verified), their manifests last.

        Each manifest's record (object metadata, or a sidecar object when long) names the
        files its push added, with their SHA-256. A version without a record was written by
        plain LanceDB: the files its manifest references (read by Lance) are fetched, each
        checked by size and ETag. ``remote_files`` is the caller's listing of the table, if
        it has one. Files no installed version references (those of a push that was killed
        before its manifest) are never fetched.
        """
        expected: list[FileInfo] = []
        fetched: dict[str, bytes] = {}
        foreign: list[str] = []
        got = await asyncio.to_thread(self.remote.get_manifests, manifests.values(), stats)
        for rel in manifests:
            body, listed = got[rel]
            if listed is None:
                foreign.append(rel)
            else:
                expected += listed
            fetched[rel] = body
        if remote_files is not None and fetched:
            # An open with history: the newest version's files may have been added by
            # versions S3 no longer keeps (pruned), whose records are gone with them.
            foreign.append(max(fetched, key=lambda r: manifest_version(r) or 0))
        if foreign:
            if remote_files is None:
                remote_files = await asyncio.to_thread(self.remote.list_files, stats)
            known = {f.path for f in expected}
            needed: set[str] = set()
            for rel in dict.fromkeys(foreign):
                needed |= await asyncio.to_thread(
                    _referenced_files, fetched[rel], rel, remote_files
                )
            expected += [remote_files[r] for r in sorted(needed - known)]
        todo = [f for f in expected if not (self.table_dir / f.path).exists()]
        await asyncio.to_thread(self.remote.download, todo, self.table_dir, stats)
        for rel in sorted(fetched, key=lambda r: manifest_version(r) or 0):
            dest = self.table_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".lancesync-{dest.name}.part")
            tmp.write_bytes(fetched[rel])
            tmp.replace(dest)
            stats.down(len(fetched[rel]))

    async def prepare_compaction(self, stats: TransferStats) -> PreparedCompaction | None:
        """Compact the current version on a shadow and upload the new data files, without
        the lock: writes go on meanwhile. None when there is nothing to compact.

        The uploaded files are referenced by no manifest until :meth:`commit` is handed the
        result (``uploaded=``) and commits it; if that never happens they are left over on
        S3 like the files of a push that died before its manifest.
        """
        files = self._files  # replaced, never changed in place: a consistent listing
        shadow = self.root / ".lancesync-shadow"
        prepared = await asyncio.to_thread(prepare_compaction, self.table_dir, files, shadow)
        if prepared is None:
            return None
        try:
            prepared.hashes = {
                rel: await asyncio.to_thread(sha256_file, shadow / rel) for rel in prepared.files
            }
            await asyncio.to_thread(
                self.remote.push,
                shadow,
                list(prepared.files),
                stats,
                writer=self.writer,
                hashes=prepared.hashes,
            )
        except BaseException:
            prepared.discard()
            raise
        return prepared

    async def commit(
        self,
        op: Callable[[DocTable], Awaitable[T]],
        stats: TransferStats,
        *,
        may_delete: bool = False,
        uploaded: PreparedCompaction | None = None,
        expect_base: Future[int | None] | None = None,
    ) -> T:
        """Run ``op`` on the local copy and push what it wrote; retry on a lost race.

        ``may_delete`` says that ``op`` removes files (maintenance cleans up old versions):
        they are kept aside (hard links) until S3 took the commit, so that a rollback
        brings back the version the op started from instead of a table without manifests.
        ``uploaded`` names files ``op`` may add that are on S3 already (a prepared
        compaction's): they are listed in the commit's record, not sent again.

        ``expect_base`` is S3's newest version as :meth:`ask_latest` is finding it out: the
        commit and its data files go ahead while that LIST is in flight, and the manifest
        goes up only if S3 is still at the version the commit sits on. Otherwise the commit
        is rolled back and :class:`BaseMoved` raised, nothing published (the caller then
        refreshes on that listing and commits again). Its data files stay on S3 unreferenced,
        like those of a push that died before its manifest, until remote retention removes
        them.
        """
        on_s3 = uploaded.files if uploaded is not None else {}
        hashes = uploaded.hashes if uploaded is not None else {}
        for attempt in range(_MAX_COMMIT_ATTEMPTS):
            async with self.lock:
                before = self._files
                check = None  # a retry sits on versions its refresh just listed
                if expect_base is not None and attempt == 0:
                    check = _base_check(expect_base, self._local_latest())
                undo = self._keep_aside(before) if may_delete else None
                try:
                    done, result = await self._commit_once(
                        op, before, undo, stats, on_s3=on_s3, hashes=hashes, check=check
                    )
                    if done:
                        return cast(T, result)
                finally:
                    if undo is not None:
                        shutil.rmtree(undo, ignore_errors=True)
            await self.refresh(stats)
        raise SyncConflict(
            f"gave up after {_MAX_COMMIT_ATTEMPTS} attempts: other writers kept committing first"
        )

    async def _commit_once(
        self,
        op: Callable[[DocTable], Awaitable[T]],
        before: dict[str, int],
        undo: Path | None,
        stats: TransferStats,
        *,
        on_s3: dict[str, int],
        hashes: dict[str, str],
        check: Callable[[], None] | None,
    ) -> tuple[bool, T | None]:
        """One attempt of :meth:`commit`, under its lock: (True, the op's result) once S3
        took the commit, (False, None) when another writer took the version first (rolled
        back); any other failure is rolled back and raised.

        Neither Lance's commit nor the push stops when the caller is cancelled (a Rust
        task, a thread): each is waited for, so that what it did is settled before the
        cancellation goes on.
        """
        work = asyncio.ensure_future(op(self.docs))
        cancelled = await _settled(work)
        after = local_files(self.table_dir, known=before)
        new = [r for r in after if r not in before]
        cancelled = cancelled or work.cancelled()
        if cancelled or work.exception() is not None:
            if new or undo is not None:  # Lance may have committed before it failed
                await self._rollback(new, undo)
            if cancelled:
                raise asyncio.CancelledError
        result = work.result()
        push = asyncio.ensure_future(
            asyncio.to_thread(
                self.remote.push,
                self.table_dir,
                [r for r in new if r not in on_s3],
                stats,
                writer=self.writer,
                hashes=hashes,
                also_record=[r for r in new if r in on_s3],
                before_manifests=check,
            )
        )
        cancelled = await _settled(push)
        if push.exception() is not None:
            # A lost race, BaseMoved, S3Error, or any other failure (a bug, a local file
            # gone): no version S3 may lack stays in the copy. Kept, the next flush would
            # find its records here, take them for committed and drop their log objects.
            # What S3 did take of it, a refresh installs like any other writer's version.
            await self._rollback(new, undo)
            if cancelled:
                raise asyncio.CancelledError
            if isinstance(push.exception(), SyncConflict):
                return False, None
            push.result()  # raises
        self._adopt(after)
        self.remote_version = self._latest
        if cancelled:
            raise asyncio.CancelledError
        return True, result

    async def cleanup(self, older_than: timedelta | None) -> None:
        """Delete the local copy's versions older than ``older_than`` (Lance's cleanup; the
        latest is always kept; None: 7 days, as in maintenance). S3 keeps its own history
        (see storage.retention)."""
        import lance

        age = older_than if older_than is not None else timedelta(days=7)
        uri = str(self.table_dir)
        # No lock while Lance cleans up: it removes only versions older than ``age`` and
        # files no kept version references (an unreferenced file younger than ``age``, such
        # as one a commit under way is writing, stays), so commits and reads go on.
        await asyncio.to_thread(lambda: lance.dataset(uri).cleanup_old_versions(older_than=age))
        async with self.lock:  # forget the removed files (a commit meanwhile saw some of them)
            self._adopt(local_files(self.table_dir, known=self._files))

    def _keep_aside(self, files: dict[str, int]) -> Path:
        """Hard-link ``files`` into an undo folder beside the table (copies where links fail)."""
        undo = self.root / ".lancesync-undo"
        shutil.rmtree(undo, ignore_errors=True)
        for rel in files:
            dest = undo / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(self.table_dir / rel, dest)
            except FileNotFoundError:
                continue
            except OSError:
                shutil.copy2(self.table_dir / rel, dest)
        return undo

    async def _rollback(self, new: list[str], undo: Path | None = None) -> None:
        """Forget a local commit the remote did not take, and reopen the table fresh."""
        for rel in new:
            (self.table_dir / rel).unlink(missing_ok=True)
        if undo is not None:  # bring back what the op deleted
            for rel in self._files:
                dest = self.table_dir / rel
                if not dest.exists() and (undo / rel).exists():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.link(undo / rel, dest)
        (self.table_dir / "_versions" / "latest_version_hint.json").unlink(missing_ok=True)
        # A fresh connection: the old one may hold the rolled-back manifest in its cache.
        await self._reopen()


async def _settled(work: asyncio.Future[Any]) -> bool:
    """Wait until ``work`` is done, through cancellations of the caller (``work`` itself is
    left running); True when the caller was cancelled meanwhile."""
    cancelled = False
    while not work.done():
        try:
            await asyncio.wait({work})
        except asyncio.CancelledError:
            cancelled = True
    return cancelled


def _base_check(listed: Future[int | None], base: int) -> Callable[[], None]:
    """For a push's ``before_manifests``: wait for the listing, and raise
    :class:`BaseMoved` unless S3's newest version is ``base``."""

    def check() -> None:
        latest = listed.result()
        if latest != base:
            raise BaseMoved(base, latest)

    return check


def _manifest_layout(manifest: bytes, rel: str) -> tuple[set[str], tuple[str, ...]]:
    """What a Lance manifest needs, read by Lance itself from a scratch folder holding only
    that manifest: every fragment's data files and deletion file (relative paths), and the
    folder of every index segment (``_indices/<uuid>/``; the manifest does not name the
    files inside)."""
    import tempfile

    import lance

    with tempfile.TemporaryDirectory(prefix="lancesync-manifest-") as scratch:
        table = Path(scratch) / f"{TABLE_NAME}.lance"
        (table / "_versions").mkdir(parents=True)
        (table / rel).write_bytes(manifest)
        dataset = lance.dataset(str(table))
        needed: set[str] = set()
        for fragment in dataset.get_fragments():
            meta = fragment.metadata
            needed.update(f"data/{f.path}" for f in meta.files)
            if meta.deletion_file is not None:
                needed.add(meta.deletion_file.path(meta.id))
        folders = tuple(
            f"_indices/{segment.uuid}/"
            for index in dataset.describe_indices()
            for segment in index.segments
        )
    return needed, folders


def _referenced_files(manifest: bytes, rel: str, remote_files: dict[str, FileInfo]) -> set[str]:
    """The files (relative paths) a Lance manifest needs (:func:`_manifest_layout`), its
    index files found in ``remote_files`` by their folder."""
    needed, folders = _manifest_layout(manifest, rel)
    needed.update(r for r in remote_files if folders and r.startswith(folders))
    missing = needed - set(remote_files)
    if missing:
        raise IntegrityError(
            f"version {manifest_version(rel)} on S3 needs {len(missing)} file(s) S3 does not "
            f"hold (e.g. {sorted(missing)[0]}); not installed"
        )
    return needed
