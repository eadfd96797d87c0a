"""Scenario (b): two devices write, conflict on one id, delete another, sync, and converge."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from lancesync_bench.config import StorageMode
from lancesync_bench.demo.lab import DemoLab
from lancesync_bench.demo.tables import (
    WINNER_RULE,
    demo_documents,
    edited,
    live_documents,
    record_history,
    report_row,
    side_by_side,
)
from lancesync_bench.storage.reports import SyncReport

__all__ = ["DEVICE_A", "DEVICE_B", "TwoDeviceDemo", "two_devices_converge"]

USER = "sam"
DEVICE_A, DEVICE_B = "device-a", "device-b"


@dataclass(frozen=True)
class TwoDeviceDemo:
    """What the two-device demo showed.

    ``syncs``: each sync in order, what changed locally before it, and what it moved.
    ``documents``: each id's live text on both devices after the last sync.
    ``history``: every record of the conflicting and the deleted id on device A, with the
    winner marked. ``rule``: how the winner is chosen.
    """

    syncs: pd.DataFrame
    documents: pd.DataFrame
    history: pd.DataFrame
    rule: str
    converged: bool
    conflict_id: str
    deleted_id: str


async def two_devices_converge(lab: DemoLab) -> TwoDeviceDemo:
    """Two web-app devices with a local backend (sync mode) share one user's documents.

    A writes the seeded documents and syncs; B syncs them down. Then A edits one document
    and deletes another while B edits the same document (later) and adds two new ones.
    Syncing A, B, A leaves both devices with the same live documents: B's edit wins (it is
    later), the delete holds, and both sides' new documents are everywhere.
    """
    run = lab.run("devices")
    n, dim = run.sizes.docs, run.sizes.dim
    docs = demo_documents(dim, 0, n)
    conflict_id, deleted_id = docs[3]["id"], docs[5]["id"]
    mode = StorageMode.LOCAL_PRIMARY_S3_SYNC
    rows = []

    def step(label: str, changes: str, report: SyncReport) -> None:
        rows.append({**report_row(label, report), "local changes before it": changes})

    async with run.service(mode, device=DEVICE_A) as a, run.service(mode, device=DEVICE_B) as b:
        await a.add_documents(USER, docs)
        step("1. A syncs", f"A wrote {n} documents", await a.sync(USER))
        step("2. B syncs", "none", await b.sync(USER))
        await a.add_documents(USER, [edited(docs[3], f"Edited on {DEVICE_A}.")])
        await a.delete_documents(USER, [deleted_id])
        await b.add_documents(
            USER, [edited(docs[3], f"Edited on {DEVICE_B}."), *demo_documents(dim, n, 2)]
        )
        step(
            "3. A syncs",
            f"A edited {conflict_id}, deleted {deleted_id}",
            await a.sync(USER),
        )
        step(
            "4. B syncs",
            f"B edited {conflict_id} (after A), added 2 documents",
            await b.sync(USER),
        )
        step("5. A syncs", "none", await a.sync(USER))
        live_a, live_b = await live_documents(a, USER), await live_documents(b, USER)
        history = await record_history(a, USER, [conflict_id, deleted_id])
    columns = [
        "step",
        "local changes before it",
        "reachable",
        "records up",
        "records down",
        "files up",
        "files down",
        "S3 requests",
        "by kind",
    ]
    return TwoDeviceDemo(
        syncs=pd.DataFrame(rows)[columns].set_index("step"),
        documents=side_by_side(live_a, live_b, (DEVICE_A, DEVICE_B)),
        history=history,
        rule=WINNER_RULE,
        converged=live_a == live_b,
        conflict_id=conflict_id,
        deleted_id=deleted_id,
    )
