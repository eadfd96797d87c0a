"""Several writers on one S3 prefix, backups and restores, and what each transfer costs.

* two sync-mode devices writing the same ids concurrently converge to the same live
  documents, lose no acknowledged write, and agree on the winner (later ``updated_at``,
  then the greater device id);
* a delete is not undone by a device that still held the old document;
* two S3-primary instances see each other's writes at once with a zero staleness bound,
  and only after a refresh with a long one;
* an S3-primary write costs no more S3 requests than LanceDB's own append, and an
  incremental backup or sync of one document moves only the files that write created;
* restore of the latest and of an older version (content as it was), and the next backup
  continues after a restore.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _storage_helpers import (
    DIM,
    TABLE,
    CountingEndpoint,
    content_hash,
    live_from_records,
    make_docs,
    open_service,
    read_table,
    remote_records,
    s3_keys,
    service_live,
    table_key,
)

from lancesync_bench.errors import LanceSyncError
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.storage import stores
from lancesync_bench.storage.service import LanceDBStorageService
from lancesync_bench.storage.tier import TierPolicy

pytestmark = pytest.mark.integration

USER = "bob"
SYNC = "local_primary_s3_sync"
PRIMARY = "s3_primary_local_cache"
BACKUP = "local_primary_s3_backup"


async def _sync_ok(svc: LanceDBStorageService) -> None:
    report = await svc.sync(USER)
    assert report.reachable, report.error


async def _records(svc: LanceDBStorageService) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (await read_table(await svc.get_user_connection(USER))).to_pylist()
    return rows


def test_two_devices_converge_without_losing_writes(s3: S3Endpoint, tmp_path: Path) -> None:
    shared = [f"s{i}" for i in range(8)]  # both devices write these ids
    written: dict[str, list[str]] = {"A": [], "B": []}  # texts of acknowledged writes

    async def writer(svc: LanceDBStorageService, dev: str) -> None:
        rng = random.Random(f"writer-{dev}")
        for rnd in range(12):
            ids = [*rng.sample(shared, 2), f"{dev.lower()}{rnd}"]
            batch = []
            for doc_id in ids:
                doc = make_docs(1, start=rnd, seed=ord(dev))[0]
                batch.append({**doc, "id": doc_id, "text": f"{doc_id}|{dev}|{rnd}"})
            await svc.add_documents(USER, batch)
            written[dev] += [d["text"] for d in batch]
            if rnd % 4 == 3:
                await _sync_ok(svc)

    async def scenario() -> None:
        async with (
            open_service(SYNC, tmp_path / "A", s3, device="A") as a,
            open_service(SYNC, tmp_path / "B", s3, device="B") as b,
        ):
            # Writes, and syncs of both devices, interleave; A also syncs twice at once.
            await asyncio.gather(writer(a, "A"), writer(b, "B"), a.sync(USER), a.sync(USER))
            for svc in (a, b, a):
                await _sync_ok(svc)
            live_a, live_b = await service_live(a, USER), await service_live(b, USER)
            assert content_hash(live_a) == content_hash(live_b)
            assert live_a == live_b
            expected_ids = {t.split("|")[0] for t in written["A"] + written["B"]}
            assert set(live_a) == expected_ids

            for svc in (a, b):
                records = await _records(svc)
                texts = [r["text"] for r in records]
                # Every acknowledged write is held by both devices, each exactly once.
                assert sorted(texts) == sorted(written["A"] + written["B"])
                for doc_id in shared:
                    mine = [r for r in records if r["id"] == doc_id]
                    winner = max(mine, key=lambda r: (r["updated_at"], r["origin"]))
                    got = await svc.get_document(USER, doc_id)
                    assert got is not None
                    assert (got["text"], got["updated_at"]) == (
                        winner["text"],
                        winner["updated_at"],
                    )
                # Search never shows one id twice, even after the doubled sync.
                results = await svc.search(USER, [0.0] * DIM, k=100)
                assert len(results) == len(expected_ids)
                assert {r["id"] for r in results} == expected_ids

            # The shared S3 table holds the same live documents.
            assert content_hash(live_from_records(await remote_records(s3, USER))) == (
                content_hash(live_a)
            )
            status = await a.status(USER)
            assert (status.pending_changes, status.in_sync) == (0, True)

    asyncio.run(scenario())


def test_equal_timestamps_resolve_to_the_same_winner(
    s3: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with (
            open_service(SYNC, tmp_path / "A", s3, device="A") as a,
            open_service(SYNC, tmp_path / "B", s3, device="B") as b,
        ):
            await a.add_documents(USER, make_docs(3, tag="base"))
            for svc in (a, b):
                await _sync_ok(svc)
            # Both devices stamp their write of d1 with the very same nanosecond.
            tie = stores.time.time_ns() + 10**9

            def take_tie(self: stores.Clock, n: int) -> list[int]:
                self.last = tie
                return [tie] * n

            monkeypatch.setattr(stores.Clock, "take", take_tie)
            await a.add_documents(USER, [{**make_docs(1, start=1)[0], "text": "from A"}])
            await b.add_documents(USER, [{**make_docs(1, start=1)[0], "text": "from B"}])
            monkeypatch.undo()
            for svc in (a, b, a):
                await _sync_ok(svc)
            for svc in (a, b):
                got = await svc.get_document(USER, "d1")
                assert got is not None
                assert (got["text"], got["updated_at"]) == ("from B", tie)  # "B" > "A"
            assert await service_live(a, USER) == await service_live(b, USER)

    asyncio.run(scenario())


def test_deleted_document_does_not_come_back(s3: S3Endpoint, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            open_service(SYNC, tmp_path / "A", s3, device="A") as a,
            open_service(SYNC, tmp_path / "B", s3, device="B") as b,
        ):
            await a.add_documents(USER, make_docs(6))
            for svc in (a, b):
                await _sync_ok(svc)
            assert await b.get_document(USER, "d2") is not None
            await a.delete_documents(USER, ["d2", "d3"])
            # B still holds d2 and d3, and writes other documents meanwhile.
            await b.add_documents(USER, make_docs(2, start=10))
            for svc in (b, a, b, a):
                await _sync_ok(svc)
            # Compaction on both sides keeps the tombstones that sync relies on.
            await b.maintain(USER)
            await a.maintain(USER)
            for svc in (b, a, b):
                await _sync_ok(svc)
            for svc in (a, b):
                assert await svc.get_document(USER, "d2") is None
                assert await svc.get_document(USER, "d3") is None
                ids = {r["id"] for r in await svc.search(USER, [0.0] * DIM, k=20)}
                assert ids == {"d0", "d1", "d4", "d5", "d10", "d11"}
            # A later write of the same id (last writer wins) brings it back on purpose.
            await b.add_documents(USER, [{**make_docs(1, start=3)[0], "text": "d3 again"}])
            for svc in (b, a):
                await _sync_ok(svc)
            got = await a.get_document(USER, "d3")
            assert got is not None
            assert got["text"] == "d3 again"
            assert await service_live(a, USER) == await service_live(b, USER)

    asyncio.run(scenario())


def test_a_sync_pushes_writes_still_in_memory_without_flushing_them(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    """Between two syncs a device's new records sit in its write tier: a sync pushes them
    from there (no local flush on its path), and pushes nothing twice once the tier has
    flushed them; a delete travels the same way."""

    async def scenario() -> None:
        # A's tier flushes only when asked: flushed by age during a slow sync, the records
        # would be pushed from Lance, and the count below would measure the machine.
        held = TierPolicy(flush_age_s=3600)
        async with (
            open_service(SYNC, tmp_path / "A", s3, device="A", tier=held) as a,
            open_service(SYNC, tmp_path / "B", s3, device="B") as b,
        ):
            await a.add_documents(USER, make_docs(3))
            await _sync_ok(a)
            tier = (await a._store(USER)).tier
            assert tier is not None
            flushes = tier.flushes
            await a.add_documents(USER, [{**make_docs(1)[0], "text": "d0 edited"}])
            await a.delete_documents(USER, ["d1"])
            report = await a.sync(USER)
            assert report.reachable and report.records_up == 2, report
            assert tier.flushes == flushes  # pushed from memory: nothing flushed for it
            await _sync_ok(b)
            got = await b.get_document(USER, "d0")
            assert got is not None and got["text"] == "d0 edited"
            assert await b.get_document(USER, "d1") is None
            await a.flush(USER)
            assert tier.flushes > flushes
            assert (await a.sync(USER)).records_up == 0
            assert await service_live(a, USER) == await service_live(b, USER)

    asyncio.run(scenario())


def test_an_instance_opening_while_another_folds_its_log_sees_the_writes(
    s3: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An S3-primary open reads two things: S3's newest version and the other writers' log
    objects. A writer folds its log into a new version and then deletes the objects, so
    the log must be read first; read second, a fold landing between the two hides the
    writes from both (and for as long as the staleness bound lets the view stand)."""
    from lancesync_bench.storage.replica import Replica

    async def scenario() -> None:
        async with (
            open_service(PRIMARY, tmp_path / "writer", s3, device="writer") as writer,
            open_service(
                PRIMARY, tmp_path / "reader", s3, device="reader", CACHE_MAX_STALENESS_MS="3600000"
            ) as reader,
        ):
            await writer.add_documents(USER, make_docs(3))
            await writer.flush(USER)  # a first version, so the reader has one to install
            await writer.add_documents(USER, make_docs(2, start=3))  # in the writer's log only
            opened = Replica.open
            folded: list[bool] = []

            async def open_then_fold(self: Replica, *args: Any, **kwargs: Any) -> None:
                await opened(self, *args, **kwargs)
                if "reader" in str(self.root) and not folded:
                    # Right after the reader installed S3's newest version: the writer
                    # folds its log into a newer one and deletes the log objects.
                    folded.append(True)
                    await writer.flush(USER)
                    await writer.wait_idle(USER)

            monkeypatch.setattr(Replica, "open", open_then_fold)
            got = await reader.get_document(USER, "d4")
            assert folded, "the reader's open was not interleaved with the writer's fold"
            assert got is not None and got["text"] == "d4", "a write folded during the open"

    asyncio.run(scenario())


def test_s3_primary_instances_see_each_other(s3: S3Endpoint, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            open_service(PRIMARY, tmp_path / "one", s3, device="one") as one,
            open_service(PRIMARY, tmp_path / "two", s3, device="two") as two,
            open_service(
                PRIMARY, tmp_path / "lazy", s3, device="lazy", CACHE_MAX_STALENESS_MS="3600000"
            ) as lazy,
        ):
            await one.add_documents(USER, make_docs(5, tag="one"))
            assert await lazy.get_document(USER, "d0") is not None  # opened after the write
            got = await two.get_document(USER, "d4")
            assert got is not None
            assert got["text"] == "d4 one"

            await two.add_documents(USER, [{**make_docs(1, start=4)[0], "text": "d4 two"}])
            await one.delete_documents(USER, ["d0"])
            got = await one.get_document(USER, "d4")
            assert got is not None
            assert got["text"] == "d4 two"
            assert await two.get_document(USER, "d0") is None
            assert [r["id"] for r in await two.search(USER, make_docs(1)[0]["vector"], k=1)] != [
                "d0"
            ]

            # With an hour's staleness bound the third instance serves its cache until refresh.
            got = await lazy.get_document(USER, "d4")
            assert got is not None
            assert got["text"] == "d4 one"
            report = await lazy.refresh(USER)
            assert report.reachable
            # The two writes since are read from S3: as log objects (one each) while their
            # writers have not folded them into a version yet, else as that version's files.
            assert report.files_down >= 2
            got = await lazy.get_document(USER, "d4")
            assert got is not None
            assert got["text"] == "d4 two"
            assert await lazy.get_document(USER, "d0") is None

            # Concurrent writers on one S3 table: every write lands, none overwrites another.
            async def burst(svc: LanceDBStorageService, name: str) -> None:
                for i in range(6):
                    await svc.add_documents(USER, make_docs(1, start=100 + i, prefix=name))

            await asyncio.gather(burst(one, "one-"), burst(two, "two-"), burst(lazy, "lazy-"))
            # Every acknowledged write is on S3 in a log object; a flush folds it into a
            # version of the S3 table, which plain LanceDB then reads.
            await asyncio.gather(*(svc.flush(USER) for svc in (one, two, lazy)))
            live_one = await service_live(one, USER)  # the S3 table itself
            assert len(live_one) == 4 + 18
            for svc in (one, two):
                for name in ("one-", "two-", "lazy-"):
                    assert await svc.get_document(USER, f"{name}105") is not None
            await lazy.refresh(USER)
            assert (await lazy.status(USER)).documents == 22

    asyncio.run(scenario())


def test_s3_primary_write_is_one_request(s3: S3Endpoint, tmp_path: Path) -> None:
    counting = CountingEndpoint.wrap(s3)

    async def scenario() -> None:
        # No flush by age during the test: only the writes' own requests are counted. A
        # minute's staleness bound: the view is fresh for every write below.
        async with open_service(
            PRIMARY,
            tmp_path,
            counting,
            tier=TierPolicy(flush_age_s=3600),
            CACHE_MAX_STALENESS_MS="60000",
        ) as svc:
            await svc.add_documents(USER, make_docs(20))
            per_write = []
            for i in range(5):
                counting.counts.clear()
                await svc.add_documents(USER, make_docs(1, start=50 + i))
                per_write.append(dict(counting.counts))
            # One PUT of a log object (LanceDB's own append to S3 makes 4: PUT data, LIST,
            # PUT txn, PUT manifest).
            assert per_write == [{"PUT": 1}] * 5, per_write
            counting.counts.clear()
            assert await svc.get_document(USER, "d53") is not None
            assert not counting.counts  # within the bound: the cache and memory answer
            counting.counts.clear()
            await svc.refresh(USER)
            # A refresh when nothing changed: the log's objects, then the newest manifest.
            assert dict(counting.counts) == {"LIST": 2}, counting.counts
            counting.counts.clear()
            await svc.flush(USER)  # the writes become one version: its files, manifest last
            assert counting.counts["PUT"] == 3, counting.counts  # data, transaction, manifest

    asyncio.run(scenario())


@pytest.mark.parametrize("mode", [BACKUP, SYNC])
def test_incremental_transfer_moves_only_new_files(
    mode: str, s3: S3Endpoint, tmp_path: Path
) -> None:
    async def push(svc: LanceDBStorageService) -> Any:
        report = await (svc.backup(USER) if mode == BACKUP else svc.sync(USER))
        assert report.reachable, report.error
        return report

    async def scenario() -> None:
        async with open_service(mode, tmp_path, s3) as svc:
            for start in range(0, 200, 50):
                await svc.add_documents(USER, make_docs(50, start=start))
            first = await push(svc)
            await svc.add_documents(USER, make_docs(1, start=500))
            second = await push(svc)
            third = await push(svc)
        # One appended document: its data file, its transaction file and its manifest.
        assert second.files_up == 3, second.as_dict()
        assert second.bytes_up < 8_000
        assert first.bytes_up > 5 * second.bytes_up
        assert second.files_down == 0
        if mode == BACKUP:
            assert second.versions_created == [second.local_version]
            assert second.requests == {"LIST": 1, "PUT": 3}
        else:
            assert second.records_up == 1
        assert (third.files_up, third.bytes_up, third.records_up) == (0, 0, 0)

    asyncio.run(scenario())


def test_restore_latest_and_older_versions(s3: S3Endpoint, tmp_path: Path) -> None:
    async def scenario() -> None:
        snapshots: dict[int, str] = {}
        async with open_service(BACKUP, tmp_path / "laptop", s3) as svc:
            for rnd in range(3):
                await svc.add_documents(USER, make_docs(10, start=rnd * 5, tag=f"r{rnd}"))
                if rnd == 1:
                    await svc.delete_documents(USER, ["d0", "d1"])
                report = await svc.backup(USER)
                assert report.local_version is not None
                snapshots[report.local_version] = content_hash(await service_live(svc, USER))
            v1, v2, v3 = sorted(snapshots)
            assert len(set(snapshots.values())) == 3

            # Latest: unchanged content; older: exactly what it was at that version.
            report = await svc.restore(USER)
            assert report.remote_version == v3
            assert content_hash(await service_live(svc, USER)) == snapshots[v3]
            report = await svc.restore(USER, version=v1)
            assert content_hash(await service_live(svc, USER)) == snapshots[v1]
            assert report.local_version is not None
            assert report.local_version > v3  # restored as a new latest version
            assert await svc.get_document(USER, "d0") is not None  # deleted later, here again
            with pytest.raises(LanceSyncError, match="not in the backup"):
                await svc.restore(USER, version=v3 + 1000)

            # The next backup continues the history: no conflict, one new version on top.
            await svc.add_documents(USER, make_docs(1, start=900, tag="after"))
            report = await svc.backup(USER)
            assert report.reachable, report.error
            assert report.versions_created
            assert min(report.versions_created) > v3
            expected = content_hash(await service_live(svc, USER))
            status = await svc.status(USER)
            assert (status.pending_changes, status.in_sync) == (0, True)
            report = await svc.restore(USER, version=v2)
            assert content_hash(await service_live(svc, USER)) == snapshots[v2]
            await svc.backup(USER)
            report = await svc.restore(USER, version=report.local_version)
            assert content_hash(await service_live(svc, USER)) == snapshots[v2]

            # A short history names every version it has.
            await svc.add_documents("short", make_docs(1))
            await svc.backup("short")
            with pytest.raises(
                LanceSyncError, match=r"version 99 is not in the backup; .*\[1, 2, 3\]"
            ):
                await svc.restore("short", version=99)

        # A second machine restoring the latest backup gets the same documents.
        async with open_service(BACKUP, tmp_path / "desktop", s3, device="B") as other:
            report = await other.restore(USER)
            assert report.reachable
            assert content_hash(await service_live(other, USER)) == snapshots[v2]
            assert report.remote_version is not None
            await other.restore(USER, version=report.remote_version - 1)
            assert content_hash(await service_live(other, USER)) == expected

    asyncio.run(scenario())


def _manifest_keys(ep: S3Endpoint) -> list[str]:
    return [k for k in s3_keys(ep) if k.startswith(table_key(ep, USER)) and "/_versions/" in k]


def _data_keys(ep: S3Endpoint) -> set[str]:
    return {k for k in s3_keys(ep) if k.startswith(table_key(ep, USER) + "/data/")}


def test_a_push_uploads_its_files_while_s3_is_asked_and_publishes_after_the_answer(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    """A one-document sync asks S3 for its newest version and, while that LIST is out,
    commits the document to its replica and uploads the data files; the manifest that
    publishes them goes up only once the answer came (two round trips in a row, not three)."""
    answer = threading.Event()

    async def scenario() -> None:
        async with open_service(SYNC, tmp_path, s3) as svc:
            await svc.add_documents(USER, make_docs(3))
            await _sync_ok(svc)
            remote = (await svc._store(USER)).replica.remote
            listing = remote.latest_version

            def held_listing(stats: Any) -> Any:
                assert answer.wait(30), "the test never let the LIST answer"
                return listing(stats)

            remote.latest_version = held_listing
            manifests, data = _manifest_keys(s3), _data_keys(s3)
            await svc.add_documents(USER, make_docs(1, start=3))
            sync = asyncio.create_task(svc.sync(USER))
            deadline = time.monotonic() + 20
            while len(_data_keys(s3)) == len(data):
                assert time.monotonic() < deadline, "no data file went up while S3 was asked"
                assert not sync.done(), sync
                await asyncio.sleep(0.02)
            assert _manifest_keys(s3) == manifests  # nothing published before the answer
            answer.set()
            report = await sync
            assert report.reachable and report.records_up == 1, report
            assert len(_manifest_keys(s3)) == len(manifests) + 1
            assert report.requests == {"LIST": 1, "PUT": 3}, report.requests
            assert sorted(live_from_records(await remote_records(s3, USER))) == [
                "d0",
                "d1",
                "d2",
                "d3",
            ]

    try:
        asyncio.run(scenario())
    finally:
        answer.set()


def test_a_push_made_before_s3_moved_on_is_withdrawn_and_made_again_on_top(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    """When another device published since this one's last sync, the commit this one
    prepared while asking S3 is withdrawn before its manifest (its data file stays on S3,
    referenced by no version, for remote retention to remove); the other device's version
    is pulled and the document committed again on top."""

    async def scenario() -> None:
        async with (
            open_service(SYNC, tmp_path / "A", s3, device="A") as a,
            open_service(SYNC, tmp_path / "B", s3, device="B") as b,
        ):
            await a.add_documents(USER, make_docs(2))
            await _sync_ok(a)
            await _sync_ok(b)
            await b.add_documents(USER, make_docs(1, start=10, prefix="b"))
            await _sync_ok(b)
            versions = len(_manifest_keys(s3))
            await a.add_documents(USER, make_docs(1, start=20, prefix="a"))
            report = await a.sync(USER)
            assert report.reachable, report.error
            assert (report.records_up, report.records_down) == (1, 1)
            assert len(_manifest_keys(s3)) == versions + 1
            assert report.remote_version == (await a._store(USER)).replica.local_version()
            live = live_from_records(await remote_records(s3, USER))
            assert sorted(live) == ["a20", "b10", "d0", "d1"]
            # Every data file on S3 but the withdrawn one is in a version.
            import lance

            uri = s3.uri("users", USER, f"{TABLE}.lance")
            table = lance.dataset(uri, storage_options=s3.storage_options())
            referenced = set()
            for v in table.versions():
                for fragment in table.checkout_version(v["version"]).get_fragments():
                    referenced |= {f.path for f in fragment.metadata.files}
            on_s3 = {k.rsplit("/", 1)[1] for k in _data_keys(s3)}
            assert len(on_s3 - referenced) == 1, (on_s3, referenced)
            await _sync_ok(b)
            assert await service_live(a, USER) == await service_live(b, USER)

    asyncio.run(scenario())


def test_a_sync_after_the_s3_table_was_wiped_puts_back_a_whole_table(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    """S3's table wiped under a running device: the next sync does not publish a version
    on top of files S3 lost; it puts back the versions its replica holds, then the new
    document, and plain LanceDB reads every document from S3."""

    async def scenario() -> None:
        async with open_service(SYNC, tmp_path, s3) as svc:
            await svc.add_documents(USER, make_docs(3))
            await _sync_ok(svc)
            await svc.add_documents(USER, make_docs(1, start=3))
            await _sync_ok(svc)
            client = s3.client()
            for key in s3_keys(s3):
                if key.startswith(table_key(s3, USER)):
                    client.delete_object(Bucket=s3.bucket, Key=key)
            assert not _manifest_keys(s3)
            await svc.add_documents(USER, make_docs(1, start=4))
            report = await svc.sync(USER)
            assert report.reachable and report.records_up == 1, report
            live = live_from_records(await remote_records(s3, USER))
            assert sorted(live) == [f"d{i}" for i in range(5)]
            assert (await svc.sync(USER)).requests == {"LIST": 1}

    asyncio.run(scenario())


def test_the_sync_state_is_written_after_the_sync_returns_and_before_the_next(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    """A sync returns once S3 took its push; the state file (marks, with fsync) is written
    meanwhile, waited for by wait_idle and by the next sync that changes the state, where a
    failed write raises."""

    async def scenario() -> None:
        async with open_service(SYNC, tmp_path / "dev", s3) as svc:
            await svc.add_documents(USER, make_docs(2))
            await _sync_ok(svc)
            store = await svc._store(USER)
            await svc.wait_idle(USER)
            assert stores.read_json(store.state_path)["pushed"] == store.pushed > 0
            blocker = tmp_path / "not-a-folder"
            blocker.write_text("")
            store.state_path = blocker / "sync-state.json"
            await svc.add_documents(USER, make_docs(1, start=2))
            await _sync_ok(svc)  # the push is done; the write fails behind it
            await _sync_ok(svc)  # nothing new: no state to write, nothing waited for
            await svc.add_documents(USER, make_docs(1, start=10))
            with pytest.raises(OSError):  # the next state write raises the last one's error
                await svc.sync(USER)
            store.state_path = tmp_path / "sync-state.json"
            await svc.add_documents(USER, make_docs(1, start=3))
            await _sync_ok(svc)
            await svc.wait_idle(USER)
            assert stores.read_json(store.state_path)["pushed"] == store.pushed

    asyncio.run(scenario())
