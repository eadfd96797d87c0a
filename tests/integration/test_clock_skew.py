"""Sync and S3-primary ordering when device clocks disagree or jump back.

Timestamps come from a hybrid logical clock (``storage.stores.Clock``): a write is stamped
past every record its writer has seen, so a device whose clock runs minutes behind (or
ahead) still wins with an edit or delete made after seeing another device's record, always
reads its own acknowledged write back, and a clock set back while running never reorders
one writer's writes. Devices get skewed clocks through the service's ``wall_clock``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from _storage_helpers import make_docs, open_service, read_table

from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.storage.service import LanceDBStorageService

pytestmark = pytest.mark.integration

USER = "skew"
SYNC = "local_primary_s3_sync"
PRIMARY = "s3_primary_local_cache"
SKEWS_S = [-300, -90, -5, 5, 90, 300]  # device B's clock against device A's


def skewed(offset_s: float) -> tuple[list[float], object]:
    """A wall clock ``offset_s`` seconds off; the returned list holds the offset, so a test
    can set it back while the device runs."""
    offset = [offset_s]

    def wall() -> int:
        return time.time_ns() + int(offset[0] * 1e9)

    return offset, wall


def doc(doc_id: str, text: str) -> dict[str, object]:
    return {**make_docs(1)[0], "id": doc_id, "text": text}


async def text_of(svc: LanceDBStorageService, doc_id: str) -> str | None:
    got = await svc.get_document(USER, doc_id)
    return None if got is None else str(got["text"])


async def synced(*services: LanceDBStorageService) -> None:
    for svc in services:
        report = await svc.sync(USER)
        assert report.reachable, report.error


@pytest.mark.parametrize("skew_s", SKEWS_S)
def test_sync_edits_and_deletes_of_a_skewed_device_win_after_it_saw_the_record(
    s3: S3Endpoint, tmp_path: Path, skew_s: int
) -> None:
    _, wall_b = skewed(skew_s)

    async def scenario() -> None:
        async with (
            open_service(SYNC, tmp_path / "A", s3, device="A") as a,
            open_service(SYNC, tmp_path / "B", s3, device="B", wall_clock=wall_b) as b,
        ):
            await a.add_documents(USER, [doc("x", "x by A"), doc("y", "y by A")])
            await synced(a, b)
            assert await text_of(b, "x") == "x by A"

            # B edits and deletes what it pulled: its own reads see that at once...
            await b.add_documents(USER, [doc("x", "x by B")])
            await b.delete_documents(USER, ["y"])
            assert await text_of(b, "x") == "x by B"
            assert await text_of(b, "y") is None
            await synced(b, a, b)
            # ...and both devices keep B's later edit and delete after exchanging.
            for svc in (a, b):
                assert await text_of(svc, "x") == "x by B"
                assert await text_of(svc, "y") is None

            # A, having pulled B's records, wins the next round the same way.
            await a.add_documents(USER, [doc("x", "x by A again"), doc("y", "y back by A")])
            assert await text_of(a, "x") == "x by A again"
            await synced(a, b)
            for svc in (a, b):
                assert await text_of(svc, "x") == "x by A again"
                assert await text_of(svc, "y") == "y back by A"

    asyncio.run(scenario())


@pytest.mark.parametrize("skew_s", [-300, 300])
def test_s3_primary_instance_reads_its_own_write_whatever_its_clock(
    s3: S3Endpoint, tmp_path: Path, skew_s: int
) -> None:
    _, wall_b = skewed(skew_s)

    async def scenario() -> None:
        # B's staleness bound is 50 ms: a write on an older view looks at S3 first.
        bound = {"CACHE_MAX_STALENESS_MS": "50"}
        async with (
            open_service(PRIMARY, tmp_path / "A", s3, device="A") as a,
            open_service(PRIMARY, tmp_path / "B", s3, device="B", wall_clock=wall_b, **bound) as b,
        ):
            await b.add_documents(USER, [doc("seed", "seed")])
            await a.refresh(USER)
            await a.add_documents(USER, [doc("x", "x by A")])
            await asyncio.sleep(0.06)
            # B's view is older than its bound: its write refreshes first, reads A's record
            # from S3's log, and is stamped past it, so B's acknowledged write is the newest.
            await b.add_documents(USER, [doc("x", "x by B")])
            assert await text_of(b, "x") == "x by B"
            await a.refresh(USER)
            assert await text_of(a, "x") == "x by B"
            # B deletes; the tombstone outranks A's record on both instances.
            await a.add_documents(USER, [doc("x", "x by A again")])
            await b.refresh(USER)
            assert await text_of(b, "x") == "x by A again"
            await asyncio.sleep(0.06)
            await b.delete_documents(USER, ["x"])
            assert await text_of(b, "x") is None
            await a.refresh(USER)
            assert await text_of(a, "x") is None

    asyncio.run(scenario())


def test_a_clock_set_back_while_running_never_reorders_one_writers_writes(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    offset, wall = skewed(0)

    async def scenario() -> None:
        async with open_service(SYNC, tmp_path / "A", s3, device="A", wall_clock=wall) as a:
            await a.add_documents(USER, [doc("x", "v1")])
            offset[0] = -300  # the clock is set back five minutes
            await a.add_documents(USER, [doc("x", "v2")])
            assert await text_of(a, "x") == "v2"
            await a.sync(USER)
        # A restart with the clock still behind: the table's records move the clock on.
        async with (
            open_service(SYNC, tmp_path / "A", s3, device="A", wall_clock=wall) as a,
            open_service(SYNC, tmp_path / "B", s3, device="B") as b,
        ):
            await a.add_documents(USER, [doc("x", "v3")])
            assert await text_of(a, "x") == "v3"
            await synced(a, b)
            assert await text_of(b, "x") == "v3"
            stamps = (await read_table(await a.get_user_connection(USER))).to_pylist()
            mine = [r["updated_at"] for r in sorted(stamps, key=lambda r: r["text"])]
            assert mine == sorted(mine) and len(set(mine)) == 3  # v1 < v2 < v3, as written

    asyncio.run(scenario())
