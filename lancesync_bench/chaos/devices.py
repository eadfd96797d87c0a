"""Two devices racing: concurrent writes to overlapping ids and concurrent syncs.

Each round both devices write (and now and then delete) documents drawn from one small
pool of ids at the same time, then both sync at the same time, so their pushes race for
the same table version on S3. Every acknowledged record is read back from the writer's
own table right after the write, which gives the expected end state: per id, the record
with the greatest ``(updated_at, origin)``. After the last round and a final exchange,
both devices must hold exactly that content, with identical hashes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lancesync_bench.chaos.common import (
    SYNC,
    content_hash,
    document,
    live_from_records,
    open_service,
    service_live,
)
from lancesync_bench.chaos.context import SuiteContext
from lancesync_bench.chaos.report import Section
from lancesync_bench.storage.schema import sql_string
from lancesync_bench.storage.service import LanceDBStorageService

__all__ = ["run_devices"]

NAME = "devices"
TITLE = "Two devices racing: concurrent writes and syncs"

USER = "shared"
_POOL = 12  # ids both devices write: most rounds touch an id the other device also wrote
_DELETE_EVERY = 4  # a delete every few rounds, so tombstones race too
_CHECK_EVERY = 10  # rounds between intermediate convergence checks


async def _acked_records(
    svc: LanceDBStorageService, device: str, ids: list[str]
) -> list[dict[str, Any]]:
    """The records this device just wrote for ``ids`` (its newest per id), read back."""
    table = await (await svc.get_user_connection(USER)).open_table("documents")
    in_list = ", ".join(sql_string(i) for i in ids)
    rows = (
        await table.query()
        .where(f"origin = {sql_string(device)} AND id IN ({in_list})")
        .select(["id", "text", "vector", "metadata", "updated_at", "origin", "deleted"])
        .to_arrow()
    ).to_pylist()
    newest: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["id"] not in newest or row["updated_at"] > newest[row["id"]]["updated_at"]:
            newest[row["id"]] = row
    return list(newest.values())


async def _write(
    svc: LanceDBStorageService, device: str, picks: list[int], *, seq: int, delete: bool
) -> list[dict[str, Any]]:
    """Write (or delete one of) the picked ids; the acknowledged records, read back."""
    ids = list(dict.fromkeys(f"s{i}" for i in picks))
    if delete:
        await svc.delete_documents(USER, ids[:1])
    else:
        await svc.add_documents(USER, [document(i, seq, writer=device) for i in ids])
    return await _acked_records(svc, device, ids[:1] if delete else ids)


def _identity(live: dict[str, dict[str, Any]]) -> dict[str, tuple[int, str]]:
    return {k: (v["updated_at"], v["origin"]) for k, v in live.items()}


async def _exchange(a: LanceDBStorageService, b: LanceDBStorageService) -> None:
    """A, B, A: after this both hold every record either had."""
    for svc in (a, b, a):
        report = await svc.sync(USER)
        if not report.reachable:
            raise RuntimeError(f"sync found S3 unreachable: {report.error}")


async def run_devices(ctx: SuiteContext, section: Section) -> None:
    """The two-device section."""
    ep = ctx.endpoint_below("devices")
    rng = ctx.rng("devices")
    rounds = ctx.scale.device_rounds
    acked: list[dict[str, Any]] = []
    sync_errors: list[str] = []
    diverged_at: list[int] = []
    a = open_service(SYNC, ctx.folder("devices", "a"), ep, device="dev-a")
    b = open_service(SYNC, ctx.folder("devices", "b"), ep, device="dev-b")
    async with a, b:
        for r in range(rounds):
            delete = r % _DELETE_EVERY == _DELETE_EVERY - 1
            picks_a = [rng.randrange(_POOL) for _ in range(rng.randint(1, 3))]
            picks_b = [rng.randrange(_POOL) for _ in range(rng.randint(1, 3))]
            wa, wb = await asyncio.gather(
                _write(a, "dev-a", picks_a, seq=r, delete=delete and r % 2 == 1),
                _write(b, "dev-b", picks_b, seq=r, delete=delete and r % 2 == 0),
            )
            acked += wa + wb
            results = await asyncio.gather(a.sync(USER), b.sync(USER), return_exceptions=True)
            for res in results:
                if isinstance(res, BaseException):
                    sync_errors.append(f"round {r}: {type(res).__name__}: {res}"[:300])
                elif not res.reachable:
                    sync_errors.append(f"round {r}: unreachable: {res.error}"[:300])
            if (r + 1) % _CHECK_EVERY == 0 or r == rounds - 1:
                await _exchange(a, b)
                live_a, live_b = await service_live(a, USER), await service_live(b, USER)
                if content_hash(live_a) != content_hash(live_b):
                    diverged_at.append(r)
        live_a, live_b = await service_live(a, USER), await service_live(b, USER)
        status_a, status_b = await a.status(USER), await b.status(USER)
    expected = live_from_records(acked)
    hash_a, hash_b = content_hash(live_a), content_hash(live_b)
    want = _identity(expected)
    lost = sorted(k for k in want if _identity(live_a).get(k) != want[k])
    extra = sorted(k for k in live_a if k not in want)
    section.figure(
        rounds=rounds,
        acknowledged_records=len(acked),
        deletes=sum(1 for x in acked if x["deleted"]),
        live_documents=len(live_a),
        hash_a=hash_a[:16],
        hash_b=hash_b[:16],
        diverged_at_checkpoints=diverged_at,
        sync_errors=len(sync_errors),
        first_sync_errors=sync_errors[:3],
        acknowledged_lost=len(lost),
        unexpected_documents=len(extra),
        pending_after={"a": status_a.pending_changes, "b": status_b.pending_changes},
    )
    section.check(
        "identical live content on both devices",
        hash_a == hash_b and not diverged_at,
        f"hash {hash_a[:12]} vs {hash_b[:12]}; diverged at checkpoints {diverged_at}",
    )
    section.check(
        "live content is exactly the last acknowledged write per id",
        not lost and not extra,
        f"{len(lost)} lost {lost[:5]}, {len(extra)} unexpected {extra[:5]}",
    )
    section.check(
        "every concurrent sync completed",
        not sync_errors,
        "; ".join(sync_errors[:2]) or f"{2 * rounds} syncs",
    )
