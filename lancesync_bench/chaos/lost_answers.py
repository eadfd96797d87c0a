"""Lost answers: S3-primary writes and flushes whose S3 request or its answer is lost.

S3-primary writes whose log PUT loses its answer (or never leaves, or loses its read-back
too), and flushes whose manifest PUT does. What a write reports must be what S3 holds,
seen by another instance; a flush whose outcome was unknown must not commit its records
twice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lancesync_bench.chaos.common import PRIMARY, document, open_service
from lancesync_bench.chaos.context import SuiteContext
from lancesync_bench.chaos.report import Section
from lancesync_bench.errors import CommitOutcomeUnknown, S3Error
from lancesync_bench.netem.lost import LostAnswers
from lancesync_bench.storage.service import LanceDBStorageService

__all__ = ["run_lost_answers"]

NAME = "lost_answers"
TITLE = "Lost S3 answers at each step of a commit"

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
    p = open_service(PRIMARY, ctx.folder("lost", "p"), ep, device="inst-p")
    observer = open_service(
        PRIMARY, ctx.folder("lost", "o"), ep, device="inst-o", CACHE_MAX_STALENESS_MS="0"
    )
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
