"""Failures the storage layer must survive: kill -9, S3 outages, corrupted remote files.

* a writer killed (SIGKILL, seeded random moments) in the middle of a sync or backup leaves
  an S3 table that plain LanceDB opens at a complete version holding every acknowledged
  write, and the rerun's sync/backup brings S3 level with the local table;
* a push that died after its data files but before its manifest is completed on restart in
  a way another replica's refresh can install;
* with S3 stopped, local-primary modes keep reading and writing and sync/backup report
  ``reachable=False``; the S3-primary mode serves its cache, says reads may be stale, and
  refuses writes; after S3 returns everything pending goes up;
* a remote file overwritten with other bytes is detected (IntegrityError) on restore and on
  a fresh cache open, and never installed.
"""

from __future__ import annotations

import asyncio
import json
import random
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _storage_helpers import (
    DIM,
    config_env,
    content_hash,
    die,
    live_from_records,
    make_docs,
    open_service,
    remote_records,
    s3_keys,
    service_live,
    table_key,
)

from lancesync_bench.chaos.common import torn_uploads
from lancesync_bench.errors import IntegrityError, S3Error, S3Unavailable
from lancesync_bench.s3.embedded import EmbeddedSeaweedFS
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.storage.replica import Replica
from lancesync_bench.storage.service import LanceDBStorageService
from lancesync_bench.storage.tier import TierPolicy
from lancesync_bench.storage.transfer import (
    RemoteTable,
    TransferStats,
    is_manifest,
    latest_version,
    local_files,
)

pytestmark = pytest.mark.integration

USER = "carol"
SYNC = "local_primary_s3_sync"
PRIMARY = "s3_primary_local_cache"
BACKUP = "local_primary_s3_backup"
WORKER = Path(__file__).with_name("storage_crash_worker.py")
REPO = Path(__file__).resolve().parents[2]
# A worker that acknowledges nothing for this long is stuck, not slow (a round takes ~0.1 s).
WORKER_STALL_S = 120.0


def _acks(proc: subprocess.Popen[str], count: int, stderr: Path) -> list[list[str]]:
    """Read ``count`` ack lines from the worker: the ids each acknowledged round wrote."""
    assert proc.stdout is not None
    acks: list[list[str]] = []
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + WORKER_STALL_S
        while len(acks) < count:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                pytest.fail(f"the worker acknowledged nothing for {WORKER_STALL_S} s")
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"the worker exited early:\n{stderr.read_text()[-3000:]}")
            words = line.split()
            assert words[0] == "ack", line
            acks.append(words[2:])
    return acks


def _round(doc: dict[str, Any] | None) -> int:
    return -1 if doc is None else int(doc["metadata"]["round"])


def _until_s3_settles(s3: S3Endpoint, quiet_s: float = 0.2, limit_s: float = 10.0) -> None:
    """Wait until two listings of the user's objects ``quiet_s`` apart agree (keys, sizes,
    ETags). The kernel closes a killed process's connections after it is reaped, and the
    server completes, or keeps an empty object of, a PUT in flight only once it notices:
    what a check reads right after the kill may still change under it."""
    client = s3.client()
    prefix = s3.key("users", USER) + "/"

    def listing() -> list[tuple[str, int, str]]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
        return sorted(
            (o["Key"], o["Size"], o["ETag"]) for page in pages for o in page.get("Contents", [])
        )

    last = listing()
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = listing()
        if now == last:
            return
        last = now


@pytest.mark.parametrize("mode", [BACKUP, SYNC])
def test_kill_9_mid_transfer_then_rerun(mode: str, s3: S3Endpoint, tmp_path: Path) -> None:
    rng = random.Random(f"kill-9-{mode}")
    path = tmp_path / "writer"
    settings = {
        "url": s3.url,
        "region": s3.region,
        "access_key_id": s3.access_key_id,
        "secret_access_key": s3.secret_access_key.reveal(),
        "bucket": s3.bucket,
        "prefix": s3.prefix,
        "env": config_env(mode, path, s3, device="W", S3_MAX_RETRIES="2"),
        "user": USER,
    }
    observer = open_service(SYNC, tmp_path / "observer", s3, device="O")

    async def check_remote(acked: list[str], acked_round: int) -> None:
        await asyncio.to_thread(_until_s3_settles, s3)
        if any(is_manifest(k.split("/", 1)[-1]) for k in torn_uploads(s3, USER)):
            # SeaweedFS kept an empty object of a manifest PUT the kill cut short (S3 keeps
            # nothing): no reader opens the table until the writer's next run removes it and
            # commits again. The next check, and the rerun's below, open it.
            return
        # Plain LanceDB opens the S3 table at its latest version and reads every row.
        live = live_from_records(await remote_records(s3, USER))
        for doc_id in acked:
            # An acknowledged write is on S3: that round's version or a later one (or a
            # later delete), never an older one.
            doc = live.get(doc_id)
            assert doc is None or doc["metadata"]["round"] >= acked_round, doc_id
        if mode == SYNC:
            # Another device that keeps syncing sees the same documents.
            report = await observer.sync(USER)
            assert report.reachable, report.error
            assert content_hash(await service_live(observer, USER)) == content_hash(live)

    def run_and_kill(attempt: int) -> tuple[list[str], int]:
        """Start a worker, let it acknowledge a few rounds, SIGKILL it at a random moment."""
        first_round = attempt * 1000
        stderr = tmp_path / f"worker-{attempt}.err"
        with open(stderr, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, str(WORKER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=REPO,
            )
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({**settings, "seed": attempt, "first_round": first_round}))
            proc.stdin.close()
            acks = _acks(proc, rng.randint(1, 4), stderr)
            # A random moment inside the next rounds: writing, syncing/backing up, compacting.
            time.sleep(rng.uniform(0.0, 0.25))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        return acks[-1], first_round + len(acks) - 1

    async def scenario() -> None:
        for attempt in range(3):
            await check_remote(*await asyncio.to_thread(run_and_kill, attempt))

        # The rerun, in this process, on the same folder.
        async with open_service(mode, path, s3, device="W") as svc:
            report = await (svc.sync(USER) if mode == SYNC else svc.backup(USER))
            assert report.reachable, report.error
            local = await service_live(svc, USER)
            remote = await remote_records(s3, USER)
            assert content_hash(live_from_records(remote)) == content_hash(local)
            assert len(local) > 0
            if mode == BACKUP:
                # S3's latest version is the local one: the very same records.
                local_table = await (await svc.get_user_connection(USER)).open_table("documents")
                order = [("id", "ascending"), ("updated_at", "ascending")]
                rows = (await local_table.to_arrow()).sort_by(order)
                assert remote.sort_by(order).equals(rows)
                status = await svc.status(USER)
                assert (status.pending_changes, status.in_sync) == (0, True)
        if mode == SYNC:
            assert (await observer.sync(USER)).reachable
            assert content_hash(await service_live(observer, USER)) == content_hash(local)
        await observer.close()

    asyncio.run(scenario())


async def _dead_rollback(*_: Any, **__: Any) -> None:
    """What a process killed mid-push does about its local commit: nothing."""


class _Crash(Exception):
    """Stands for the process dying: nothing after it runs, nothing is rolled back."""


@pytest.mark.parametrize("dies_at", ["_transactions/", "_versions/"])
def test_push_interrupted_before_its_manifest_is_completed_on_restart(
    dies_at: str, s3: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies once the data file is on S3 but before the transaction file (or
    the manifest) is; the restarted writer pushes the rest, and a replica that was open all
    along must be able to install that version."""
    put_file, put_manifest = RemoteTable._put_file, RemoteTable._put_manifest

    def dying_put_file(self: RemoteTable, local: Path, rel: str, *args: Any) -> None:
        if rel.startswith(dies_at):
            raise _Crash
        put_file(self, local, rel, *args)

    def dying_put_manifest(self: RemoteTable, local: Path, rel: str, *a: Any, **k: Any) -> bool:
        if rel.startswith(dies_at):
            raise _Crash
        return put_manifest(self, local, rel, *a, **k)

    async def scenario() -> None:
        reader = open_service(PRIMARY, tmp_path / "reader", s3, device="R")
        # The writer flushes only when asked, so that the one flush that dies is the test's.
        writer = open_service(
            PRIMARY, tmp_path / "writer", s3, device="W", tier=TierPolicy(flush_age_s=3600)
        )
        await writer.add_documents(USER, make_docs(5))
        assert await reader.get_document(USER, "d0") is not None
        data_before = set(_data_keys(s3))

        # The write is acknowledged once its log object is on S3; the flush that folds it
        # into a Lance version dies part-way.
        await writer.add_documents(USER, make_docs(1, start=10))
        monkeypatch.setattr(RemoteTable, "_put_file", dying_put_file)
        monkeypatch.setattr(RemoteTable, "_put_manifest", dying_put_manifest)
        # A dead process rolls nothing back: its local commit stays for the restart.
        monkeypatch.setattr(Replica, "_rollback", _dead_rollback)
        with pytest.raises(_Crash):
            await writer.flush(USER)
        monkeypatch.undo()
        die(writer)
        assert len(set(_data_keys(s3)) - data_before) == 1  # the data file made it
        got = await reader.get_document(USER, "d10")  # from S3's log: acknowledged, visible
        assert got is not None

        # The restarted writer finds its unpushed version and completes it.
        async with open_service(PRIMARY, tmp_path / "writer", s3, device="W") as again:
            got = await again.get_document(USER, "d10")
            assert got is not None
        # A replica that was open all along installs that version with every file it needs.
        got = await reader.get_document(USER, "d10")
        assert got is not None
        assert got["text"] == "d10"
        assert len(await reader.search(USER, [0.0] * DIM, k=10)) == 6
        await reader.close()
        # And so does a cache opened from scratch.
        async with open_service(PRIMARY, tmp_path / "fresh", s3, device="F") as fresh:
            assert content_hash(await service_live(fresh, USER)) == content_hash(
                live_from_records(await remote_records(s3, USER))
            )
            assert (await fresh.status(USER)).documents == 6

    asyncio.run(scenario())


def _versions_here_and_on_s3(store: Any) -> tuple[int, int | None]:
    """The newest version of a store's local copy, and S3's."""
    replica = store.replica
    on_disk = latest_version(local_files(replica.table_dir))
    return on_disk, replica.remote.latest_version(TransferStats())


async def _writer_with_one_write_to_flush(s3: S3Endpoint, tmp_path: Path) -> LanceDBStorageService:
    """An S3-primary writer with a version on S3 and d10 acknowledged but not flushed (its
    tier flushes only when asked, so the test's flush is the one that commits it)."""
    writer = open_service(
        PRIMARY, tmp_path / "writer", s3, device="W", tier=TierPolicy(flush_age_s=3600)
    )
    await writer.add_documents(USER, make_docs(5))
    await writer.flush(USER)
    await writer.add_documents(USER, make_docs(1, start=10))
    return writer


async def _flushed_to_s3_despite_a_rival(
    s3: S3Endpoint, tmp_path: Path, writer: LanceDBStorageService
) -> None:
    """After a flush that did not finish: the writer flushes again, another instance takes
    the next version on S3, the writer writes and flushes once more; S3 (read with plain
    LanceDB) holds every write."""
    await writer.flush(USER)
    async with open_service(PRIMARY, tmp_path / "rival", s3, device="rival") as rival:
        await rival.add_documents(USER, make_docs(1, start=20))
        await rival.flush(USER)
    await writer.add_documents(USER, make_docs(1, start=11))
    await writer.flush(USER)
    await writer.close()
    ids = set((await remote_records(s3, USER)).column("id").to_pylist())
    assert {"d10", "d11", "d20"} <= ids, sorted(ids)


def test_a_push_failing_for_a_reason_other_than_s3_leaves_no_version_s3_lacks(
    s3: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush whose push fails with an error that is not S3's (a bug, a local file gone)
    rolls its local commit back, as an S3 failure does. Kept, that version would make the
    next flush take its records for committed and delete their log objects; a rival's
    version in its place on S3 then leaves them nowhere but in the local copy."""
    put_file = RemoteTable._put_file

    def failing_put_file(self: RemoteTable, local: Path, rel: str, *args: Any) -> None:
        if rel.startswith("_transactions/"):
            raise RuntimeError("not an S3 failure")
        put_file(self, local, rel, *args)

    async def scenario() -> None:
        writer = await _writer_with_one_write_to_flush(s3, tmp_path)
        monkeypatch.setattr(RemoteTable, "_put_file", failing_put_file)
        with pytest.raises(RuntimeError, match="not an S3 failure"):
            await writer.flush(USER)
        monkeypatch.undo()
        here, there = await asyncio.to_thread(_versions_here_and_on_s3, await writer._store(USER))
        assert here == there
        await _flushed_to_s3_despite_a_rival(s3, tmp_path, writer)

    asyncio.run(scenario())


def test_a_flush_cancelled_mid_push_waits_for_the_push_and_keeps_copy_and_s3_agreed(
    s3: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller cancelled while its flush pushes (a web request dropped by its client): the
    upload runs in a thread that cancellation cannot stop, so the commit waits for it and
    settles the local copy on what S3 took before the cancellation goes on."""
    put_file = RemoteTable._put_file
    blocked, release, finished = threading.Event(), threading.Event(), threading.Event()

    def held_put_file(self: RemoteTable, local: Path, rel: str, *args: Any) -> None:
        if rel.startswith("_transactions/") and not finished.is_set():
            blocked.set()
            release.wait(30)
            put_file(self, local, rel, *args)
            finished.set()
            return
        put_file(self, local, rel, *args)

    async def scenario() -> None:
        writer = await _writer_with_one_write_to_flush(s3, tmp_path)
        monkeypatch.setattr(RemoteTable, "_put_file", held_put_file)
        flush = asyncio.create_task(writer.flush(USER))
        assert await asyncio.to_thread(blocked.wait, 30), "the push never started"
        flush.cancel()
        await asyncio.sleep(0.2)
        assert not flush.done(), "the flush gave up while its push was still running"
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await flush
        assert finished.is_set()
        monkeypatch.undo()
        here, there = await asyncio.to_thread(_versions_here_and_on_s3, await writer._store(USER))
        assert here == there
        await _flushed_to_s3_despite_a_rival(s3, tmp_path, writer)

    asyncio.run(scenario())


@pytest.fixture
def restart_s3(s3_server: EmbeddedSeaweedFS) -> Iterator[EmbeddedSeaweedFS]:
    """The session server, started again after the test whatever happened."""
    try:
        yield s3_server
    finally:
        s3_server.start()


@pytest.mark.parametrize("mode", [SYNC, BACKUP])
def test_local_primary_works_while_s3_is_down(
    mode: str, restart_s3: EmbeddedSeaweedFS, s3: S3Endpoint, tmp_path: Path
) -> None:
    async def push(svc: LanceDBStorageService) -> Any:
        return await (svc.sync(USER) if mode == SYNC else svc.backup(USER))

    async def scenario() -> None:
        async with open_service(mode, tmp_path / "A", s3) as svc:
            await svc.add_documents(USER, make_docs(10))
            assert (await push(svc)).reachable
            before_outage = (await svc.status(USER)).local_version
            restart_s3.stop()
            try:
                await svc.add_documents(USER, make_docs(10, start=10))
                await svc.add_documents(USER, [{**make_docs(1)[0], "text": "d0 offline"}])
                await svc.delete_documents(USER, ["d1"])
                got = await svc.get_document(USER, "d0")
                assert got is not None
                assert got["text"] == "d0 offline"
                assert await svc.get_document(USER, "d1") is None
                assert len(await svc.search(USER, [0.0] * DIM, k=50)) == 19
                report = await push(svc)
                assert report.reachable is False
                assert report.error is not None
                assert "unreachable" in report.error
                assert (report.files_up, report.bytes_up) == (0, 0)
                status = await svc.status(USER)
                assert status.last_error is not None
                assert status.pending_changes > 0
                assert status.in_sync is False
                assert status.documents == 19
                if mode == BACKUP:
                    report = await svc.restore(USER)
                    assert report.reachable is False
                    assert (await svc.status(USER)).documents == 19  # nothing was replaced
            finally:
                restart_s3.start()
            report = await push(svc)
            assert report.reachable, report.error
            if mode == SYNC:
                assert report.records_up == 12  # 10 new, 1 replacement, 1 tombstone
            else:
                assert report.local_version is not None
                assert before_outage is not None
                assert report.versions_created == list(
                    range(before_outage + 1, report.local_version + 1)
                )
            status = await svc.status(USER)
            assert (status.pending_changes, status.in_sync, status.last_error) == (0, True, None)
            expected = content_hash(await service_live(svc, USER))
        assert content_hash(live_from_records(await remote_records(s3, USER))) == expected
        if mode == SYNC:
            async with open_service(mode, tmp_path / "B", s3, device="B") as other:
                assert (await other.sync(USER)).records_down >= 19
                assert content_hash(await service_live(other, USER)) == expected

    asyncio.run(scenario())


def test_s3_primary_serves_cache_and_refuses_writes_while_s3_is_down(
    restart_s3: EmbeddedSeaweedFS, s3: S3Endpoint, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with open_service(PRIMARY, tmp_path / "A", s3) as svc:
            await svc.add_documents(USER, make_docs(7))
            for doc in make_docs(3, start=7):
                await svc.add_documents(USER, [doc])
            status = await svc.status(USER)
            assert (status.reads_may_be_stale, status.reachable) == (False, True)
            restart_s3.stop()
            try:
                got = await svc.get_document(USER, "d3")
                assert got is not None
                assert got["text"] == "d3"
                assert len(await svc.search(USER, [0.0] * DIM, k=5)) == 5
                status = await svc.status(USER)
                assert status.reads_may_be_stale is True
                assert status.reachable is False
                assert status.in_sync is False
                assert status.documents == 10
                report = await svc.refresh(USER)
                assert report.reachable is False
                with pytest.raises(S3Unavailable):
                    await svc.add_documents(USER, make_docs(1, start=20))
                with pytest.raises(S3Error):
                    await svc.delete_documents(USER, ["d3"])
                # Maintenance compacts and cleans the cache, then cannot commit: the cache
                # goes back to the version it started from and keeps serving reads.
                with pytest.raises(S3Unavailable):
                    await svc.maintain(USER)
                # A refused write leaves no trace, not even in the cache.
                assert await svc.get_document(USER, "d20") is None
                assert await svc.get_document(USER, "d3") is not None
                assert len(await svc.search(USER, [0.0] * DIM, k=20)) == 10
                assert (await svc.status(USER)).documents == 10
            finally:
                restart_s3.start()
            await svc.add_documents(USER, make_docs(1, start=30))
            assert await svc.get_document(USER, "d30") is not None
            report = await svc.maintain(USER)
            assert report.fragments_after < report.fragments_before
            status = await svc.status(USER)
            assert (status.reads_may_be_stale, status.reachable, status.in_sync) == (
                False,
                True,
                True,
            )
        async with open_service(PRIMARY, tmp_path / "B", s3, device="B") as other:
            live = await service_live(other, USER)
            assert sorted(live) == sorted([f"d{i}" for i in range(10)] + ["d30"])

    asyncio.run(scenario())


def _corrupt(s3: S3Endpoint, key: str, *, same_size: bool) -> bytes:
    """Overwrite an object with other bytes; returns the original."""
    client = s3.client()
    original = client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
    if same_size:
        middle = len(original) // 2
        bad = original[:middle] + bytes([original[middle] ^ 0xFF]) + original[middle + 1 :]
    else:
        bad = original + b"\x00garbage"
    client.put_object(Bucket=s3.bucket, Key=key, Body=bad)
    return original


def _data_keys(s3: S3Endpoint) -> list[str]:
    return sorted(k for k in s3_keys(s3) if k.startswith(table_key(s3, USER) + "/data/"))


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("same_size", [True, False], ids=["same-size", "other-size"])
def test_corrupt_backup_file_is_detected_on_restore(
    same_size: bool, s3: S3Endpoint, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with open_service(BACKUP, tmp_path / "A", s3) as a:
            await a.add_documents(USER, make_docs(10, tag="A"))
            await a.flush(USER)  # two Lance versions, two data files
            await a.add_documents(USER, make_docs(10, start=10, tag="A"))
            assert (await a.backup(USER)).reachable
            backed_up = content_hash(await service_live(a, USER))
            keys = _data_keys(s3)
            assert len(keys) == 2
            victim = keys[-1]
            _corrupt(s3, victim, same_size=same_size)

            async with open_service(BACKUP, tmp_path / "B", s3, device="B") as b:
                await b.add_documents(USER, make_docs(3, start=100, tag="B"))
                before = content_hash(await service_live(b, USER))
                files_before = _files(tmp_path / "B")
                with pytest.raises(IntegrityError, match=r"not installed|failed verification"):
                    await b.restore(USER)
                # The local table is untouched and no downloaded file was left behind.
                assert content_hash(await service_live(b, USER)) == before
                assert (await b.get_document(USER, "d100")) is not None
                assert await b.get_document(USER, "d0") is None
                assert _files(tmp_path / "B") == files_before
                assert not [p for p in (tmp_path / "B").rglob(Path(victim).name)]

            # The device that made the backup links its own copies where S3 lists the same
            # name and size: a same-size change goes unused; a size change means the S3 copy
            # is downloaded, fails verification and is refused. Either way its documents
            # stay as they were.
            if same_size:
                assert (await a.restore(USER)).reachable
            else:
                with pytest.raises(IntegrityError, match="failed verification"):
                    await a.restore(USER)
            assert content_hash(await service_live(a, USER)) == backed_up

    asyncio.run(scenario())


@pytest.mark.parametrize("same_size", [True, False], ids=["same-size", "other-size"])
def test_corrupt_remote_file_is_never_installed_in_a_cache(
    same_size: bool, s3: S3Endpoint, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with open_service(PRIMARY, tmp_path / "one", s3) as one:
            await one.add_documents(USER, make_docs(10))
            await one.flush(USER)  # into a Lance version on S3 (its data file is the victim)
            await one.add_documents(USER, make_docs(10, start=10))
            await one.flush(USER)
            victim = _data_keys(s3)[0]
            original = _corrupt(s3, victim, same_size=same_size)
            fresh = open_service(PRIMARY, tmp_path / "two", s3, device="two")
            with pytest.raises(IntegrityError):
                await fresh.get_document(USER, "d0")
            cache = tmp_path / "two"
            assert not list(cache.rglob(Path(victim).name))
            assert not list(cache.rglob("*.manifest"))  # no version was installed
            assert not list(cache.rglob("*.part"))

            # Once S3 holds the right bytes again, the same instance opens and reads.
            s3.client().put_object(Bucket=s3.bucket, Key=victim, Body=original)
            got = await fresh.get_document(USER, "d0")
            assert got is not None
            assert content_hash(await service_live(fresh, USER)) == content_hash(
                await service_live(one, USER)
            )

            # A new version with a corrupted file is refused by an open cache's refresh too.
            keys_before = set(_data_keys(s3))
            await one.add_documents(USER, make_docs(1, start=50))
            await one.flush(USER)
            (new_key,) = set(_data_keys(s3)) - keys_before
            _corrupt(s3, new_key, same_size=same_size)
            manifests_before = sorted(p.name for p in cache.rglob("*.manifest"))
            with pytest.raises(IntegrityError):
                await fresh.refresh(USER)
            assert sorted(p.name for p in cache.rglob("*.manifest")) == manifests_before
            await fresh.close()

    asyncio.run(scenario())


def test_background_backup_failures_are_counted_in_status(s3: S3Endpoint, tmp_path: Path) -> None:
    """The periodic backup's failures reach status() (and the log), never dropped."""
    from lancesync_bench.netem import S3Proxy

    async def until(svc: LanceDBStorageService, check: Any, limit_s: float = 20.0) -> Any:
        deadline = time.monotonic() + limit_s
        while True:
            background = (await svc.status(USER)).background
            if check(background) or time.monotonic() > deadline:
                return background
            await asyncio.sleep(0.1)

    async def scenario(proxy: S3Proxy) -> None:
        ep = proxy.endpoint_for(s3)
        env = {"SYNC_INTERVAL_S": "0.3", "S3_CONNECT_TIMEOUT_S": "0.5", "S3_MAX_RETRIES": "0"}
        async with open_service(BACKUP, tmp_path, ep, **env) as svc:
            await svc.add_documents(USER, make_docs(3))
            ok = await until(svc, lambda b: b["last_success"] is not None)
            assert ok["last_success"] is not None and ok["failures"] == 0
            proxy.cut()
            failed = await until(svc, lambda b: b["failures"] >= 2)
            assert failed["failures"] >= 2 and failed["total_failures"] >= 2
            assert failed["last_error"]
            proxy.restore()
            healed = await until(svc, lambda b: b["failures"] == 0)
            assert healed["failures"] == 0 and healed["total_failures"] >= 2
            assert healed["last_success"] > ok["last_success"]

    with S3Proxy(str(s3.url)) as proxy:
        asyncio.run(scenario(proxy))


def test_an_upload_cut_short_by_a_kill_is_sent_again(s3: S3Endpoint, tmp_path: Path) -> None:
    """An empty S3 object carrying the SHA-256 of this device's file (a push killed mid
    upload, before its manifest) is resent when the device reopens; a copy with another
    recorded hash is not."""
    from lancesync_bench.storage.transfer import manifest_version, sha256_file

    def kill_before_the_manifest() -> None:
        """S3 as a push killed before its manifest leaves it: the newest manifest gone."""
        client = s3.client()
        prefix = f"{table_key(s3, USER)}/_versions/"
        keys = [
            o["Key"] for o in client.list_objects_v2(Bucket=s3.bucket, Prefix=prefix)["Contents"]
        ]
        newest = max(keys, key=lambda k: manifest_version(k[len(prefix) - 10 :]) or 0)
        client.delete_object(Bucket=s3.bucket, Key=newest)

    async def scenario() -> None:
        async with open_service(SYNC, tmp_path / "A", s3, device="A") as svc:
            await svc.add_documents(USER, make_docs(10))
            assert (await svc.sync(USER)).reachable
        table = tmp_path / "A" / "users" / USER / "remote" / "documents.lance"
        data = sorted(p for p in (table / "data").iterdir())[-1]
        key = f"{table_key(s3, USER)}/data/{data.name}"
        client = s3.client()
        client.put_object(
            Bucket=s3.bucket, Key=key, Body=b"", Metadata={"sha256": sha256_file(data)}
        )
        kill_before_the_manifest()
        async with open_service(SYNC, tmp_path / "A", s3, device="A") as svc:
            assert (await svc.sync(USER)).reachable
        assert client.head_object(Bucket=s3.bucket, Key=key)["ContentLength"] == data.stat().st_size
        client.put_object(Bucket=s3.bucket, Key=key, Body=b"", Metadata={"sha256": "0" * 64})
        kill_before_the_manifest()
        with pytest.raises(IntegrityError, match="differs from S3"):
            async with open_service(SYNC, tmp_path / "A", s3, device="A") as svc:
                await svc.sync(USER)

    asyncio.run(scenario())
