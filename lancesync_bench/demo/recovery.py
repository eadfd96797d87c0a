"""Scenario (a): a desktop user backs up, loses the machine, and restores on a new one."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import pandas as pd

from lancesync_bench.config import StorageMode
from lancesync_bench.demo.lab import DemoLab
from lancesync_bench.demo.tables import (
    demo_documents,
    edited,
    live_documents,
    report_row,
    side_by_side,
)
from lancesync_bench.errors import LanceSyncError
from lancesync_bench.storage.reports import SyncReport

__all__ = ["RestoreDemo", "machine_loss_and_restore"]

USER = "dana"
_OLD, _NEW = "old-laptop", "new-laptop"


@dataclass(frozen=True)
class RestoreDemo:
    """What the machine-loss demo showed.

    ``documents``: each id's text before the loss and after the restore, and whether the
    whole document (text, vector, metadata) came back unchanged. ``transfers``: what each
    backup and the restore moved (files, bytes, S3 requests by kind).
    """

    documents: pd.DataFrame
    transfers: pd.DataFrame
    identical: bool
    files_lost: int


def _reachable(report: SyncReport) -> SyncReport:
    if not report.reachable:
        raise LanceSyncError(f"{report.operation} could not reach S3: {report.error}")
    return report


async def machine_loss_and_restore(lab: DemoLab) -> RestoreDemo:
    """Back up a desktop user's documents, delete the local folder, restore on a new path.

    The old laptop writes the seeded documents and backs up; then edits one, deletes one,
    adds two and backs up again (incremental). Its LOCAL_STORAGE_PATH is then deleted. A
    new laptop (new LOCAL_STORAGE_PATH, new device id) restores the latest backup and backs
    up once more (nothing left to send).
    """
    run = lab.run("restore")
    n, dim = run.sizes.docs, run.sizes.dim
    docs = demo_documents(dim, 0, n)
    mode = StorageMode.LOCAL_PRIMARY_S3_BACKUP
    rows = []
    async with run.service(mode, device="laptop-1", place=_OLD) as old:
        await old.add_documents(USER, docs)
        report = _reachable(await old.backup(USER))
        rows.append(report_row(f"backup 1 ({n} documents)", report))
        await old.add_documents(
            USER, [edited(docs[1], "Edited after the first backup."), *demo_documents(dim, n, 2)]
        )
        await old.delete_documents(USER, [docs[2]["id"]])
        report = _reachable(await old.backup(USER))
        rows.append(report_row("backup 2 (1 edit, 1 delete, 2 new)", report))
        before = await live_documents(old, USER)
    old_folder = run.folder / _OLD
    files_lost = sum(1 for p in old_folder.rglob("*") if p.is_file())
    shutil.rmtree(old_folder)  # the machine is gone
    async with run.service(mode, device="laptop-2", place=_NEW) as new:
        report = _reachable(await new.restore(USER))
        rows.append(report_row("restore on the new laptop", report))
        after = await live_documents(new, USER)
        report = _reachable(await new.backup(USER))
        rows.append(report_row("backup from the new laptop", report))
    transfers = pd.DataFrame(rows).set_index("step")
    documents = side_by_side(before, after, ("before (old laptop)", "after restore (new laptop)"))
    return RestoreDemo(
        documents=documents,
        transfers=transfers,
        identical=before == after,
        files_lost=files_lost,
    )
