"""The S3-primary write tier: a write is one PUT of a log object on S3.

Each test runs the real service against the embedded S3 server. A "dead" instance stops as
a killed process does: its flusher stops, nothing is flushed or closed, and what it left on
S3 stays there.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from _storage_helpers import die, make_docs, open_service, remote_records, s3_keys

from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.storage import remote_stores
from lancesync_bench.storage.log import LogCorruptError
from lancesync_bench.storage.remote_stores import S3PrimaryStore
from lancesync_bench.storage.service import LanceDBStorageService
from lancesync_bench.storage.tier import TierPolicy

pytestmark = pytest.mark.integration

USER = "walt"
PRIMARY = "s3_primary_local_cache"
# No flush by age: writes stay in S3's log until a test flushes or closes.
HOLD = TierPolicy(flush_age_s=3600)


async def _store(svc: LanceDBStorageService) -> S3PrimaryStore:
    store = await svc._store(USER)
    assert isinstance(store, S3PrimaryStore)
    return store


def _log_keys(s3: S3Endpoint) -> list[str]:
    return [k for k in s3_keys(s3, "users") if ".wal/" in k]


def _ids_on_s3_table(s3: S3Endpoint) -> list[str]:
    async def read() -> list[str]:
        ids: list[str] = (await remote_records(s3, USER)).column("id").to_pylist()
        return ids

    return asyncio.run(read())


def test_concurrent_writes_share_a_put_and_each_is_acknowledged(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with open_service(PRIMARY, tmp_path / "A", s3, tier=HOLD) as svc:
            await svc.add_documents(USER, make_docs(1))
            store = await _store(svc)
            assert store.wal is not None
            puts_before = store.wal.flushes
            docs = make_docs(16, start=100)
            await asyncio.gather(*(svc.add_documents(USER, [d]) for d in docs))
            puts = store.wal.flushes - puts_before
            assert 1 <= puts < 16, puts  # group commit: fewer PUTs than writes
            assert store.wal.frames >= 17
            for d in docs:
                assert await svc.get_document(USER, d["id"]) is not None

    asyncio.run(scenario())


def test_a_killed_instance_loses_no_acknowledged_write(s3: S3Endpoint, tmp_path: Path) -> None:
    """Writes acknowledged and never flushed come back from S3's log when the instance
    starts again, and the close that follows folds them into the S3 table once each."""

    async def scenario() -> None:
        svc = open_service(PRIMARY, tmp_path / "A", s3, tier=HOLD)
        for i in range(12):
            await svc.add_documents(USER, make_docs(1, start=i))
        assert len(_log_keys(s3)) == 12
        die(svc)
        async with open_service(PRIMARY, tmp_path / "A", s3, tier=HOLD) as again:
            for i in range(12):
                assert await again.get_document(USER, f"d{i}") is not None, i
            replayed = (await _store(again)).tier
            assert replayed is not None and replayed.replayed_rows == 12

    asyncio.run(scenario())
    ids = _ids_on_s3_table(s3)
    assert sorted(ids) == sorted(f"d{i}" for i in range(12))  # once each
    assert _log_keys(s3) == []  # the close's flush deleted the log objects


def test_a_gone_writers_log_is_taken_over_by_another_instance(
    s3: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another instance reads a dead writer's log objects at once and, once they are older
    than ADOPT_AFTER_S (0 here), folds them into the S3 table and deletes them."""

    async def scenario() -> None:
        dead = open_service(PRIMARY, tmp_path / "W", s3, device="W", tier=HOLD)
        await dead.add_documents(USER, make_docs(5))
        die(dead)
        monkeypatch.setattr(remote_stores, "ADOPT_AFTER_S", 0.0)
        async with open_service(PRIMARY, tmp_path / "R", s3, device="R") as reader:
            for i in range(5):
                assert await reader.get_document(USER, f"d{i}") is not None
            await reader.flush(USER)
            await (await _store(reader)).wal.aclose()  # type: ignore[union-attr]

    asyncio.run(scenario())
    assert sorted(_ids_on_s3_table(s3)) == [f"d{i}" for i in range(5)]
    assert _log_keys(s3) == []


def test_a_damaged_log_object_stops_the_open_and_is_kept(s3: S3Endpoint, tmp_path: Path) -> None:
    async def scenario() -> None:
        svc = open_service(PRIMARY, tmp_path / "A", s3, tier=HOLD)
        await svc.add_documents(USER, make_docs(1))
        (key,) = _log_keys(s3)
        die(svc)
        client = s3.client()
        body = client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
        damaged = body[:20] + bytes([body[20] ^ 0xFF]) + body[21:]
        client.put_object(Bucket=s3.bucket, Key=key, Body=damaged)
        again = open_service(PRIMARY, tmp_path / "A", s3, tier=HOLD)
        with pytest.raises(LogCorruptError, match=key.rsplit("/", 1)[-1]):
            await again.get_document(USER, "d0")
        assert _log_keys(s3) == [key]  # nothing deleted

    asyncio.run(scenario())


def test_writes_are_one_put_and_flushes_keep_the_s3_table_current(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    """Within the staleness bound a write is one PUT; a flush (here by age) makes them one
    Lance version that plain LanceDB reads."""

    async def scenario() -> None:
        async with open_service(
            PRIMARY,
            tmp_path / "A",
            s3,
            tier=TierPolicy(flush_age_s=0.2),
            CACHE_MAX_STALENESS_MS="60000",
        ) as svc:
            for i in range(10):
                await svc.add_documents(USER, make_docs(1, start=i))
            store = await _store(svc)
            # The flusher runs by itself, once the writes are 0.2 s old; the deadline only
            # ends a test that would otherwise wait for ever (a commit is 3 PUTs).
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if store.tier is not None and store.tier.flushed_rows >= 10:
                    break
                await asyncio.sleep(0.05)
            assert store.tier is not None and store.tier.flushed_rows >= 10
            assert store.wal is not None and store.wal.flushes == 10

    asyncio.run(scenario())
    assert sorted(_ids_on_s3_table(s3)) == sorted(f"d{i}" for i in range(10))


def test_a_refresh_lists_the_writers_not_its_own_pile_of_log_objects(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    """Between flushes a writer's own log objects pile up; a refresh lists who has objects
    (one LIST with a delimiter) and then only the other writers' objects."""

    async def scenario() -> None:
        async with (
            open_service(PRIMARY, tmp_path / "A", s3, device="A", tier=HOLD) as a,
            open_service(PRIMARY, tmp_path / "B", s3, device="B", tier=HOLD) as b,
        ):
            for d in make_docs(12):
                await a.add_documents(USER, [d])
            wal = (await _store(a)).wal
            assert wal is not None and len(wal.mine) >= 12
            assert wal.list_others() == ([], 1)  # A's 12+ objects are not listed
            await b.add_documents(USER, make_docs(1, start=50))
            others, lists = wal.list_others()
            assert lists == 2 and {o.writer for o in others} == {"B"} and len(others) == 1
            await a.refresh(USER)
            assert await a.get_document(USER, "d50") is not None

    asyncio.run(scenario())


def test_a_view_near_the_bound_is_refreshed_in_the_background_and_a_write_waits_for_it(
    s3: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past three quarters of the staleness bound a refresh starts behind the caller's
    back; past the bound a caller waits for that refresh rather than starting another."""

    async def scenario() -> None:
        async with open_service(
            PRIMARY, tmp_path / "A", s3, tier=HOLD, CACHE_MAX_STALENESS_MS="20000"
        ) as svc:
            await svc.add_documents(USER, make_docs(1))
            store = await _store(svc)
            calls: list[float] = []
            release = asyncio.Event()
            real_refresh = store.refresh

            async def slow_refresh() -> object:
                calls.append(asyncio.get_running_loop().time())
                await release.wait()  # held until the test lets it finish
                return await real_refresh()

            monkeypatch.setattr(store, "refresh", slow_refresh)
            seen = store.replica.last_refresh
            # The view's age is set from now, right before each write, so that the time the
            # test took so far does not count: 0.8 of the bound old, the write returns at
            # once and leaves a refresh running (it starts at 0.75: a 1 s margin).
            store.replica.last_refresh = time.monotonic() - 16.0
            await asyncio.wait_for(svc.add_documents(USER, make_docs(1, start=10)), 10)
            assert len(calls) == 1 and store._ahead is not None and not store._ahead.done()
            # Past the bound: the next write waits for that refresh, and starts none.
            store.replica.last_refresh = time.monotonic() - 25.0
            write = asyncio.ensure_future(svc.add_documents(USER, make_docs(1, start=20)))
            await asyncio.sleep(0.3)
            assert not write.done() and len(calls) == 1
            release.set()
            await asyncio.wait_for(write, 10)
            assert len(calls) == 1  # the background refresh made the view fresh
            assert store.replica.last_refresh > seen
            for i in (0, 10, 20):
                assert await svc.get_document(USER, f"d{i}") is not None

    asyncio.run(scenario())
