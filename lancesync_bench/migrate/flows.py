"""The three supported migrations, each ending with a read-back of S3.

* desktop to web (``local_primary_s3_backup -> s3_primary_local_cache``): the desktop's
  backup already is the table the S3-primary mode reads. Upload what the backup lacks,
  make the final backup through the storage service, require nothing pending, and require
  S3's live documents to equal the desktop's.
* local development to cloud (``local_only -> s3_primary_local_cache``): upload the table
  with the sync engine's verified, manifest-last transfer into a location that holds no
  table (only the latest manifest, so the table appears in one PUT), then read it back.
* web with a local backend to cloud (``local_primary_s3_sync -> s3_primary_local_cache``):
  a final sync through the storage service, nothing pending, and S3 holding the current
  state of every document of this device.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pyarrow as pa

from lancesync_bench.config import LanceDBSyncConfig, StorageMode
from lancesync_bench.errors import ConfigError
from lancesync_bench.migrate.content import Snapshot, coverage, read_local, read_s3
from lancesync_bench.migrate.report import MigrationReport
from lancesync_bench.migrate.upload import (
    MigrationError,
    Policy,
    UploadPlan,
    plan_upload,
    push_plan,
    remote_table,
)
from lancesync_bench.s3.endpoint import S3Endpoint, Timeouts
from lancesync_bench.storage.schema import TABLE_NAME, sql_string
from lancesync_bench.storage.transfer import TransferStats, latest_version, local_files

if TYPE_CHECKING:
    from lancesync_bench.storage.reports import SyncReport
    from lancesync_bench.storage.service import LanceDBStorageService

__all__ = ["FLOWS", "Run"]


def read_device_id(config: LanceDBSyncConfig) -> str | None:
    """This device's id as the storage service would use it, without creating one."""
    if config.device_id:
        return config.device_id
    try:
        return (config.local_storage_path / "device-id").read_text().strip() or None
    except OSError:
        return None


@dataclass
class Run:
    """Everything one migration needs, and the report it fills in."""

    user_id: str
    source: LanceDBSyncConfig
    target: LanceDBSyncConfig
    endpoint: S3Endpoint
    timeouts: Timeouts
    dry_run: bool
    progress: bool
    report: MigrationReport
    stats: TransferStats

    @property
    def user_dir(self) -> Path:
        """The user's local folder in the source mode."""
        return self.source.local_storage_path / "users" / self.user_id

    @property
    def table_dir(self) -> Path:
        """The user's local table (the source's primary copy)."""
        return self.user_dir / f"{TABLE_NAME}.lance"

    def service(self) -> LanceDBStorageService:
        """The storage service in the source mode, without background work."""
        from lancesync_bench.storage.service import LanceDBStorageService

        config = dataclasses.replace(self.source, sync_interval_s=0.0)
        return LanceDBStorageService(config, endpoint=self.endpoint)

    def logged_segments(self) -> list[Path]:
        """Write-log segments holding acknowledged writes not yet in the local table (a
        crash of the app before its log was flushed)."""
        wal = self.user_dir / f"{TABLE_NAME}.wal"
        if not wal.is_dir():
            return []
        return sorted(p for p in wal.iterdir() if p.suffix == ".wal" and p.stat().st_size)

    async def flush_write_log(self) -> None:
        """Replay and flush the source's write log into its table (nothing in a dry run,
        which notes the pending writes instead)."""
        pending = self.logged_segments()
        if not pending:
            return
        if self.dry_run:
            self.report.notes.append(
                f"{len(pending)} write-log segment(s) hold acknowledged writes not yet in the "
                "table; the migration flushes them into the table first"
            )
            return
        async with self.service() as svc:
            await svc.flush(self.user_id)

    async def read_source(self) -> tuple[Snapshot, pa.Table]:
        """The local table read in full, its write log flushed first; refuses a missing
        table or a wrong dimension."""
        await self.flush_write_log()
        if not latest_version(local_files(self.table_dir)):
            raise MigrationError(f"there is no table at {self.table_dir}; nothing to migrate")
        snap, records = await read_local(str(self.user_dir))
        if snap.dim is not None and snap.dim != self.target.embedding_dim:
            raise ConfigError(
                f"EMBEDDING_DIM={self.target.embedding_dim} does not match the table at "
                f"{self.table_dir}, whose vectors have {snap.dim} dimensions; "
                f"set EMBEDDING_DIM={snap.dim}"
            )
        return snap, records

    async def read_target(self) -> tuple[Snapshot, pa.Table]:
        """The S3 table read in full at its latest version."""
        return await read_s3(self.endpoint, self.user_id, self.timeouts)

    async def upload(self, plan: UploadPlan) -> None:
        """Send a plan's files with progress bars; count its requests."""
        writer = read_device_id(self.source) or "lancesync-migrate"
        remote = remote_table(self.endpoint, self.user_id, self.timeouts)
        stats = await asyncio.to_thread(
            push_plan, plan, remote, writer=writer, progress=self.progress
        )
        for kind, n in stats.requests.items():
            self.stats.count(kind, n)

    async def plan(self, policy: Policy) -> UploadPlan:
        """Plan the upload, record it in the report, and read the source for the report."""
        source, _ = await self.read_source()
        remote = remote_table(self.endpoint, self.user_id, self.timeouts)
        plan = await asyncio.to_thread(
            plan_upload, self.table_dir, remote, self.stats, policy=policy
        )
        report = self.report
        report.files, report.bytes, report.versions = len(plan.send), plan.bytes, [*plan.versions]
        report.source_version = plan.local_version
        report.target_version = plan.remote_version or None
        report.source_content = source
        return plan


async def _verify_copy(run: Run, *, expect_version: int | None = None) -> None:
    """Read both sides in full and require equal live documents."""
    source, _ = await run.read_source()
    if expect_version is not None and source.version != expect_version:
        raise MigrationError(
            f"the local table changed during the migration (version {expect_version} -> "
            f"{source.version}); stop the app that writes it and run again"
        )
    target, _ = await run.read_target()
    report = run.report
    report.source_content, report.target_content = source, target
    report.source_version, report.target_version = source.version, target.version
    if (source.live, source.content_sha256) != (target.live, target.content_sha256):
        raise MigrationError(
            f"verification failed: S3 holds {target.live} live documents (content sha256 "
            f"{target.content_sha256[:16]}), the local table {source.live} "
            f"({source.content_sha256[:16]}); was something still writing? Nothing was handed "
            "over: stop every writer and run the migration again"
        )
    report.verified = True


async def _final_push(
    run: Run,
    kind: Literal["backup", "sync"],
    *,
    unreachable: str,
    pending: str,
    writer: str,
) -> SyncReport:
    """The service's last backup or sync before the hand-over, its requests counted.

    Raises :class:`MigrationError` when it could not reach S3 (``unreachable`` ends that
    message) or when ``pending`` changes are still not on S3 after it (is ``writer`` still
    writing?): nothing is handed over then.
    """
    async with run.service() as service:
        push = service.backup if kind == "backup" else service.sync
        report = await push(run.user_id)
        if not report.reachable:
            raise MigrationError(
                f"the final {kind} could not reach S3 ({report.error}); nothing was handed "
                f"over{unreachable}"
            )
        status = await service.status(run.user_id)
    for request, n in report.requests.items():
        run.stats.count(request, n)
    if status.pending_changes:
        raise MigrationError(
            f"{status.pending_changes} {pending} are still not on S3 after the final {kind}; "
            f"is {writer} still writing? Stop it and run again"
        )
    return report


async def desktop_to_web(run: Run) -> None:
    """Final backup, nothing pending, S3 equal to the desktop; the desktop hands over."""
    plan = await run.plan("backup")
    if run.dry_run:
        return
    if plan.send:
        await run.upload(plan)
    await _final_push(
        run,
        "backup",
        unreachable=": the desktop stays the primary",
        pending="local version(s)",
        writer="the desktop app",
    )
    await _verify_copy(run)
    run.report.next_steps = [
        f"stop the desktop's own storage for user {run.user_id}: the desktop app becomes a "
        "client of the web backend (or is retired); two primaries on one table conflict",
        "start the web backend with FRONTEND_TYPE=web and BACKEND_LOCATION=cloud (or on a "
        f"platform detected as cloud) and the same S3 settings; it reads {run.report.target}",
        f"keep {run.table_dir} as an archive: once the web backend has written, a desktop "
        "backup is refused as a conflict (SyncConflict) and the desktop's writes stay local",
    ]


async def local_to_cloud(run: Run) -> None:
    """Upload the local table into an S3 location holding no table; read it back."""
    plan = await run.plan("promote")
    if run.dry_run:
        return
    if plan.complete:
        run.report.notes.append(
            f"S3 already holds version {plan.local_version} of this table; nothing to upload"
        )
    else:
        await run.upload(plan)
    await _verify_copy(run, expect_version=plan.local_version)
    run.report.next_steps = [
        "deploy the production backend with FRONTEND_TYPE=web and BACKEND_LOCATION=cloud (or "
        f"on a platform detected as cloud) and the same S3 settings; it reads {run.report.target}",
        f"stop writing to {run.table_dir}: later local writes are not carried over, and a new "
        "run is refused once production has written to the S3 table",
    ]


async def sync_to_cloud(run: Run) -> None:
    """Final sync, nothing pending, S3 holding every document of this device."""
    source, _ = await run.read_source()
    run.report.source_version, run.report.source_content = source.version, source
    remote = remote_table(run.endpoint, run.user_id, run.timeouts)
    before = max(await asyncio.to_thread(remote.list_versions, run.stats), default=0)
    run.report.target_version = before or None
    if run.dry_run:
        await _preview_sync(run, remote_version=before)
        return
    sync = await _final_push(
        run, "sync", unreachable="", pending="record(s) of this device", writer="the backend"
    )
    report = run.report
    report.records, report.files, report.bytes = sync.records_up, sync.files_up, sync.bytes_up
    report.download_files, report.download_bytes = sync.files_down, sync.bytes_down
    source, local_records = await run.read_source()
    target, remote_records = await run.read_target()
    report.source_content, report.target_content = source, target
    report.source_version, report.target_version = source.version, target.version
    report.versions = list(range(before + 1, target.version + 1)) if sync.records_up else []
    cover = coverage(local_records, remote_records)
    if cover.missing:
        raise MigrationError(
            f"verification failed: S3 lacks the current state of {len(cover.missing)} "
            f"document(s) of this device (e.g. {', '.join(cover.missing[:3])}); sync pushes "
            "only records written under this DEVICE_ID. Nothing was handed over"
        )
    if cover.newer:
        report.notes.append(
            f"S3 holds newer versions of {len(cover.newer)} document(s) from other devices "
            "(written after the final sync); they are part of the primary now"
        )
    report.verified = True
    report.next_steps = [
        "restart this backend with BACKEND_LOCATION=cloud (S3 primary, same S3 settings); "
        f"its local table {run.table_dir} is no longer read",
        "keep no other device in local_primary_s3_sync for this user (sync each one last, "
        "then stop it): after S3-primary compaction a sync device pushes again the records "
        "compaction removed, which can bring deleted documents back",
    ]


async def _preview_sync(run: Run, *, remote_version: int) -> None:
    """What a final sync would move, from reads only (no service is opened)."""
    import lancedb

    device = read_device_id(run.source)
    floor = -1  # this device's newest record on S3: sync pushes the ones after it
    if remote_version and device:
        db = await lancedb.connect_async(
            run.endpoint.uri("users", run.user_id),
            storage_options=run.endpoint.storage_options(run.timeouts),
        )
        mine = await (
            (await db.open_table(TABLE_NAME))
            .query()
            .where(f"origin = {sql_string(device)}")
            .select(["updated_at"])
            .to_arrow()
        )
        floor = max(mine.column("updated_at").to_pylist(), default=-1)
    report = run.report
    if device:
        local = await (await lancedb.connect_async(str(run.user_dir))).open_table(TABLE_NAME)
        pending = await (
            local.query()
            .where(f"origin = {sql_string(device)} AND updated_at > {floor}")
            .to_arrow()
        )
        # Arrow's in-memory size: the pushed data file is about as large.
        report.records, report.bytes = pending.num_rows, int(pending.nbytes)
        report.files = 3 if pending.num_rows else 0  # data file, transaction, manifest
    if report.records and remote_version:
        report.versions = [remote_version + 1]  # one commit holds every pending record
    elif report.records:
        report.notes.append("S3 holds no table yet: the sync creates it first")
    # A sync first brings its local view of S3 (users/<id>/remote) up to date.
    remote = remote_table(run.endpoint, run.user_id, run.timeouts)
    remote_files = await asyncio.to_thread(remote.list_files, run.stats)
    replica = local_files(run.user_dir / "remote" / f"{TABLE_NAME}.lance")
    missing = [i for r, i in remote_files.items() if replica.get(r) != i.size]
    report.download_files, report.download_bytes = len(missing), sum(i.size for i in missing)


FLOWS: dict[tuple[StorageMode, StorageMode], Callable[[Run], Awaitable[None]]] = {
    (StorageMode.LOCAL_PRIMARY_S3_BACKUP, StorageMode.S3_PRIMARY_LOCAL_CACHE): desktop_to_web,
    (StorageMode.LOCAL_ONLY, StorageMode.S3_PRIMARY_LOCAL_CACHE): local_to_cloud,
    (StorageMode.LOCAL_PRIMARY_S3_SYNC, StorageMode.S3_PRIMARY_LOCAL_CACHE): sync_to_cloud,
}
