"""Failing background pushes: counted in ``status()``, then caught up by the next period.

A sync device with a short ``SYNC_INTERVAL_S`` loses its path to S3 for a while: the
failed periodic pushes and the pending changes must show in ``status()``, and the next
period must catch up without anyone calling ``sync()``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from lancesync_bench.chaos.common import SYNC, document, make_config, open_service
from lancesync_bench.chaos.context import SuiteContext
from lancesync_bench.chaos.report import Section
from lancesync_bench.netem import S3Proxy
from lancesync_bench.storage.service import LanceDBStorageService

__all__ = ["run_background_failures"]

NAME = "background"
TITLE = "Failing background pushes: counted, shown, caught up"


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

            async def failed_twice() -> bool:
                status = await dev.status(user)
                return ((status.background or {}).get("failures") or 0) >= 2

            # Each failed push waits out its retry's random backoff (up to 1 s with one
            # retry), so how many periods fail in a fixed time varies: wait for two failures.
            two_failures = await _wait(failed_twice, 40 * period)
            during = await dev.status(user)
            proxy.restore()
            recovered = await _wait(pushed, 30 * period)
            after = await dev.status(user)
        other = open_service(SYNC, ctx.folder("background", "other"), base, device="dev-other")
        async with other:
            await other.sync(user)
            arrived = sum([await other.get_document(user, f"c{i}") is not None for i in range(5)])
    bg = during.background or {}
    section.figure(
        period_s=period,
        first_push_s=None if first is None else round(first, 2),
        two_failures_after_s=None if two_failures is None else round(two_failures, 2),
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
