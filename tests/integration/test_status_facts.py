"""``status()`` reports measured facts, and background upkeep failures are surfaced.

* backup: ``pending_changes`` counts the records no finished backup holds (a compaction,
  which makes versions but no changes, adds none);
* S3 primary without a cache: the remote version is read from S3, so another instance's
  commit shows as "not in sync" until this one's view catches up;
* a background maintenance pass that fails is counted in ``status().upkeep``, kept in
  ``last_error`` and logged; the next good pass clears the count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from _storage_helpers import FLUSH_EACH_WRITE, make_docs, open_service

from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.storage.doctable import DocTable, MaintenancePolicy

pytestmark = pytest.mark.integration

USER = "facts"


def test_backup_counts_pending_changes_not_versions(s3: S3Endpoint, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_service(
            "local_primary_s3_backup", tmp_path, s3, tier=FLUSH_EACH_WRITE
        ) as svc:
            await svc.add_documents(USER, make_docs(3))
            assert (await svc.status(USER)).pending_changes == 3
            assert (await svc.backup(USER)).reachable
            status = await svc.status(USER)
            assert (status.pending_changes, status.in_sync) == (0, True)

            await svc.add_documents(USER, make_docs(1, start=10))
            await svc.add_documents(USER, [{**make_docs(1)[0], "text": "replaced"}])
            await svc.delete_documents(USER, ["d1"])
            assert (await svc.status(USER)).pending_changes == 3  # one per write, 4 versions
            await svc.maintain(USER)  # more versions, no more changes
            status = await svc.status(USER)
            assert status.pending_changes == 3
            assert status.in_sync is False
            assert (await svc.backup(USER)).reachable
            status = await svc.status(USER)
            assert (status.pending_changes, status.in_sync) == (0, True)

    asyncio.run(scenario())


def test_s3_primary_without_cache_reads_the_remote_version_from_s3(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    no_cache = {"LOCAL_CACHE_ENABLED": "false"}

    async def scenario() -> None:
        async with (
            open_service("s3_primary_local_cache", tmp_path / "A", s3, device="A", **no_cache) as a,
            open_service("s3_primary_local_cache", tmp_path / "B", s3, device="B", **no_cache) as b,
        ):
            await a.add_documents(USER, make_docs(2))
            before = await b.status(USER)  # B opened its view of the table: in step
            assert before.remote_version == before.local_version
            await a.add_documents(USER, make_docs(2, start=5))
            status_a = await a.status(USER)
            assert status_a.in_sync and status_a.remote_version == status_a.local_version
            status_b = await b.status(USER)
            assert status_b.remote_version == status_a.remote_version
            assert status_b.local_version is not None
            assert status_b.local_version < status_b.remote_version
            assert status_b.in_sync is False

    asyncio.run(scenario())


def test_failed_background_maintenance_is_counted_logged_and_cleared(
    s3: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    real = DocTable.maintain

    async def failing(self: DocTable, policy: MaintenancePolicy) -> Any:
        raise OSError("disk gone (injected)")

    policy = MaintenancePolicy(max_fragments=2, max_flushes=2)

    async def scenario() -> None:
        async with open_service(
            "local_only", tmp_path, s3, policy=policy, tier=FLUSH_EACH_WRITE
        ) as svc:
            monkeypatch.setattr(DocTable, "maintain", failing)
            for i in range(4):
                await svc.add_documents(USER, make_docs(1, start=i))
                await svc.wait_idle(USER)
            status = await svc.status(USER)
            assert status.upkeep is not None
            assert status.upkeep["failures"] >= 1 and status.upkeep["total_failures"] >= 1
            assert "maintenance failed: OSError: disk gone (injected)" in (status.last_error or "")
            assert any("disk gone (injected)" in r.getMessage() for r in caplog.records)

            monkeypatch.setattr(DocTable, "maintain", real)
            for i in range(4, 8):
                await svc.add_documents(USER, make_docs(1, start=i))
                await svc.wait_idle(USER)
            upkeep = (await svc.status(USER)).upkeep
            assert upkeep is not None
            assert upkeep["failures"] == 0 and upkeep["total_failures"] >= 1
            assert upkeep["last_success"] is not None

    caplog.set_level(logging.WARNING, logger="lancesync_bench.storage")
    asyncio.run(scenario())


def test_background_push_bounds_what_exists_on_one_disk(s3: S3Endpoint, tmp_path: Path) -> None:
    """With the default period on, an acknowledged write reaches S3 by itself within one
    period (plus one push), in both local-primary S3 modes; the default is on."""
    from _storage_helpers import remote_records

    from lancesync_bench.config import DEFAULT_SYNC_INTERVAL_S, LanceDBSyncConfig

    assert DEFAULT_SYNC_INTERVAL_S > 0
    assert LanceDBSyncConfig.from_env(
        {"FRONTEND_TYPE": "desktop", "S3_BUCKET": "bucket"}
    ).sync_interval_s == (DEFAULT_SYNC_INTERVAL_S)
    period = 0.5

    async def reaches_s3(mode: str, where: Path) -> float:
        async with open_service(mode, where, s3, SYNC_INTERVAL_S=str(period)) as svc:
            user = f"{USER}-{where.name}"  # one S3 table per mode
            await svc.add_documents(user, make_docs(1, start=7, tag=mode))
            written = time.monotonic()
            while time.monotonic() - written < 20 * period:
                await asyncio.sleep(0.2)
                if mode == "local_primary_s3_sync":
                    try:
                        rows = (await remote_records(s3, user)).to_pylist()
                    except ValueError:  # no table on S3 yet
                        rows = []
                    if any(r["id"] == "d7" for r in rows):
                        return time.monotonic() - written
                elif (await svc.status(user)).background["last_success"] is not None:
                    return time.monotonic() - written
            raise AssertionError(f"{mode}: the write did not reach S3 within {20 * period} s")

    for mode, where in (
        ("local_primary_s3_sync", tmp_path / "sync"),
        ("local_primary_s3_backup", tmp_path / "backup"),
    ):
        # Within 20 periods, with no call: the bound is the period plus one push. How long
        # that push takes on a shared machine is for the benchmark, not for this test.
        asyncio.run(reaches_s3(mode, where))
