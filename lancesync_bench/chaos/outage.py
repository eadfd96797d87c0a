"""S3 outage: the network path is cut in the middle of a workload, then restored.

For each S3 mode a service reaches S3 only through a proxy; after a third of the
operations the proxy cuts the path (every connection reset, as when a network drops), and
after two thirds it restores it. Local-primary modes must keep acknowledging writes at
local latency and lose none; the S3-primary mode must keep serving reads from its cache
and fail writes fast with an S3 error. After the restore each mode must catch up.
"""

from __future__ import annotations

import time
from typing import Any

from lancesync_bench.chaos.common import (
    FAST_FAIL_ENV,
    PRIMARY,
    S3_MODES,
    failure_bound_s,
    make_config,
    remote_live,
    service_live,
    tail_ms,
)
from lancesync_bench.chaos.context import SuiteContext
from lancesync_bench.chaos.report import Section
from lancesync_bench.chaos.workload import Workload
from lancesync_bench.netem import NetworkProfile, S3Proxy
from lancesync_bench.storage.service import LanceDBStorageService

__all__ = ["run_outage"]

NAME = "outage"
TITLE = "S3 outage: the network path cut mid-workload"

USER = "outage"


async def _one_mode(ctx: SuiteContext, mode: str, n_ops: int) -> dict[str, Any]:
    ep = ctx.endpoint_below(f"outage-{mode}")
    with S3Proxy(str(ep.url), NetworkProfile(name="loopback"), seed=ctx.seed) as proxy:
        pep = proxy.endpoint_for(ep)
        config = make_config(mode, ctx.folder("outage", mode), pep, device="o-dev")
        async with LanceDBStorageService(config, endpoint=pep) as svc:
            workload = Workload(
                svc, USER, seed=ctx.rng(f"outage-{mode}").randrange(2**31), mode=mode
            )
            await workload.setup()
            cut_at, restore_at = n_ops // 3, 2 * n_ops // 3
            write_requests = 0
            catch_up: dict[str, Any] = {}
            for i in range(n_ops):
                if i == cut_at:
                    proxy.cut("reset")
                if i == restore_at:
                    proxy.restore()
                    start = time.perf_counter()
                    done, attempts = await workload.level()
                    catch_up = {
                        "caught_up": done,
                        "attempts": attempts,
                        "catch_up_s": round(time.perf_counter() - start, 3),
                    }
                phase = "before" if i < cut_at else "outage" if i < restore_at else "after"
                before = proxy.snapshot().total
                record = await workload.step(i, phase)
                if record.kind == "write" and phase != "outage":
                    write_requests += proxy.snapshot().total - before
            final_done, _ = await workload.level()
            live_local = await service_live(svc, USER) if mode != PRIMARY else None
    remote = await remote_live(ep, USER)  # directly, not through the proxy
    lost = workload.lost(remote, live_local)
    log = workload.log
    return {
        "mode": mode,
        "operations": n_ops,
        "writes_acknowledged": {
            p: len(log.select(phase=p, kind="write", ok=True))
            for p in ("before", "outage", "after")
        },
        "writes_failed": {
            p: len(log.select(phase=p, kind="write", ok=False))
            for p in ("before", "outage", "after")
        },
        "writes_lost": len(lost),
        "lost_ids": sorted(lost)[:20],
        "write_latency_before": log.latency(phase="before", kind="write", ok=True),
        "write_latency_outage": log.latency(phase="outage", kind="write", ok=True),
        "failed_write_latency_outage": log.latency(phase="outage", kind="write", ok=False),
        "read_latency_before": log.latency(phase="before", kind="read"),
        "read_latency_outage": log.latency(phase="outage", kind="read"),
        "reads_outage": {
            "ok": len(log.select(phase="outage", kind="read", ok=True)),
            "failed": len(log.select(phase="outage", kind="read", ok=False)),
        },
        "wrong_reads": len(workload.wrong_reads),
        "transfers_outage": {
            "count": len(log.select(phase="outage", kind="transfer")),
            "unreachable": len(log.select(phase="outage", kind="transfer", ok=False)),
            "latency": log.latency(phase="outage", kind="transfer"),
        },
        "errors_outage": log.errors(phase="outage"),
        "s3_requests_by_local_writes": write_requests,
        "stale_reads_flagged": workload.stale_seen,
        "final_level": final_done,
        "unexpected_errors": workload.unexpected[:10],
        "failure_bound_s": round(failure_bound_s(config), 1),
        **catch_up,
    }


def _judge(section: Section, f: dict[str, Any]) -> None:
    mode = f["mode"]
    bound_ms = f["failure_bound_s"] * 1000
    section.check(
        f"{mode}: no acknowledged write lost",
        f["writes_lost"] == 0,
        f"{f['writes_lost']} lost {f['lost_ids'][:5]}",
    )
    section.check(
        f"{mode}: reads return the writer's latest acknowledged write",
        f["wrong_reads"] == 0,
        f"{f['wrong_reads']} wrong reads",
    )
    section.check(
        f"{mode}: caught up after restore",
        bool(f.get("caught_up")) and f["final_level"],
        f"{f.get('catch_up_s')} s, {f.get('attempts')} attempt(s)",
    )
    section.check(
        f"{mode}: no error other than S3 errors",
        not f["unexpected_errors"],
        "; ".join(f["unexpected_errors"][:2]) or "none",
    )
    transfers = f["transfers_outage"]
    if mode == PRIMARY:
        outage_writes = f["writes_acknowledged"]["outage"] + f["writes_failed"]["outage"]
        failed_tail = tail_ms(f["failed_write_latency_outage"])
        section.check(
            f"{mode}: every write during the outage fails with an S3 error",
            f["writes_acknowledged"]["outage"] == 0
            # CommitOutcomeUnknown: the connection broke after the log PUT was sent, and
            # the read-back failed too; such a write is not acknowledged, and the
            # no-acknowledged-write-lost check covers the ones that were.
            and set(f["errors_outage"])
            <= {"S3Unavailable", "S3Error", "CommitOutcomeUnknown", "unreachable"},
            f"{f['writes_failed']['outage']}/{outage_writes} failed; errors {f['errors_outage']}",
        )
        section.check(
            f"{mode}: failed writes return promptly",
            failed_tail is not None and failed_tail < bound_ms,
            f"p99/max {failed_tail} ms < bound {bound_ms:.0f} ms from the configured timeouts",
        )
        section.check(
            f"{mode}: reads served from the cache during the outage, flagged stale",
            f["reads_outage"]["failed"] == 0
            and f["reads_outage"]["ok"] > 0
            and f["stale_reads_flagged"],
            f"{f['reads_outage']['ok']} reads ok, stale flag {f['stale_reads_flagged']}",
        )
        return
    before, during = tail_ms(f["write_latency_before"]), tail_ms(f["write_latency_outage"])
    section.check(
        f"{mode}: every write during the outage acknowledged",
        f["writes_failed"]["outage"] == 0 and f["writes_acknowledged"]["outage"] > 0,
        f"{f['writes_acknowledged']['outage']} acknowledged, {f['writes_failed']['outage']} failed",
    )
    section.check(
        f"{mode}: writes stay local (no S3 request, outage p99 below the connect timeout)",
        f["s3_requests_by_local_writes"] == 0
        and during is not None
        and during < 1000 * float(FAST_FAIL_ENV["S3_CONNECT_TIMEOUT_S"]),
        f"{f['s3_requests_by_local_writes']} S3 requests; "
        f"p99/max before {before} ms, during {during} ms",
    )
    transfer_tail = tail_ms(transfers["latency"])
    section.check(
        f"{mode}: sync/backup during the outage report S3 unreachable promptly",
        transfers["count"] > 0
        and transfers["unreachable"] == transfers["count"]
        and (transfer_tail or 0) < bound_ms,
        f"{transfers['unreachable']}/{transfers['count']} unreachable, "
        f"p99/max {transfer_tail} ms < {bound_ms:.0f} ms",
    )


async def run_outage(ctx: SuiteContext, section: Section) -> None:
    """The outage section, one workload per S3 mode."""
    n_ops = ctx.scale.outage_ops
    modes = {}
    for mode in S3_MODES:
        figures = await _one_mode(ctx, mode, n_ops)
        modes[mode] = figures
        _judge(section, figures)
    section.figure(
        operations_per_mode=n_ops,
        cut="S3Proxy.cut('reset') after 1/3 of the operations, restore() after 2/3",
        s3_settings=dict(FAST_FAIL_ENV),
        modes=modes,
        writes_lost=sum(m["writes_lost"] for m in modes.values()),
    )
