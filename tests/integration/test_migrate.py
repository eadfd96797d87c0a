"""The spec's migration scenarios end to end against the embedded S3 server.

For each supported path: data written in the old mode is read through the storage service
configured for the new mode with the same live content (same SHA-256 over id, text,
metadata and vector bytes); a dry run changes nothing (S3 listing and local files
identical); and the refusals: a target that already holds another table, a desktop that
keeps writing after the handover, an interrupted upload that leaves no version behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from _storage_helpers import DIM, make_docs, open_service, s3_keys

from lancesync_bench.cli import main
from lancesync_bench.errors import ConfigError, S3Unavailable, SyncConflict
from lancesync_bench.migrate import MigrationError, content_hash, migrate_async
from lancesync_bench.migrate.report import MigrationReport
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.storage.service import LanceDBStorageService
from lancesync_bench.storage.tier import TierPolicy
from lancesync_bench.storage.transfer import RemoteTable

pytestmark = pytest.mark.integration

USER = "alice"
LOCAL = "local_only"
BACKUP = "local_primary_s3_backup"
SYNC = "local_primary_s3_sync"
PRIMARY = "s3_primary_local_cache"


def _env(ep: S3Endpoint, path: Path, device: str, **extra: str) -> dict[str, str]:
    """The environment a user would export: S3 settings, local path, dimension, device."""
    return {
        **ep.env(),
        "LOCAL_STORAGE_PATH": str(path),
        "EMBEDDING_DIM": str(DIM),
        "DEVICE_ID": device,
        "S3_MAX_RETRIES": "0",
        **extra,
    }


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``root``: relative path -> (size, mtime in ns)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


async def _write_history(svc: LanceDBStorageService, n: int = 300) -> set[str]:
    """Several commits: inserts, replacements and deletions; returns the live ids.

    Each write is flushed to a Lance version of its own (four versions).
    """
    await svc.add_documents(USER, make_docs(n // 2, tag="v1"))
    await svc.flush(USER)
    await svc.add_documents(USER, make_docs(n - n // 2, start=n // 2, tag="v1"))
    await svc.flush(USER)
    await svc.add_documents(USER, make_docs(25, start=10, tag="v2"))
    await svc.flush(USER)
    await svc.delete_documents(USER, ["d3", "d4", "d250"])
    await svc.flush(USER)
    return {f"d{i}" for i in range(n)} - {"d3", "d4", "d250"}


async def _hash_through_service(svc: LanceDBStorageService, ids: set[str]) -> str:
    """The content hash of the documents the service returns, one get per id."""
    docs = [await svc.get_document(USER, doc_id) for doc_id in sorted(ids)]
    assert all(d is not None for d in docs)
    rows: list[dict[str, Any]] = [d for d in docs if d is not None]
    table = pa.table(
        {
            "id": [d["id"] for d in rows],
            "text": [d["text"] for d in rows],
            "metadata": [json.dumps(d["metadata"], sort_keys=True) for d in rows],
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(np.asarray([d["vector"] for d in rows], np.float32).ravel()), DIM
            ),
        }
    )
    return content_hash(table)


def _assert_verified(report: MigrationReport, live: int) -> str:
    assert report.verified
    assert report.source_content is not None and report.target_content is not None
    assert report.source_content.live == report.target_content.live == live
    assert report.source_content.content_sha256 == report.target_content.content_sha256
    return report.source_content.content_sha256


def test_desktop_to_web_then_the_desktop_is_refused(s3: S3Endpoint, tmp_path: Path) -> None:
    desktop, web = tmp_path / "desktop", tmp_path / "web"
    env = _env(s3, desktop, "desk")

    async def scenario() -> None:
        async with open_service(BACKUP, desktop, s3, device="desk") as svc:
            await svc.add_documents(USER, make_docs(100, start=300, tag="early"))
            assert (await svc.backup(USER)).reachable  # an earlier backup; the rest is pending
            ids = await _write_history(svc) | {f"d{i}" for i in range(300, 400)}
        s3_before, local_before = s3_keys(s3), _tree(desktop)

        dry = await migrate_async(USER, BACKUP, PRIMARY, env=env, dry_run=True)
        # Four flushed writes (and the id-index updates that follow flushes) are pending.
        assert dry.files > 0 and dry.bytes > 0 and len(dry.versions) >= 4
        assert not dry.verified
        assert s3_keys(s3) == s3_before and _tree(desktop) == local_before

        report = await migrate_async(USER, BACKUP, PRIMARY, env=env)
        digest = _assert_verified(report, len(ids))
        assert (report.files, report.versions) == (dry.files, dry.versions)
        assert report.source_version == report.target_version

        # The web backend, on a machine of its own, reads the backup as its primary.
        async with open_service(PRIMARY, web, s3, device="web") as svc:
            assert await _hash_through_service(svc, ids) == digest
            assert len(await svc.search(USER, [0.0] * DIM, k=500)) == len(ids)
            await svc.add_documents(USER, make_docs(1, start=900, tag="web"))

        # The desktop did not hand over and keeps writing: its next backup is refused, and
        # so is a new migration.
        async with open_service(BACKUP, desktop, s3, device="desk") as svc:
            await svc.add_documents(USER, make_docs(200, start=1000, tag="late"))
            with pytest.raises(SyncConflict):
                await svc.backup(USER)
        for dry_run in (True, False):
            with pytest.raises(MigrationError, match="another writer"):
                await migrate_async(USER, BACKUP, PRIMARY, env=env, dry_run=dry_run)
        async with open_service(PRIMARY, web, s3, device="web") as svc:
            assert await svc.get_document(USER, "d1000") is None  # the late write stayed local
            assert await svc.get_document(USER, "d900") is not None

    asyncio.run(scenario())


def test_desktop_migration_tells_manifests_apart_by_content(s3: S3Endpoint, tmp_path: Path) -> None:
    """Another writer's commit of the same version often has the same size: bytes decide."""
    env = _env(s3, tmp_path, "desk")

    async def scenario() -> None:
        async with open_service(BACKUP, tmp_path, s3, device="desk") as svc:
            await svc.add_documents(USER, make_docs(20))
        assert (await migrate_async(USER, BACKUP, PRIMARY, env=env)).verified
        client = s3.client()
        key = max(k for k in s3_keys(s3) if "/_versions/" in k)  # u64::MAX - v: the oldest
        body = client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
        forged = bytes(reversed(body))
        client.put_object(
            Bucket=s3.bucket,
            Key=key,
            Body=forged,
            Metadata={"sha256": hashlib.sha256(forged).hexdigest()},
        )
        with pytest.raises(MigrationError, match="another writer"):
            await migrate_async(USER, BACKUP, PRIMARY, env=env, dry_run=True)

    asyncio.run(scenario())


def test_local_development_promoted_to_cloud(s3: S3Endpoint, tmp_path: Path) -> None:
    env = _env(s3, tmp_path, "dev")

    async def scenario() -> None:
        async with open_service(LOCAL, tmp_path, s3, device="dev") as svc:
            ids = await _write_history(svc)
        local_before = _tree(tmp_path)

        dry = await migrate_async(USER, LOCAL, PRIMARY, env=env, dry_run=True)
        assert s3_keys(s3) == [] and _tree(tmp_path) == local_before
        assert dry.files > 0 and dry.bytes > 0 and dry.target_version is None
        assert dry.versions == [dry.source_version]  # one manifest: the table appears at once

        report = await migrate_async(USER, LOCAL, PRIMARY, env=env)
        digest = _assert_verified(report, len(ids))
        assert (report.files, report.bytes, report.versions) == (dry.files, dry.bytes, dry.versions)
        assert _tree(tmp_path) == local_before  # the source is left as it was
        manifests = [k for k in s3_keys(s3) if "/_versions/" in k]
        assert len(manifests) == 1

        again = await migrate_async(USER, LOCAL, PRIMARY, env=env)  # idempotent
        assert again.files == 0 and again.verified

        # Production, here on the same machine (its cache goes beside the old table).
        async with open_service(PRIMARY, tmp_path, s3, device="prod") as svc:
            assert await _hash_through_service(svc, ids) == digest
            await svc.add_documents(USER, make_docs(2, start=500, tag="prod"))
            got = await svc.get_document(USER, "d501")
            assert got is not None and got["text"] == "d501 prod"
            assert await svc.get_document(USER, "d3") is None
        async with open_service(PRIMARY, tmp_path / "second", s3, device="prod2") as svc:
            assert await svc.get_document(USER, "d500") is not None

        # Once production has written, the old local table is never pushed over it.
        s3_before = s3_keys(s3)
        with pytest.raises(MigrationError, match="already holds a table"):
            await migrate_async(USER, LOCAL, PRIMARY, env=env)
        assert s3_keys(s3) == s3_before

    asyncio.run(scenario())


def test_promotion_refuses_a_target_holding_another_table(s3: S3Endpoint, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_service(PRIMARY, tmp_path / "other", s3, device="other") as svc:
            await svc.add_documents(USER, make_docs(5, prefix="x"))
        async with open_service(LOCAL, tmp_path / "dev", s3, device="dev") as svc:
            await svc.add_documents(USER, make_docs(50))
        s3_before, local_before = s3_keys(s3), _tree(tmp_path / "dev")
        env = _env(s3, tmp_path / "dev", "dev")
        for dry_run in (True, False):
            with pytest.raises(MigrationError, match="already holds a table"):
                await migrate_async(USER, LOCAL, PRIMARY, env=env, dry_run=dry_run)
        assert s3_keys(s3) == s3_before and _tree(tmp_path / "dev") == local_before

    asyncio.run(scenario())


def test_interrupted_promotion_leaves_no_version_and_resumes(
    s3: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(s3, tmp_path, "dev")

    def refuse(*_: object, **__: object) -> bool:
        raise S3Unavailable("committing the manifest: S3 is unreachable (test)")

    async def scenario() -> None:
        async with open_service(LOCAL, tmp_path, s3, device="dev") as svc:
            ids = await _write_history(svc, n=120)
        local_before = _tree(tmp_path)
        with monkeypatch.context() as patch:
            patch.setattr(RemoteTable, "_put_manifest", refuse)
            with pytest.raises(S3Unavailable):
                await migrate_async(USER, LOCAL, PRIMARY, env=env)
        keys = s3_keys(s3)
        assert keys and not [k for k in keys if "/_versions/" in k]  # data only: no table
        assert _tree(tmp_path) == local_before
        report = await migrate_async(USER, LOCAL, PRIMARY, env=env)
        _assert_verified(report, len(ids))

    asyncio.run(scenario())


def test_web_local_backend_to_cloud(s3: S3Endpoint, tmp_path: Path) -> None:
    laptop, other, cloud = tmp_path / "laptop", tmp_path / "other", tmp_path / "cloud"
    env = _env(s3, laptop, "laptop")

    async def scenario() -> None:
        async with (
            open_service(SYNC, laptop, s3, device="laptop") as mine,
            open_service(SYNC, other, s3, device="other") as theirs,
        ):
            await mine.add_documents(USER, make_docs(200, tag="laptop"))
            assert (await mine.sync(USER)).reachable
            await theirs.add_documents(USER, make_docs(60, start=180, tag="other"))
            assert (await theirs.sync(USER)).reachable
            # Pending on the laptop: new documents, a replacement and a deletion.
            await mine.add_documents(USER, make_docs(40, start=300, tag="late"))
            await mine.add_documents(USER, make_docs(1, start=5, tag="late"))
            await mine.delete_documents(USER, ["d7"])
        s3_before, local_before = s3_keys(s3), _tree(laptop)

        dry = await migrate_async(USER, SYNC, PRIMARY, env=env, dry_run=True)
        assert dry.records == 42 and dry.bytes > 0 and dry.files > 0
        assert dry.download_files > 0  # the other device's commit
        assert s3_keys(s3) == s3_before and _tree(laptop) == local_before

        report = await migrate_async(USER, SYNC, PRIMARY, env=env)
        assert report.records == 42
        ids = {f"d{i}" for i in range(240)} | {f"d{i}" for i in range(300, 340)}
        digest = _assert_verified(report, len(ids - {"d7"}))
        async with open_service(PRIMARY, cloud, s3, device="cloud") as svc:
            assert await _hash_through_service(svc, ids - {"d7"}) == digest
            assert await svc.get_document(USER, "d7") is None
            got = await svc.get_document(USER, "d190")
            assert got is not None and got["text"] == "d190 other"

    asyncio.run(scenario())


def test_dimension_mismatch_is_a_configuration_error(s3: S3Endpoint, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_service(LOCAL, tmp_path, s3, device="dev") as svc:
            await svc.add_documents(USER, make_docs(3))
        env = _env(s3, tmp_path, "dev", EMBEDDING_DIM="384")
        with pytest.raises(ConfigError, match=r"EMBEDDING_DIM=384 .* set EMBEDDING_DIM=8"):
            await migrate_async(USER, LOCAL, PRIMARY, env=env)
        assert s3_keys(s3) == []

    asyncio.run(scenario())


def test_cli_pairs_dry_run_and_missing_table(
    s3: S3Endpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in _env(s3, tmp_path, "dev").items():
        monkeypatch.setenv(name, value)
    base = ["migrate", "--user", USER, "--no-progress"]

    assert main([*base, "--from", LOCAL, "--to", SYNC]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"allowed: {BACKUP} -> {PRIMARY}, {LOCAL} -> {PRIMARY}, {SYNC} -> {PRIMARY}" in err[0]

    assert main([*base, "--from", LOCAL, "--to", PRIMARY]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "there is no table" in err[0]

    async def write() -> None:
        async with open_service(LOCAL, tmp_path, s3, device="dev") as svc:
            await svc.add_documents(USER, make_docs(30))

    asyncio.run(write())
    assert main([*base, "--from", LOCAL, "--to", PRIMARY, "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] is True and out["files"] > 0 and out["verified"] is False
    assert s3_keys(s3) == []
    assert main([*base, "--from", LOCAL, "--to", PRIMARY]) == 0
    text = capsys.readouterr().out
    assert "verified  yes" in text and "next steps:" in text
    assert s3.secret_access_key.reveal() not in text


def test_writes_left_in_the_write_log_by_a_crash_are_migrated(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    """The app died before its log was flushed: migrate flushes it before moving the table."""
    env = _env(s3, tmp_path, "dev")
    wal = tmp_path / "users" / USER / "documents.wal"

    async def scenario() -> None:
        async with open_service(LOCAL, tmp_path, s3, device="dev") as svc:
            await svc.add_documents(USER, make_docs(20, tag="v1"))
        # A second run of the app, abandoned without close() and never flushed (a crash).
        crashed = open_service(LOCAL, tmp_path, s3, device="dev", tier=TierPolicy(flush_age_s=3600))
        await crashed.add_documents(USER, make_docs(5, start=20, tag="late"))
        assert any(p.stat().st_size for p in wal.iterdir())

        dry = await migrate_async(USER, LOCAL, PRIMARY, env=env, dry_run=True)
        assert any("write-log segment" in note for note in dry.notes)
        report = await migrate_async(USER, LOCAL, PRIMARY, env=env)
        assert report.verified
        async with open_service(PRIMARY, tmp_path / "web", s3, device="web") as svc:
            got = await svc.get_document(USER, "d24")
            assert got is not None and got["text"] == "d24 late"
            assert len(await svc.search(USER, [0.0] * DIM, k=100)) == 25

    asyncio.run(scenario())
