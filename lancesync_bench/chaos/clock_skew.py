"""Clock skew: devices whose clocks disagree, or jump back, must still order writes right.

Two sync devices whose clocks differ by -5 to +5 minutes take turns editing and deleting
shared documents, each after pulling the other's; an S3-primary pair does the same, each
write made on a view older than the staleness bound (so it looks at S3 first); a device's
clock is set back while it runs. Every acknowledged write must read back at once on its
writer, win on every device, and the devices must converge.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lancesync_bench.chaos.common import (
    PRIMARY,
    SYNC,
    content_hash,
    document,
    make_config,
    service_live,
)
from lancesync_bench.chaos.context import SuiteContext
from lancesync_bench.chaos.report import Section
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.storage.service import LanceDBStorageService

__all__ = ["run_clock_skew"]

NAME = "clock_skew"
TITLE = "Clock skew of -5 to +5 minutes between devices"

SKEWS_S = (-300, -90, -5, 5, 90, 300)
_POOL = 4  # shared ids per skew: every round edits one the other device wrote


def _skewed(offset: list[float]) -> Callable[[], int]:
    """A wall clock ``offset[0]`` seconds off the real one (changeable while it runs)."""
    return lambda: time.time_ns() + int(offset[0] * 1e9)


def _service(
    mode: str,
    path: Path,
    ep: S3Endpoint,
    device: str,
    *,
    wall: Callable[[], int] = time.time_ns,
    **env: str,
) -> LanceDBStorageService:
    """A service in ``mode`` that keeps time by ``wall`` (skewed for a device under test)."""
    config = make_config(mode, path, ep, device=device, SYNC_INTERVAL_S="0", **env)
    return LanceDBStorageService(config, endpoint=ep, wall_clock=wall)


async def _text(svc: LanceDBStorageService, user: str, doc_id: str) -> str | None:
    got = await svc.get_document(user, doc_id)
    return None if got is None else str(got["text"])


async def _skew_pair(ctx: SuiteContext, ep: S3Endpoint, skew: int, rounds: int) -> dict[str, Any]:
    """Sync devices A (true clock) and B (``skew`` s off) taking turns; what went wrong."""
    user = f"skew{'m' if skew < 0 else 'p'}{abs(skew)}"
    a = _service(SYNC, ctx.folder("clocks", user, "a"), ep, "dev-a")
    b = _service(SYNC, ctx.folder("clocks", user, "b"), ep, "dev-b", wall=_skewed([skew]))
    expected: dict[str, str | None] = {}
    stale = writes = 0
    async with a, b:
        for r in range(rounds):
            writer = (a, b)[r % 2]
            await writer.sync(user)  # it has seen the other device's latest records
            doc_id = f"s{r % _POOL}"
            if r % 3 == 2:
                await writer.delete_documents(user, [doc_id])
                expected[doc_id] = None
            else:
                doc = document(doc_id, r, writer=f"dev-{'ab'[r % 2]}")
                await writer.add_documents(user, [doc])
                expected[doc_id] = doc["text"]
            writes += 1
            stale += await _text(writer, user, doc_id) != expected[doc_id]
            await writer.sync(user)
        for svc in (a, b, a):
            await svc.sync(user)
        lost = 0
        for svc in (a, b):
            for doc_id, want in expected.items():
                lost += await _text(svc, user, doc_id) != want
        converged = content_hash(await service_live(a, user)) == content_hash(
            await service_live(b, user)
        )
    return {"writes": writes, "stale_own_reads": stale, "lost": lost, "converged": converged}


async def _primary_pair(
    ctx: SuiteContext, ep: S3Endpoint, skew: int, rounds: int
) -> dict[str, Any]:
    """S3-primary instances P (true clock) and Q (skewed) take turns writing one id, each
    on a view older than its 50 ms staleness bound: a write then reads S3's news first and
    is stamped past it (the guarantee: a write outranks every write acknowledged more than
    the bound before it, whatever the clocks)."""
    user = f"primary{'m' if skew < 0 else 'p'}{abs(skew)}"
    bound = "50"
    p = _service(
        PRIMARY, ctx.folder("clocks", user, "p"), ep, "inst-p", CACHE_MAX_STALENESS_MS=bound
    )
    q = _service(
        PRIMARY,
        ctx.folder("clocks", user, "q"),
        ep,
        "inst-q",
        wall=_skewed([skew]),
        CACHE_MAX_STALENESS_MS=bound,
    )
    stale = 0
    async with p, q:
        for r in range(rounds):
            writer = (p, q)[r % 2]
            await asyncio.sleep(0.06)
            doc = document("x", r, writer=f"inst-{'pq'[r % 2]}")
            await writer.add_documents(user, [doc])
            stale += await _text(writer, user, "x") != doc["text"]
        for svc in (p, q):
            await svc.refresh(user)
        last = document("x", rounds - 1, writer=f"inst-{'pq'[(rounds - 1) % 2]}")["text"]
        lost = sum([await _text(svc, user, "x") != last for svc in (p, q)])
    return {"writes": rounds, "stale_own_reads": stale, "lost": lost}


async def _set_back(ctx: SuiteContext, ep: S3Endpoint) -> bool:
    """A device's clock set back five minutes between two writes of one id, and again
    after a restart: the later write wins everywhere."""
    offset = [0.0]
    path = ctx.folder("clocks", "set-back", "c")
    c = _service(SYNC, path, ep, "dev-c", wall=_skewed(offset))
    async with c:
        await c.add_documents("setback", [document("x", 1, writer="dev-c")])
        offset[0] = -300.0
        await c.add_documents("setback", [document("x", 2, writer="dev-c")])
        ok = await _text(c, "setback", "x") == document("x", 2, writer="dev-c")["text"]
        await c.sync("setback")
    third = document("x", 3, writer="dev-c")
    c = _service(SYNC, path, ep, "dev-c", wall=_skewed(offset))
    d = _service(SYNC, ctx.folder("clocks", "set-back", "d"), ep, "dev-d")
    async with c, d:
        await c.add_documents("setback", [third])
        ok = ok and await _text(c, "setback", "x") == third["text"]
        await c.sync("setback")
        await d.sync("setback")
        ok = ok and await _text(d, "setback", "x") == third["text"]
    return bool(ok)


async def run_clock_skew(ctx: SuiteContext, section: Section) -> None:
    """The clock-skew section."""
    ep = ctx.endpoint_below("clocks")
    rounds = max(6, min(18, ctx.scale.device_rounds // 5))
    pairs = {skew: await _skew_pair(ctx, ep, skew, rounds) for skew in SKEWS_S}
    primary = {skew: await _primary_pair(ctx, ep, skew, rounds) for skew in (-300, 300)}
    set_back_ok = await _set_back(ctx, ep)
    writes = sum(p["writes"] for p in pairs.values()) + sum(p["writes"] for p in primary.values())
    stale = sum(p["stale_own_reads"] for p in (*pairs.values(), *primary.values()))
    lost = sum(p["lost"] for p in (*pairs.values(), *primary.values()))
    diverged = [s for s, p in pairs.items() if not p["converged"]]
    section.figure(
        skews_s=list(SKEWS_S),
        rounds_per_skew=rounds,
        acknowledged_writes=writes,
        own_reads_stale=stale,
        writes_lost=lost,
        diverged_at_skews=diverged,
        clock_set_back_kept_order=set_back_ok,
        per_skew={str(k): v for k, v in pairs.items()},
        s3_primary={str(k): v for k, v in primary.items()},
    )
    section.summary = (
        f"{writes} writes at skews {SKEWS_S[0]}..+{SKEWS_S[-1]} s: {stale} stale own reads, "
        f"{lost} lost, {len(diverged)} diverged"
    )
    section.check(
        "a device reads its own acknowledged write at once, whatever its clock",
        stale == 0,
        f"{stale} of {writes} reads after a write returned something else",
    )
    section.check(
        "an edit or delete made after seeing a record wins on every device",
        lost == 0,
        f"{lost} (device, id) pairs ended on another write",
    )
    section.check("devices converge at every skew", not diverged, f"diverged at {diverged}")
    section.check(
        "a clock set back while running keeps the writer's order",
        set_back_ok,
        "the write after the set-back (and after a restart) is the live one everywhere",
    )
