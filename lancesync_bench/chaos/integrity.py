"""Integrity faults: a corrupted object on S3, and an S3 that ignores conditional puts.

Corruption is bit rot: one byte of a stored object flips while its metadata (the SHA-256
recorded at upload) stays. A backup restore, a fresh S3-primary cache and a fresh sync
device must each detect it (``IntegrityError``) and install nothing: no file with the
rotten bytes may appear in their folders, and the backup's local table must be unchanged.

Conditional puts: a proxy strips ``If-None-Match`` (re-signing each request), so the real
server behind it overwrites existing keys. The service must refuse both multi-writer modes
there before writing anything, and the single-writer backup mode must still work.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from lancesync_bench.chaos.common import (
    BACKUP,
    PRIMARY,
    SYNC,
    document,
    folder_snapshot,
    open_service,
    s3_listing,
)
from lancesync_bench.chaos.context import SuiteContext
from lancesync_bench.chaos.report import Section
from lancesync_bench.errors import IntegrityError, S3Error
from lancesync_bench.netem import ConditionalStripper, NetworkProfile, S3Proxy
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.s3.probe import probe_conditional_put
from lancesync_bench.storage.transfer import manifest_version

__all__ = ["run_integrity"]

NAME = "integrity"
TITLE = "Corrupted objects, and S3 without conditional puts"

USER = "rot"


def _files_with(folder: Path, digest: str) -> list[str]:
    """Files below ``folder`` whose SHA-256 is ``digest``."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == digest:
            found.append(str(path.relative_to(folder)))
    return found


def _rot(ep: S3Endpoint, key: str) -> tuple[bytes, str]:
    """Flip one byte of an object in place, keeping its metadata; (original, rotten sha)."""
    client = ep.client()
    obj = client.get_object(Bucket=ep.bucket, Key=key)
    original: bytes = obj["Body"].read()
    rotten = bytearray(original)
    rotten[len(rotten) // 2] ^= 0xFF
    client.put_object(Bucket=ep.bucket, Key=key, Body=bytes(rotten), Metadata=obj["Metadata"])
    return original, hashlib.sha256(rotten).hexdigest()


def _restore_object(ep: S3Endpoint, key: str, body: bytes) -> None:
    client = ep.client()
    meta = client.head_object(Bucket=ep.bucket, Key=key)["Metadata"]
    client.put_object(Bucket=ep.bucket, Key=key, Body=body, Metadata=meta)


async def _attempt(
    ctx: SuiteContext, mode: str, name: str, ep: S3Endpoint, rotten_sha: str
) -> dict[str, Any]:
    """Open a fresh device of ``mode`` on the rotten table; what happened, and installs."""
    folder = ctx.folder("integrity", name)
    case: dict[str, Any] = {"reader": name, "mode": mode}
    table_dir = folder / "users" / USER / "documents.lance"
    async with open_service(mode, folder, ep, device=f"r-{name}") as svc:
        before = folder_snapshot(table_dir) if mode == BACKUP else {}
        try:
            if mode == BACKUP:
                await svc.add_documents(USER, [document("local-only", 1)])
                await svc.wait_idle(USER)  # the write log flushed into the table first
                before = folder_snapshot(table_dir)
                await svc.restore(USER)
            elif mode == SYNC:
                await svc.sync(USER)
            else:
                await svc.get_document(USER, "r0")
            case["error_type"] = None
        except Exception as exc:
            case["error_type"] = type(exc).__name__
            case["message"] = str(exc)[:300]
        if mode == BACKUP:
            case["local_table_unchanged"] = folder_snapshot(table_dir) == before
    case["rotten_files_installed"] = _files_with(folder, rotten_sha)
    case["detected"] = case["error_type"] == IntegrityError.__name__
    return case


async def _corruption(ctx: SuiteContext, section: Section) -> None:
    ep = ctx.endpoint_below("rot")
    async with open_service(BACKUP, ctx.folder("integrity", "writer"), ep, device="w") as svc:
        await svc.add_documents(USER, [document(f"r{i}", i) for i in range(20)])
        report = await svc.backup(USER)
        if not report.reachable:
            raise RuntimeError(f"backup failed: {report.error}")
    listing = s3_listing(ep, "users", USER, "documents.lance")
    data_key = next(k for k in sorted(listing) if "/data/" in k)
    table_key = ep.key("users", USER, "documents.lance") + "/"
    manifest_key = max(
        (k for k in listing if manifest_version(k[len(table_key) :]) is not None),
        key=lambda k: manifest_version(k[len(table_key) :]) or 0,
    )
    cases = []
    for target, key in (("data file", data_key), ("manifest", manifest_key)):
        original, rotten_sha = _rot(ep, key)
        try:
            for mode, name in ((BACKUP, "restore"), (PRIMARY, "cache"), (SYNC, "sync")):
                case = await _attempt(ctx, mode, f"{name}-{target.split()[0]}", ep, rotten_sha)
                case["object"] = target
                cases.append(case)
        finally:
            _restore_object(ep, key, original)
    section.figure(corruption_cases=cases)
    missed = [c for c in cases if not c["detected"]]
    installed = [c for c in cases if c["rotten_files_installed"]]
    changed = [c for c in cases if c.get("local_table_unchanged") is False]
    section.check(
        "a rotten object is detected by restore, cache and sync (IntegrityError)",
        not missed,
        f"{len(cases) - len(missed)}/{len(cases)} detected"
        + (f"; missed: {missed[0]['reader']} got {missed[0]['error_type']}" if missed else ""),
    )
    section.check(
        "a rotten object is never installed",
        not installed and not changed,
        f"{len(installed)} reader(s) hold rotten bytes, {len(changed)} local table(s) changed",
    )


async def _conditional(ctx: SuiteContext, section: Section) -> None:
    ep = ctx.endpoint_below("noconditional")
    stripper = ConditionalStripper(ep.secret_access_key)
    direct = probe_conditional_put(ep)
    cases: dict[str, Any] = {"probe_direct": direct.detail}
    with S3Proxy(str(ep.url), NetworkProfile(name="loopback"), rewrite=stripper) as proxy:
        pep = proxy.endpoint_for(ep)
        stripped = probe_conditional_put(pep)
        cases["probe_through_stripping_proxy"] = stripped.detail
        refused: dict[str, dict[str, Any]] = {}
        for mode in (PRIMARY, SYNC):
            folder = ctx.folder("integrity", f"noconditional-{mode}")
            keys_before = s3_listing(ep, "users")
            try:
                async with open_service(mode, folder, pep, device="nc") as svc:
                    await svc.add_documents(f"nc-{mode}", [document("x", 1)])
                refused[mode] = {"refused": False, "error_type": None}
            except S3Error as exc:
                refused[mode] = {
                    "refused": "If-None-Match" in str(exc),
                    "error_type": type(exc).__name__,
                    "message": str(exc)[:300],
                }
            refused[mode]["nothing_written"] = (
                s3_listing(ep, "users") == keys_before and not (folder / "users").exists()
            )
        backup_folder = ctx.folder("integrity", "noconditional-backup")
        async with open_service(BACKUP, backup_folder, pep, device="nc") as svc:
            await svc.add_documents("nc-backup", [document("b1", 1), document("b2", 2)])
            backed = await svc.backup("nc-backup")
        restore_folder = ctx.folder("integrity", "nc-restore")
        async with open_service(BACKUP, restore_folder, pep, device="nr") as svc:
            restored = await svc.restore("nc-backup")
            got = await svc.get_document("nc-backup", "b2")
    cases.update(refused=refused, stripped_requests=stripper.stripped)
    section.figure(conditional_put=cases)
    section.check(
        "the stripping proxy makes the real server ignore If-None-Match",
        direct.enforced and not stripped.enforced and stripper.stripped > 0,
        f"direct: {direct.statuses}, through the proxy: {stripped.statuses}",
    )
    section.check(
        "multi-writer modes refused without conditional puts, nothing written",
        all(r["refused"] and r["nothing_written"] for r in refused.values()),
        "; ".join(
            f"{m}: {r['error_type']}, nothing written {r['nothing_written']}"
            for m, r in refused.items()
        ),
    )
    section.check(
        "backup mode still backs up and restores there",
        backed.reachable and restored.reachable and got is not None,
        f"backup {backed.files_up} files, restore {restored.records_down} records",
    )


async def run_integrity(ctx: SuiteContext, section: Section) -> None:
    """The corruption and conditional-put checks."""
    await _corruption(ctx, section)
    await _conditional(ctx, section)
