"""Uploading a local table folder to a user's S3 table, planned first, verified by the engine.

The upload goes through :meth:`RemoteTable.push`, the sync engine's own transfer: data,
index and transaction files first, then the manifests with ``If-None-Match: *``, each with
its SHA-256 recorded for verified downloads. Planning only lists S3 and reads the local
folder, so a dry run uses the same plan and changes nothing.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lancesync_bench.errors import LanceSyncError
from lancesync_bench.s3.endpoint import S3Endpoint, Timeouts
from lancesync_bench.storage.schema import TABLE_NAME
from lancesync_bench.storage.transfer import (
    FileInfo,
    RemoteTable,
    TransferStats,
    latest_version,
    local_files,
    manifest_version,
    sha256_file,
)

__all__ = ["MigrationError", "Policy", "UploadPlan", "plan_upload", "push_plan", "remote_table"]

# "backup": the target is this device's own backup; it may hold older history (files the
# local table has since cleaned up) and must not be ahead of it.
# "promote": the target must hold nothing but files of this very table (an interrupted
# earlier run); anything else is somebody's table and is never written into.
Policy = Literal["backup", "promote"]


class MigrationError(LanceSyncError):
    """A migration refused to start, or stopped, and says why; nothing was handed over."""


def remote_table(endpoint: S3Endpoint, user_id: str, timeouts: Timeouts) -> RemoteTable:
    """The S3 side of a user's table, at the keys the storage service uses for every mode."""
    return RemoteTable(
        endpoint.client(timeouts),
        endpoint.bucket,
        endpoint.key("users", user_id, f"{TABLE_NAME}.lance"),
        endpoint.key("users", user_id, "_lancesync", TABLE_NAME),
    )


@dataclass(frozen=True, kw_only=True)
class UploadPlan:
    """What an upload sends: files (relative paths), their bytes, the versions they create."""

    table_dir: Path
    target: str
    send: tuple[str, ...]
    bytes: int
    versions: tuple[int, ...]
    local_version: int
    remote_version: int
    remote_files: int

    @property
    def complete(self) -> bool:
        """Whether S3 already holds this table's latest version (nothing to send)."""
        return not self.send and self.remote_version == self.local_version


def _describe(rels: list[str]) -> str:
    shown = ", ".join(rels[:3])
    return shown + (f" and {len(rels) - 3} more" if len(rels) > 3 else "")


def plan_upload(
    table_dir: Path, remote: RemoteTable, stats: TransferStats, *, policy: Policy
) -> UploadPlan:
    """List both sides and decide what to send; raise :class:`MigrationError` where the
    target is not this table's to write (see ``Policy``)."""
    target = f"s3://{remote.bucket}/{remote.table_key}"
    local = local_files(table_dir)
    local_version = latest_version(local)
    if not local_version:
        raise MigrationError(f"there is no table at {table_dir}; nothing to migrate")
    remote_files: dict[str, FileInfo] = remote.list_files(stats)
    remote_version = latest_version(remote_files)
    differ = sorted(r for r, i in remote_files.items() if r in local and local[r] != i.size)
    differ += _diverged_manifests(table_dir, local, remote_files, remote, stats)
    if policy == "promote":
        foreign = sorted(r for r in remote_files if r not in local)
        if remote_version and (foreign or differ):
            raise MigrationError(
                f"{target} already holds a table (version {remote_version}, "
                f"{len(remote_files)} files) that is not this local table; a migration never "
                "writes into another table. Choose another S3_PREFIX, or delete that table "
                "yourself once you are sure nobody needs it"
            )
        if foreign or differ:
            raise MigrationError(
                f"{target} holds {len(foreign) + len(differ)} object(s) that are not files of "
                f"this local table ({_describe(foreign + differ)}); a migration never "
                "overwrites them. Choose another S3_PREFIX, or remove them yourself"
            )
    else:
        if differ:
            raise MigrationError(
                f"{target} holds a different {_describe(differ)} than this device: another "
                "writer has committed to it, so this device is no longer its only writer"
            )
        if remote_version > local_version:
            raise MigrationError(
                f"{target} is at version {remote_version}, ahead of this device's "
                f"{local_version}: another writer (the web backend after a handover?) has "
                "committed to it; this device's table is no longer the one to migrate"
            )
    send = _choose(local, remote_files, remote_version, policy)
    versions = tuple(sorted(v for v in map(manifest_version, send) if v is not None))
    return UploadPlan(
        table_dir=table_dir,
        target=target,
        send=tuple(send),
        bytes=sum(local[r] for r in send),
        versions=versions,
        local_version=local_version,
        remote_version=remote_version,
        remote_files=len(remote_files),
    )


def _diverged_manifests(
    table_dir: Path,
    local: dict[str, int],
    remote_files: dict[str, FileInfo],
    remote: RemoteTable,
    stats: TransferStats,
) -> list[str]:
    """Manifests both sides hold under one name and size but with different bytes.

    A manifest's name is its version number, so another writer's commit of the same
    version has the same name, and often the same size: only the bytes tell them apart.
    """
    diverged = []
    for rel, size in sorted(local.items()):
        info = remote_files.get(rel)
        if info is None or manifest_version(rel) is None or info.size != size:
            continue
        body, _ = remote.get_manifest(info, stats)
        if hashlib.sha256(body).hexdigest() != sha256_file(table_dir / rel):
            diverged.append(rel)
    return diverged


def _choose(
    local: dict[str, int], remote: dict[str, FileInfo], remote_version: int, policy: Policy
) -> list[str]:
    data = [r for r in local if manifest_version(r) is None]
    manifests = [r for r in local if manifest_version(r) is not None]
    if not remote_version:
        # No version on S3 yet: send every data file again, so that the first manifest's
        # record lists all of them (readers verify against it). A promotion sends only the
        # latest manifest, so the table appears on S3 in one PUT, complete; a backup keeps
        # its history.
        if policy == "promote":
            manifests = [max(manifests, key=lambda r: manifest_version(r) or 0)]
        return sorted(data + manifests)
    return sorted(
        [r for r in data if r not in remote]
        + [r for r in manifests if (manifest_version(r) or 0) > remote_version]
    )


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=not enabled,
        leave=False,
    )


class _ProgressStats(TransferStats):
    """Transfer statistics that also report every uploaded file's bytes to a callback."""

    def __init__(self, on_up: Callable[[int], None]) -> None:
        super().__init__()
        self._on_up = on_up

    def up(self, size: int) -> None:
        """Record one uploaded file and report its bytes."""
        super().up(size)
        self._on_up(size)


def push_plan(
    plan: UploadPlan, remote: RemoteTable, *, writer: str, progress: bool
) -> TransferStats:
    """Hash and upload the planned files (manifests last); returns what moved.

    Raises :class:`~lancesync_bench.errors.SyncConflict` when another writer committed one
    of the versions first, and :class:`~lancesync_bench.errors.S3Error` when S3 fails; a
    version exists on S3 only once its manifest is there, so a failure never leaves a
    version with missing files.
    """
    hashes: dict[str, str] = {}
    with _bar(plan.bytes, "hashing", progress) as bar:
        for rel in plan.send:
            path = plan.table_dir / rel
            hashes[rel] = sha256_file(path)
            bar.update(path.stat().st_size)
    with _bar(plan.bytes, "uploading", progress) as bar:
        stats = _ProgressStats(bar.update)
        remote.push(plan.table_dir, plan.send, stats, writer=writer, hashes=hashes)
    return stats
