"""Compaction prepared beside a table and committed onto it later, in one short step.

Rewriting small fragments into one is the slow part of a maintenance pass (tens to
hundreds of ms, more with the upload of the new file). Where writes must wait for a
maintenance commit (the S3-primary cache: one lock orders commits and their pushes), the
rewrite is done first on a shadow of the table (hard links of one version's files, so
nothing of the table itself changes), its new data files are uploaded, and only Lance's
commit of the rewrite, which rebases over the appends made meanwhile, waits for the lock.

Lance's distributed compaction API does the work: ``Compaction.plan`` and each task's
``execute`` on the shadow, ``Compaction.commit`` on the table.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lancesync_bench.storage.transfer import latest_version, manifest_version

__all__ = ["PreparedCompaction", "prepare_compaction"]

# What the shadow needs of a version: its manifest, its data and its deletion files.
_NEEDED = ("data/", "_deletions/")


@dataclass
class PreparedCompaction:
    """A rewrite of one version's small fragments, ready to be committed on the table.

    ``files`` are the new data files (relative path -> size), written under ``shadow``;
    ``hashes`` their SHA-256, once uploaded.
    """

    shadow: Path
    read_version: int
    rewrites: list[Any]
    files: dict[str, int]
    hashes: dict[str, str] = field(default_factory=dict)

    def commit(self, table_dir: Path) -> None:
        """Link the new data files into ``table_dir`` and commit the rewrite there.

        Raises what Lance raises when the rewrite no longer fits (another writer compacted
        or deleted from the same fragments meanwhile); the caller then compacts in place.
        """
        import lance
        from lance.optimize import Compaction

        for rel in self.files:
            dest = table_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # a retried commit linked it already
                os.link(self.shadow / rel, dest)
        Compaction.commit(lance.dataset(str(table_dir)), self.rewrites)

    def discard(self) -> None:
        """Remove the shadow (the table never referenced its files unless committed)."""
        shutil.rmtree(self.shadow, ignore_errors=True)


def prepare_compaction(
    table_dir: Path, files: dict[str, int], shadow: Path
) -> PreparedCompaction | None:
    """Plan and run the compaction of the newest version among ``files`` on a shadow.

    ``files`` is a listing of ``table_dir`` taken when no commit was under way (every file
    of its newest version is in it). None when there is nothing to compact.
    """
    import lance
    from lance.optimize import Compaction

    version = latest_version(files)
    if not version:
        return None
    shutil.rmtree(shadow, ignore_errors=True)
    for rel in files:
        keep = rel.startswith(_NEEDED) or (
            rel.startswith("_versions/") and manifest_version(rel) == version
        )
        if keep:
            dest = shadow / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(table_dir / rel, dest)
    try:
        dataset = lance.dataset(str(shadow))
        plan = Compaction.plan(dataset, {})
        if not plan.tasks:
            shutil.rmtree(shadow, ignore_errors=True)
            return None
        rewrites = [task.execute(dataset) for task in plan.tasks]
    except BaseException:
        shutil.rmtree(shadow, ignore_errors=True)
        raise
    new = {
        rel: entry.stat().st_size
        for entry in os.scandir(shadow / "data")
        if (rel := f"data/{entry.name}") not in files
    }
    return PreparedCompaction(shadow, version, rewrites, new)
