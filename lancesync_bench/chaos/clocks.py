"""Clocks, lost answers and failing background pushes: three reliability sections.

* ``clock skew``: two sync devices whose clocks differ by -5 to +5 minutes take turns
  editing and deleting shared documents, each after pulling the other's; an S3-primary
  pair does the same, each write made on a view older than the staleness bound (so it
  looks at S3 first); a device's clock is set back while it runs.
  Every acknowledged write must read back at once on its writer, win on every device,
  and the devices must converge.
* ``lost answers``: S3-primary writes whose log PUT loses its answer (or never leaves, or
  loses its read-back too), and flushes whose manifest PUT does. What a write reports must
  be what S3 holds, seen by another instance; a flush whose outcome was unknown must not
  commit its records twice.
* ``background failures``: a sync device with a short ``SYNC_INTERVAL_S`` loses its path to
  S3 for a while: the failed periodic pushes and the pending changes must show in
  ``status()``, and the next period must catch up without anyone calling ``sync()``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
from lancesync_bench.errors import CommitOutcomeUnknown, S3Error
from lancesync_bench.netem import S3Proxy
from lancesync_bench.netem.lost import LostAnswers
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.storage.service import LanceDBStorageService

__all__ = ["run_background_failures", "run_clock_skew", "run_lost_answers"]

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


_LOST_KINDS: dict[str, tuple[list[tuple[str, str, Any]], str]] = {
    "log answer lost": ([("PutObject", ".wal/", "answer")], "committed"),
    "log never sent": ([("PutObject", ".wal/", "request")], "not committed"),
    "log answer and read-back lost": (
        [("PutObject", ".wal/", "answer"), ("GetObject", ".wal/", "request")],
        "unknown",
    ),
}
# Faults on the flush that folds an acknowledged write into a Lance version on S3.
_FLUSH_KINDS: dict[str, list[tuple[str, str, Any]]] = {
    "flush: data answer lost": [("PutObject", "/data/", "answer")],
    "flush: manifest answer lost": [("PutObject", "/_versions/", "answer")],
    "flush: manifest answer and read-back lost": [
        ("PutObject", "/_versions/", "answer"),
        ("GetObject", "/_versions/", "request"),
    ],
}


@dataclass
class _Tally:
    """The lost-answers trials: the instances, the faults, and what the trials found."""

    p: LanceDBStorageService
    observer: LanceDBStorageService
    faults: LostAnswers
    user: str
    trials: int
    outcomes: dict[str, dict[str, int]]
    wrong: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    unfired: int = 0

    def said(self, kind: str, outcome: str) -> None:
        self.outcomes[kind][outcome] = self.outcomes[kind].get(outcome, 0) + 1


async def _outcome(call: Callable[[], Any]) -> str:
    """What an S3-primary write or flush reported: committed, unknown or not committed."""
    try:
        await call()
    except CommitOutcomeUnknown:
        return "unknown"
    except S3Error as exc:
        return "not committed" if "nothing was written" in str(exc) else "error"
    return "committed"


async def _lost_writes(tally: _Tally) -> None:
    """Writes whose log PUT loses its answer: what each reports is what S3 holds."""
    p, faults, user = tally.p, tally.faults, tally.user
    for k, (kind, (arms, expected)) in enumerate(_LOST_KINDS.items()):
        for t in range(tally.trials):
            doc_id = f"kind{k}-{t}"
            for op, part, what in arms:
                faults.lose(op, part, what)
            said = await _outcome(functools.partial(p.add_documents, user, [document(doc_id, t)]))
            tally.unfired += faults.armed
            faults.disarm()
            tally.said(kind, said)
            on_s3 = await tally.observer.get_document(user, doc_id) is not None
            if said == "unknown":
                await p.refresh(user)
                if (await p.get_document(user, doc_id) is not None) != on_s3:
                    tally.unresolved.append(doc_id)
            elif (said == "committed") != on_s3 or said != expected:
                tally.wrong.append(f"{doc_id}: said {said}, on S3: {on_s3}")


async def _lost_flushes(tally: _Tally) -> list[str]:
    """Flushes whose requests lose answers; returns the records S3's Lance table then holds
    other than exactly once."""
    p, faults, user = tally.p, tally.faults, tally.user
    for k, (kind, arms) in enumerate(_FLUSH_KINDS.items()):
        for t in range(tally.trials):
            doc_id = f"flush{k}-{t}"
            await p.add_documents(user, [document(doc_id, t)])
            for op, part, what in arms:
                faults.lose(op, part, what)
            said = await _outcome(lambda: p.flush(user))
            # A failed flush is not a lost write: the records wait in memory and in S3's log.
            tally.said(kind, "not committed" if said == "error" else said)
            tally.unfired += faults.armed
            faults.disarm()
            if await tally.observer.get_document(user, doc_id) is None:
                tally.wrong.append(f"{doc_id}: acknowledged, unreadable after a flush fault")
            await p.flush(user)  # the next trial starts with nothing left to flush
    # get_user_connection flushes what the faults left in memory and in S3's log first.
    table = await (await p.get_user_connection(user)).open_table("documents")
    ids = (await table.query().select(["id"]).to_arrow()).column("id").to_pylist()
    wanted = [f"flush{k}-{t}" for k in range(len(_FLUSH_KINDS)) for t in range(tally.trials)]
    return [f"{d} x{ids.count(d)}" for d in wanted if ids.count(d) != 1]


async def run_lost_answers(ctx: SuiteContext, section: Section) -> None:
    """The lost-answers section."""
    ep = ctx.endpoint_below("lost-answers")
    trials = 3 if ctx.scale.device_rounds < 50 else 8
    user = "lost"
    p = _service(PRIMARY, ctx.folder("lost", "p"), ep, "inst-p")
    observer = _service(PRIMARY, ctx.folder("lost", "o"), ep, "inst-o", CACHE_MAX_STALENESS_MS="0")
    async with p, observer:
        await p.add_documents(user, [document("seed", 0)])
        outcomes: dict[str, dict[str, int]] = {k: {} for k in [*_LOST_KINDS, *_FLUSH_KINDS]}
        tally = _Tally(p, observer, LostAnswers(p._s3_client()), user, trials, outcomes)
        await _lost_writes(tally)
        twice = await _lost_flushes(tally)
    section.figure(
        trials_per_kind=trials,
        outcomes=tally.outcomes,
        wrong=tally.wrong[:5],
        twice_or_missing=twice[:5],
        unfired=tally.unfired,
    )
    total = trials * len(_LOST_KINDS)
    flushes = trials * len(_FLUSH_KINDS)
    section.summary = (
        f"{total} writes and {flushes} flushes with a lost answer: {len(tally.wrong)} "
        f"misreported, {len(twice)} records committed twice or not at all"
    )
    section.check(
        "a write reported committed is on S3, one reported not committed is not",
        not tally.wrong,
        "; ".join(tally.wrong[:3]) or f"{total} outcomes as S3 holds them",
    )
    unknown = tally.outcomes["log answer and read-back lost"]
    section.check(
        "an unknown outcome is said so and the next refresh shows the truth",
        not tally.unresolved and unknown.get("unknown") == trials,
        f"unresolved {tally.unresolved}; outcomes {unknown}",
    )
    section.check(
        "a flush whose answer was lost commits its records exactly once",
        not twice,
        "; ".join(twice[:3]) or f"{flushes} flushes, each record once in S3's table",
    )
    section.check("every injected fault fired", tally.unfired == 0, f"{tally.unfired} unused")


async def _wait(cond: Callable[[], Any], timeout_s: float) -> float | None:
    """Seconds until ``await cond()`` is true, or None after ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if await cond():
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    return None


async def run_background_failures(ctx: SuiteContext, section: Section) -> None:
    """The failing-background-push section."""
    period = 0.3
    user = "background"
    base = ctx.endpoint_below("background")
    with S3Proxy(base.url or "") as proxy:
        ep = proxy.endpoint_for(base)
        dev = LanceDBStorageService(
            make_config(
                SYNC,
                ctx.folder("background", "dev"),
                ep,
                device="dev-bg",
                SYNC_INTERVAL_S=str(period),
            ),
            endpoint=ep,
        )
        async with dev:
            await dev.add_documents(user, [document(f"b{i}", i) for i in range(5)])

            async def pushed() -> bool:
                status = await dev.status(user)
                done = (status.background or {}).get("last_success")
                return status.pending_changes == 0 and done is not None

            first = await _wait(pushed, 20 * period)
            proxy.cut()
            await dev.add_documents(user, [document(f"c{i}", i) for i in range(5)])
            await asyncio.sleep(8 * period)
            during = await dev.status(user)
            proxy.restore()
            recovered = await _wait(pushed, 30 * period)
            after = await dev.status(user)
        other = _service(SYNC, ctx.folder("background", "other"), base, "dev-other")
        async with other:
            await other.sync(user)
            arrived = sum([await other.get_document(user, f"c{i}") is not None for i in range(5)])
    bg = during.background or {}
    section.figure(
        period_s=period,
        first_push_s=None if first is None else round(first, 2),
        failures_counted=bg.get("failures"),
        last_error=(bg.get("last_error") or "")[:160],
        pending_during_outage=during.pending_changes,
        recovered_after_s=None if recovered is None else round(recovered, 2),
        total_failures_after=(after.background or {}).get("total_failures"),
        documents_on_other_device=arrived,
    )
    section.summary = (
        f"{bg.get('failures')} failed pushes counted, {during.pending_changes} pending, "
        f"caught up in {recovered if recovered is None else round(recovered, 1)} s"
    )
    section.check(
        "failed background pushes are counted in status() with their error",
        (bg.get("failures") or 0) >= 2 and bool(bg.get("last_error")),
        f"failures {bg.get('failures')}, last error {bg.get('last_error')!r:.80}",
    )
    section.check(
        "pending changes are counted during the outage",
        during.pending_changes == 5,
        f"pending_changes {during.pending_changes} (5 written while cut)",
    )
    section.check(
        "the next period catches up without a call, and another device receives it all",
        first is not None and recovered is not None and arrived == 5,
        f"first push {first}, recovered {recovered}, {arrived} of 5 on the other device",
    )
