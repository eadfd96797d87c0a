"""The write tier on a real local LanceDB table: read-your-writes, exact merged search,
replay after kill -9, committed-segment recognition, corruption, close to plain Lance."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lancesync_bench.config import LanceDBSyncConfig
from lancesync_bench.storage.log import LogCorruptError
from lancesync_bench.storage.schema import records_table
from lancesync_bench.storage.service import LanceDBStorageService
from lancesync_bench.storage.tier import TierPolicy

DIM = 8
USER = "u1"


def _config(root: Path, **env: str) -> LanceDBSyncConfig:
    return LanceDBSyncConfig.from_env(
        {
            "FRONTEND_TYPE": "desktop",
            "S3_STORAGE_ENABLED": "false",
            "S3_BACKUP_ENABLED": "false",
            "LOCAL_STORAGE_PATH": str(root),
            "EMBEDDING_DIM": str(DIM),
            "DEVICE_ID": "dev-a",
            **env,
        }
    )


def _doc(i: int, tag: str = "v1", rng: np.random.Generator | None = None) -> dict[str, Any]:
    gen = rng or np.random.default_rng(i)
    return {"id": f"d{i}", "text": f"d{i} {tag}", "vector": gen.random(DIM).tolist()}


def _distances(live: dict[str, dict[str, Any]], query: list[float]) -> dict[str, float]:
    q = np.asarray(query, np.float32)
    return {
        i: float(((np.asarray(d["vector"], np.float32) - q) ** 2).sum()) for i, d in live.items()
    }


def _assert_exact_top_k(
    found: list[dict[str, Any]], live: dict[str, Any], query: list[float]
) -> None:
    """``found`` is an exact top-k of the live documents (ties may come in either order)."""
    dist = _distances(live, query)
    best = sorted(dist.values())[: len(found)]
    assert [r["distance"] for r in found] == pytest.approx(best, rel=1e-4, abs=1e-6)
    for r in found:
        assert r["text"] == live[r["id"]]["text"]
        assert r["distance"] == pytest.approx(dist[r["id"]], rel=1e-4, abs=1e-6)
    assert len({r["id"] for r in found}) == len(found)


def test_reads_see_every_write_at_once_and_search_merges_exactly(tmp_path: Path) -> None:
    # A long flush age and a large row bound: the first 300 writes stay in memory while
    # 200 older documents sit in the Lance table, so every read below merges both.
    policy = TierPolicy(flush_rows=100_000, flush_age_s=3600)

    async def scenario() -> None:
        live: dict[str, dict[str, Any]] = {}
        async with LanceDBStorageService(_config(tmp_path), tier=policy) as svc:
            base = [_doc(i) for i in range(200)]
            await svc.add_documents(USER, base)
            await svc.flush(USER)
            live.update({d["id"]: d for d in base})
            rng = np.random.default_rng(7)
            for i in range(150, 300):  # 50 replacements of table rows, 100 new documents
                doc = _doc(i, "v2", rng)
                await svc.add_documents(USER, [doc])
                live[doc["id"]] = doc
                got = await svc.get_document(USER, doc["id"])
                assert got is not None and got["text"] == doc["text"]
            await svc.delete_documents(USER, ["d3", "d160", "d290"])  # table, replaced, memory
            for gone in ("d3", "d160", "d290"):
                live.pop(gone)
                assert await svc.get_document(USER, gone) is None
            for seed in range(6):  # 200 rows in Lance, 153 newer ones in memory
                query = np.random.default_rng(20_000 + seed).random(DIM).tolist()
                _assert_exact_top_k(await svc.search(USER, query, k=10), live, query)
            status = await svc.status(USER)  # flushes: then once more from memory
            assert status.documents == len(live)
            await svc.add_documents(USER, [_doc(5, "v3"), _doc(400, "v3")])
            live["d5"], live["d400"] = _doc(5, "v3"), _doc(400, "v3")
            for seed in range(12):
                query = np.random.default_rng(10_000 + seed).random(DIM).tolist()
                _assert_exact_top_k(await svc.search(USER, query, k=10), live, query)
            # An old vector of a replaced document never comes back.
            old = _doc(150)["vector"]
            assert all(r["text"] != "d150 v1" for r in await svc.search(USER, old, k=len(live)))

    asyncio.run(scenario())


def test_concurrent_writers_share_log_flushes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LanceDBStorageService(_config(tmp_path)) as svc:
            await svc.add_documents(USER, [_doc(0)])
            await asyncio.gather(*(svc.add_documents(USER, [_doc(i)]) for i in range(1, 33)))
            stats = (await svc.status(USER)).write_tier
            assert stats is not None
            assert stats["log_frames"] == 33
            assert stats["log_flushes"] < 33

    asyncio.run(scenario())


def test_fsync_durability_is_a_setting(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = _config(tmp_path, WRITE_DURABILITY="fsync")
        async with LanceDBStorageService(config) as svc:
            await svc.add_documents(USER, [_doc(1)])
            stats = (await svc.status(USER)).write_tier
            assert stats is not None and stats["durability"] == "fsync"
            assert (await svc.get_document(USER, "d1")) is not None

    asyncio.run(scenario())


def test_close_leaves_a_plain_lance_table_with_every_row(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LanceDBStorageService(_config(tmp_path)) as svc:
            for i in range(50):
                await svc.add_documents(USER, [_doc(i)])
        import lancedb

        user_dir = tmp_path / "users" / USER
        assert list((user_dir / "documents.wal").iterdir()) == []
        db = await lancedb.connect_async(str(user_dir))
        table = await (await db.open_table("documents")).to_arrow()
        assert sorted(table.column("id").to_pylist()) == sorted(f"d{i}" for i in range(50))

    asyncio.run(scenario())


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    import numpy as np
    from lancesync_bench.config import LanceDBSyncConfig
    from lancesync_bench.storage.service import LanceDBStorageService
    from lancesync_bench.storage.tier import TierPolicy

    async def main():
        root, start = sys.argv[1], int(sys.argv[2])
        config = LanceDBSyncConfig.from_env({
            "FRONTEND_TYPE": "desktop", "S3_STORAGE_ENABLED": "false",
            "S3_BACKUP_ENABLED": "false", "LOCAL_STORAGE_PATH": root,
            "EMBEDDING_DIM": "8", "DEVICE_ID": "dev-a"})
        # Flushes every 64 rows: kills land in log appends, flushes and Lance commits.
        svc = LanceDBStorageService(config, tier=TierPolicy(flush_rows=64))
        rng = np.random.default_rng(start)
        for i in range(start, start + 100_000):
            doc = {"id": f"d{i % 700}", "text": f"w{i}", "vector": rng.random(8).tolist()}
            await svc.add_documents("u1", [doc])
            print(i, flush=True)

    asyncio.run(main())
    """
)


def test_acknowledged_writes_survive_repeated_kill_9(tmp_path: Path) -> None:
    """Writers killed mid-stream keep every acknowledged write: replayed from the log."""
    acked: dict[str, str] = {}  # id -> text of its last acknowledged write
    start = 0
    for trial in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), str(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        want = 150 + 97 * trial  # kills land at different points of the flush cycle
        last = start - 1
        for line in proc.stdout:
            last = int(line)
            acked[f"d{last % 700}"] = f"w{last}"
            if last - start + 1 >= want:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        start = last + 1

    async def check() -> None:
        async with LanceDBStorageService(_config(tmp_path)) as svc:
            for doc_id, text in acked.items():
                # The newest acknowledged write, or a later one: the child may have written
                # (and kept) a few more before the kill landed than the parent had read.
                got = await svc.get_document(USER, doc_id)
                assert got is not None, doc_id
                assert int(got["text"][1:]) >= int(text[1:]), (doc_id, got["text"], text)
        # Reopening again finds nothing to replay and no duplicate records in the table.
        async with LanceDBStorageService(_config(tmp_path)) as svc:
            stats = (await svc.status(USER)).write_tier
            assert stats is not None and stats["replayed_rows"] == 0
            db = await svc.get_user_connection(USER)
            keys = (
                await (await db.open_table("documents"))
                .query()
                .select(["id", "updated_at", "origin"])
                .to_arrow()
            )
            triples = list(
                zip(*(keys.column(c).to_pylist() for c in keys.column_names), strict=True)
            )
            assert len(triples) == len(set(triples))

    asyncio.run(check())


def test_a_segment_already_in_lance_is_not_replayed_twice(tmp_path: Path) -> None:
    """A crash after a flush's commit and before its segment is deleted."""
    wal = tmp_path / "users" / USER / "documents.wal"
    kept = tmp_path / "kept"

    async def scenario() -> None:
        policy = TierPolicy(flush_age_s=3600)
        async with LanceDBStorageService(_config(tmp_path), tier=policy) as svc:
            await svc.add_documents(USER, [_doc(i) for i in range(20)])
            shutil.copytree(wal, kept)  # the segment as it was before the flush deleted it
        shutil.rmtree(wal)
        shutil.copytree(kept, wal)
        async with LanceDBStorageService(_config(tmp_path)) as svc:
            stats = (await svc.status(USER)).write_tier
            assert stats is not None and stats["replayed_rows"] == 0
            db = await svc.get_user_connection(USER)
            assert await (await db.open_table("documents")).count_rows() == 20
        assert list(wal.iterdir()) == []

    asyncio.run(scenario())


def test_a_corrupt_log_record_is_a_clear_error_and_nothing_is_dropped(tmp_path: Path) -> None:
    wal = tmp_path / "users" / USER / "documents.wal"

    async def write() -> None:
        policy = TierPolicy(flush_age_s=3600)
        svc = LanceDBStorageService(_config(tmp_path), tier=policy)
        for i in range(3):
            await svc.add_documents(USER, [_doc(i)])
        # Abandoned without close(): as a crash would leave it.
        segments = sorted(wal.iterdir())
        copy = tmp_path / "segment.copy"
        shutil.copy(segments[-1], copy)

    asyncio.run(write())
    segment = sorted(p for p in wal.iterdir() if p.stat().st_size)[-1]
    data = bytearray(segment.read_bytes())
    data[40] ^= 0xFF  # inside the first of three frames
    segment.write_bytes(bytes(data))

    async def reopen() -> None:
        async with LanceDBStorageService(_config(tmp_path)) as svc:
            await svc.get_document(USER, "d0")

    with pytest.raises(LogCorruptError, match=rf"{segment.name} is damaged at offset 0"):
        asyncio.run(reopen())
    assert segment.read_bytes() == bytes(data)


def test_an_older_record_in_memory_loses_to_a_newer_one_in_lance(tmp_path: Path) -> None:
    """Records another device wrote with a slower clock lose, wherever they are held."""

    async def scenario() -> None:
        async with LanceDBStorageService(_config(tmp_path)) as svc:
            await svc.add_documents(USER, [_doc(1)])
            store = await svc._store(USER)
            assert store.tier is not None
            newer = records_table(
                [_doc(2, "from B")], dim=DIM, origin="dev-b", timestamps=[store.clock.last + 10**12]
            )
            await store.docs.append(newer)
            store.tier.observe_lance(store.clock.last + 10**12)
            older = records_table([_doc(2, "old")], dim=DIM, origin="dev-c", timestamps=[5])
            await store.tier.write(older)
            got = await svc.get_document(USER, "d2")
            assert got is not None and got["text"] == "d2 from B"
            found = await svc.search(USER, _doc(2)["vector"], k=1)
            assert [r["text"] for r in found] == ["d2 from B"]

    asyncio.run(scenario())
