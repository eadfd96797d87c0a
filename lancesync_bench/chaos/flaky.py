"""Flaky S3: a proxy fails about 5% of requests (503 SlowDown and TCP resets, in turns) and
jitters the rest, through a workload with periodic syncs, backups or cache refreshes.

The storage layer may retry, report S3 unreachable, or (S3-primary) refuse a write; it
may never acknowledge a write and then lose it. At the end the faults stop, the mode
catches up, and every acknowledged write must be live on S3 and (local-primary) locally.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lancesync_bench.chaos.common import (
    FAST_FAIL_ENV,
    PRIMARY,
    S3_MODES,
    make_config,
    remote_live,
    service_live,
)
from lancesync_bench.chaos.context import SuiteContext
from lancesync_bench.chaos.report import Section
from lancesync_bench.chaos.workload import TRANSFER_EVERY, Workload
from lancesync_bench.netem import NetworkProfile, S3Proxy
from lancesync_bench.storage.service import LanceDBStorageService

__all__ = ["run_flaky"]

NAME = "flaky"
TITLE = "Flaky S3: 5% of requests fail, with jitter"

USER = "flaky"
# A few milliseconds of round trip with as much jitter: requests overtake each other in
# time, the way a real network reorders concurrent uploads.
_RTT_MS, _JITTER_MS = 2.0, 2.0
# Two retries (the configuration's default) ride out most single failures; fewer would
# turn the 5% into failed transfers, more would hide the faults entirely.
_FLAKY_ENV = {"S3_MAX_RETRIES": "2"}


def _profile(rate: float, mode: str) -> NetworkProfile:
    return NetworkProfile(
        name=f"flaky-{mode}",
        rtt_ms=_RTT_MS,
        jitter_ms=_JITTER_MS,
        fail_rate=rate,
        fail_mode="503" if mode == "503" else "reset",
    )


async def _one_mode(ctx: SuiteContext, mode: str, n_ops: int) -> dict[str, Any]:
    ep = ctx.endpoint_below(f"flaky-{mode}")
    rate = ctx.scale.flaky_fail_rate
    seed = ctx.rng(f"flaky-{mode}").randrange(2**31)
    with S3Proxy(str(ep.url), NetworkProfile(name="clean"), seed=seed) as proxy:
        pep = proxy.endpoint_for(ep)
        config = make_config(mode, ctx.folder("flaky", mode), pep, device="f-dev", **_FLAKY_ENV)
        async with LanceDBStorageService(config, endpoint=pep) as svc:
            workload = Workload(svc, USER, seed=seed, mode=mode)
            await workload.setup()
            start_counts = proxy.snapshot()
            for i in range(n_ops):
                if i % TRANSFER_EVERY == 0:  # 503 and resets take turns, period by period
                    turn = "503" if (i // TRANSFER_EVERY) % 2 == 0 else "reset"
                    proxy.set_profile(_profile(rate, turn))
                await workload.step(i, "flaky")
            counts = proxy.snapshot() - start_counts
            proxy.set_profile(NetworkProfile(name="clean"))
            level, attempts = await workload.level()
            local = await service_live(svc, USER) if mode != PRIMARY else None
    remote = await remote_live(ep, USER)
    lost = workload.lost(remote, local)
    log = workload.log
    return {
        "mode": mode,
        "operations": n_ops,
        "requests": counts.total,
        "faults_injected": counts.faults,
        "fault_share": round(counts.faults / counts.total, 4) if counts.total else None,
        "writes_acknowledged": len(log.select(phase="flaky", kind="write", ok=True)),
        "writes_failed": len(log.select(phase="flaky", kind="write", ok=False)),
        "transfers": {
            "ok": len(log.select(phase="flaky", kind="transfer", ok=True)),
            "failed": len(log.select(phase="flaky", kind="transfer", ok=False)),
        },
        "errors": log.errors(phase="flaky"),
        "write_latency": log.latency(phase="flaky", kind="write", ok=True),
        "writes_lost": len(lost),
        "lost_ids": sorted(lost)[:20],
        "wrong_reads": len(workload.wrong_reads),
        "level_at_end": level,
        "level_attempts": attempts,
        "unexpected_errors": workload.unexpected[:10],
    }


def _judge(section: Section, f: dict[str, Any]) -> None:
    mode = f["mode"]
    section.check(
        f"{mode}: faults were injected",
        f["faults_injected"] > 0,
        f"{f['faults_injected']} of {f['requests']} requests failed on purpose",
    )
    section.check(
        f"{mode}: every acknowledged write present at the end",
        f["writes_lost"] == 0 and f["level_at_end"],
        f"{f['writes_lost']} lost of {f['writes_acknowledged']} acknowledged writes; "
        f"level after {f['level_attempts']} attempt(s)",
    )
    section.check(
        f"{mode}: reads return the writer's latest acknowledged write",
        f["wrong_reads"] == 0,
        f"{f['wrong_reads']} wrong reads",
    )
    section.check(
        f"{mode}: only S3 errors surfaced",
        not f["unexpected_errors"],
        "; ".join(f["unexpected_errors"][:2]) or f"errors seen: {f['errors'] or 'none'}",
    )
    if mode != PRIMARY:
        section.check(
            f"{mode}: no local write failed",
            f["writes_failed"] == 0,
            f"{f['writes_failed']} failed",
        )


async def run_flaky(ctx: SuiteContext, section: Section) -> None:
    """The flaky-S3 section, one workload per S3 mode."""
    # The three modes run at once: each has its own proxy, folder and prefix, most of their
    # time is spent in retry back-off, and no latency figure here is judged.
    results = await asyncio.gather(*(_one_mode(ctx, m, ctx.scale.flaky_ops) for m in S3_MODES))
    modes = dict(zip(S3_MODES, results, strict=True))
    for figures in results:
        _judge(section, figures)
    section.figure(
        operations_per_mode=ctx.scale.flaky_ops,
        fail_rate=ctx.scale.flaky_fail_rate,
        rtt_ms=_RTT_MS,
        jitter_ms=_JITTER_MS,
        s3_settings={**FAST_FAIL_ENV, **_FLAKY_ENV},
        modes=modes,
        writes_lost=sum(m["writes_lost"] for m in modes.values()),
        faults_injected=sum(m["faults_injected"] for m in modes.values()),
    )
