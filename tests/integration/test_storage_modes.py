"""Each storage mode end to end against the embedded S3 server.

add, replace by id, get, search (k nearest first, with distance, never an old vector), delete
(and it stays deleted across sync/backup/restore and a reopen), status fields, input
rejection before any I/O, and maintenance after many single-document writes.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _storage_helpers import (
    ALL_MODES,
    DIM,
    FLUSH_EACH_WRITE,
    S3_MODES,
    content_hash,
    expected_nearest,
    live_from_records,
    make_docs,
    open_service,
    remote_records,
    s3_keys,
    service_live,
)

from lancesync_bench.errors import DocumentError, UserIdError
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.storage.doctable import MaintenancePolicy, MaintenanceReport
from lancesync_bench.storage.service import LanceDBStorageService

pytestmark = pytest.mark.integration

USER = "alice"


async def _push(service: LanceDBStorageService, mode: str) -> None:
    """Whatever this mode does to get local changes to S3 (nothing for the others)."""
    if mode == "local_primary_s3_sync":
        report = await service.sync(USER)
    elif mode == "local_primary_s3_backup":
        report = await service.backup(USER)
    else:
        return
    assert report.reachable, report.error


def _assert_search_is_exact(
    results: list[dict[str, Any]], live: dict[str, dict[str, Any]], query: list[float], k: int
) -> None:
    assert len(results) == min(k, len(live))
    assert [r["id"] for r in results] == expected_nearest(live, query, k)
    distances = [r["distance"] for r in results]
    assert all(d is not None and math.isfinite(d) for d in distances)
    assert distances == sorted(distances)
    q = np.asarray(query, np.float32)
    for r in results:
        # The distance is the squared L2 distance to the vector the result carries, and that
        # vector is the live one (never an older record's).
        assert r["vector"] == pytest.approx(live[r["id"]]["vector"], abs=1e-6)
        want = float(np.sum((np.asarray(r["vector"], np.float32) - q) ** 2))
        assert r["distance"] == pytest.approx(want, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_mode_end_to_end(mode: str, s3: S3Endpoint, tmp_path: Path) -> None:
    async def scenario() -> None:
        docs = make_docs(30, tag="v1")
        async with open_service(mode, tmp_path, s3) as svc:
            assert await svc.add_documents(USER, docs) == 30
            got = await svc.get_document(USER, "d7")
            assert got is not None
            assert got["text"] == "d7 v1"
            assert got["metadata"] == {"i": 7, "tag": "v1"}
            assert got["vector"] == pytest.approx(docs[7]["vector"])
            assert await svc.get_document(USER, "nope") is None

            # Replace d3 with a far-away vector: its old vector must never come back.
            old_vector = docs[3]["vector"]
            new = {"id": "d3", "text": "d3 replaced", "vector": [50.0] * DIM, "metadata": {}}
            await svc.add_documents(USER, [new])
            got = await svc.get_document(USER, "d3")
            assert got is not None
            assert (got["text"], got["vector"]) == ("d3 replaced", [50.0] * DIM)
            results = await svc.search(USER, old_vector, k=5)
            assert "d3" not in [r["id"] for r in results]
            assert all(r["distance"] > 0 for r in results)

            assert await svc.delete_documents(USER, ["d4", "d5"]) == 2
            assert await svc.get_document(USER, "d4") is None

            live = await service_live(svc, USER)
            assert len(live) == 28
            assert "d4" not in live
            assert live["d3"]["text"] == "d3 replaced"
            for query in (docs[4]["vector"], docs[10]["vector"], [0.0] * DIM):
                results = await svc.search(USER, query, k=5)
                _assert_search_is_exact(results, live, query, 5)
                assert not {"d4", "d5"} & {r["id"] for r in results}
            assert len(await svc.search(USER, [0.0] * DIM, k=100)) == 28

            status = await svc.status(USER)
            assert status.mode == mode
            assert status.user_id == USER
            assert status.documents == 28
            assert status.local_version is not None
            if status.write_tier is None:  # S3 primary: every write is a commit
                assert status.local_version >= 4
            else:  # three writes through the log, flushed into one version by status()
                assert status.write_tier["log_frames"] == 3
                assert status.write_tier["memory_rows"] == 0
                assert status.write_tier["lance_rows_flushed"] == 33  # 30 + 1 + 2 tombstones
            assert status.last_error is None
            before_push = content_hash(live)

            await _push(svc, mode)
            if mode == "local_primary_s3_backup":
                report = await svc.restore(USER)
                assert report.reachable
                assert report.remote_version is not None
            status = await svc.status(USER)
            if mode == "local_only":
                assert (status.remote_version, status.in_sync) == (None, None)
            else:
                assert status.remote_version is not None
                assert status.in_sync is True
                assert status.pending_changes == 0
            if mode == "local_primary_s3_sync":
                assert status.last_push is not None
                assert status.last_pull is not None
            if mode == "s3_primary_local_cache":
                assert status.reads_may_be_stale is False
                assert status.reachable is True
                assert status.remote_version == status.local_version
            assert await svc.get_document(USER, "d4") is None
            assert content_hash(await service_live(svc, USER)) == before_push

        # A new service over the same folder (and S3) holds exactly the same documents.
        async with open_service(mode, tmp_path, s3) as svc:
            assert await svc.get_document(USER, "d4") is None
            assert content_hash(await service_live(svc, USER)) == before_push
            await _push(svc, mode)
        if mode == "local_only":
            assert s3_keys(s3) == []
        else:
            live_on_s3 = await _remote_live(s3)
            assert content_hash(live_on_s3) == before_push
            assert "d4" not in live_on_s3

    asyncio.run(scenario())


async def _remote_live(s3: S3Endpoint) -> dict[str, dict[str, Any]]:
    return live_from_records(await remote_records(s3, USER))


BAD_USER_IDS = ["../x", "a/b", "", "\x00", "a\x00b", ".hidden", "x" * 129, "usér", "a b", "..", 7]


@pytest.mark.parametrize("mode", ["local_primary_s3_backup", "s3_primary_local_cache"])
def test_user_id_rejected_before_any_io(mode: str, s3: S3Endpoint, tmp_path: Path) -> None:
    async def scenario() -> None:
        doc = make_docs(1)
        async with open_service(mode, tmp_path, s3) as svc:
            for bad in BAD_USER_IDS:
                calls = [
                    svc.add_documents(bad, doc),  # type: ignore[arg-type]
                    svc.get_document(bad, "d0"),  # type: ignore[arg-type]
                    svc.search(bad, [0.0] * DIM, k=1),  # type: ignore[arg-type]
                    svc.delete_documents(bad, ["d0"]),  # type: ignore[arg-type]
                    svc.status(bad),  # type: ignore[arg-type]
                    svc.backup(bad),  # type: ignore[arg-type]
                    svc.restore(bad),  # type: ignore[arg-type]
                    svc.get_user_connection(bad),  # type: ignore[arg-type]
                ]
                for call in calls:
                    with pytest.raises(UserIdError):
                        await call
            assert list(tmp_path.iterdir()) == []
            assert s3_keys(s3) == []
            # The longest allowed id and a dotted id work: the rule is not simply "reject".
            for good in ("x" * 128, "a.b-c_D9"):
                await svc.add_documents(good, doc)
                assert (await svc.get_document(good, "d0")) is not None
        assert sorted(p.name for p in (tmp_path / "users").iterdir()) == sorted(
            ["x" * 128, "a.b-c_D9"]
        )

    asyncio.run(scenario())


def _bad_documents() -> list[tuple[str, dict[str, Any]]]:
    good = make_docs(1, start=99)[0]
    return [
        ("short vector", {**good, "vector": [0.0] * (DIM - 1)}),
        ("long vector", {**good, "vector": [0.0] * (DIM + 1)}),
        ("NaN", {**good, "vector": [float("nan")] + [0.0] * (DIM - 1)}),
        ("infinity", {**good, "vector": [float("inf")] + [0.0] * (DIM - 1)}),
        ("text vector", {**good, "vector": "abcdefgh"}),
        ("missing id", {k: v for k, v in good.items() if k != "id"}),
        ("empty id", {**good, "id": ""}),
        ("int id", {**good, "id": 5}),
        ("missing text", {k: v for k, v in good.items() if k != "text"}),
        ("metadata set", {**good, "metadata": {"s": {1, 2}}}),
        ("metadata NaN", {**good, "metadata": {"x": float("nan")}}),
        ("metadata list", {**good, "metadata": [1, 2]}),
        ("unknown field", {**good, "extra": 1}),
    ]


@pytest.mark.parametrize("mode", ["local_primary_s3_sync", "s3_primary_local_cache"])
def test_invalid_documents_write_nothing(mode: str, s3: S3Endpoint, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_service(mode, tmp_path, s3) as svc:
            await svc.add_documents(USER, make_docs(5))
            before = await svc.status(USER)
            # Counting flushes the S3-primary write log; its objects are deleted in the
            # background. Let that finish so the listing below is of settled state.
            await svc.wait_idle(USER)
            keys_before = sorted(s3_keys(s3))
            for name, bad in _bad_documents():
                # The bad document comes second: the valid one before it is not written either.
                batch = [make_docs(1, start=50)[0], bad]
                with pytest.raises(DocumentError):
                    await svc.add_documents(USER, batch)
                with pytest.raises(DocumentError, match="no documents"):
                    await svc.add_documents(USER, [])
                after = await svc.status(USER)
                assert (after.documents, after.local_version) == (
                    before.documents,
                    before.local_version,
                ), name
            assert await svc.get_document(USER, "d50") is None
            assert sorted(s3_keys(s3)) == keys_before
            assert before.documents == 5

    asyncio.run(scenario())


@pytest.mark.parametrize("mode", ALL_MODES)
def test_maintenance_compacts_and_keeps_every_document(
    mode: str, s3: S3Endpoint, tmp_path: Path
) -> None:
    policy = MaintenancePolicy(
        max_fragments=8, max_flushes=8, keep_tombstones=mode == "local_primary_s3_sync"
    )

    async def scenario() -> None:
        docs = make_docs(20, tag="v1")
        async with open_service(mode, tmp_path, s3, policy=policy, tier=FLUSH_EACH_WRITE) as svc:
            for doc in docs:
                await svc.add_documents(USER, [doc])
            # Replacements and deletes leave dead records for maintenance to drop.
            for doc in make_docs(6, tag="v2"):
                await svc.add_documents(USER, [doc])
            await svc.delete_documents(USER, ["d19"])
            await svc.wait_idle(USER)
            db = await svc.get_user_connection(USER)
            table = await db.open_table("documents")
            auto = (await table.stats())["fragment_stats"]["num_fragments"]
            # Up to 27 single-row flushes; automatic maintenance ran every 8 of them.
            assert auto < 27
            assert (await svc.status(USER)).last_error is None

        # Reopened without automatic maintenance: an explicit pass compacts the new fragments
        # to a handful. Lance keeps fragments that different index segments cover apart (the
        # base, the one delta segment maintenance keeps, rows no index covers yet), and where
        # the earlier automatic passes stopped varies with timing: 2 to 4 remain. The
        # S3-primary mode lets up to 4 index deltas gather (each pass uploads its own), and
        # keeps up to one fragment apart per delta.
        most = 7 if mode == "s3_primary_local_cache" else 4
        async with open_service(mode, tmp_path, s3) as svc:
            for doc in make_docs(5, start=100):
                await svc.add_documents(USER, [doc])
                await svc.flush(USER)  # one Lance version and fragment each
            report = await svc.maintain(USER)
            assert isinstance(report, MaintenanceReport)
            assert report.fragments_before >= 6
            assert report.fragments_after <= most
            live = await service_live(svc, USER)
            assert len(live) == 24
            for i in range(25):
                if i == 19 or 20 <= i < 100:
                    continue
                got = await svc.get_document(USER, f"d{i}")
                assert got is not None
                assert got["text"] == f"d{i} {'v2' if i < 6 else 'v1'}"
            for i in range(100, 105):
                assert (await svc.get_document(USER, f"d{i}")) is not None
            assert await svc.get_document(USER, "d19") is None
            query = docs[12]["vector"]
            _assert_search_is_exact(await svc.search(USER, query, k=6), live, query, 6)
            if mode == "local_primary_s3_sync":
                # Tombstones survive maintenance in sync mode (another device may not know yet).
                table = await (await svc.get_user_connection(USER)).open_table("documents")
                rows = (await table.to_arrow()).to_pylist()
                assert any(r["id"] == "d19" and r["deleted"] for r in rows)
            expected = content_hash(live)
            if mode in S3_MODES:
                if mode == "local_primary_s3_sync":
                    await svc.sync(USER)
                elif mode == "local_primary_s3_backup":
                    await svc.backup(USER)
                assert content_hash(await _remote_live(s3)) == expected

    asyncio.run(scenario())
