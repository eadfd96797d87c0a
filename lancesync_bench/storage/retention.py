"""Remote retention: remove old versions of a user's S3 table, never a file a kept version needs.

The rule is Lance's own cleanup (pylance ``cleanup_old_versions``) run on the S3 table: a
version older than the retention period is removed unless it is the latest, and a file is
deleted only when no kept version references it. Files that no manifest references yet
(an upload in flight, or one a crash interrupted) are left alone unless they are at least
seven days old, so a push running elsewhere is never cut from under its manifest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from lancesync_bench.errors import S3Error
from lancesync_bench.s3.endpoint import S3Endpoint, Timeouts
from lancesync_bench.storage.schema import TABLE_NAME

__all__ = ["PruneReport", "prune_remote"]


@dataclass(frozen=True)
class PruneReport:
    """What one retention pass removed."""

    user_id: str
    retention_s: float
    versions_removed: int
    bytes_removed: int
    versions_kept: int


def _prune(uri: str, options: dict[str, str], older_than: timedelta) -> tuple[int, int, int]:
    try:
        import lance
    except ImportError as exc:  # pragma: no cover - pylance is a dependency
        raise S3Error("remote retention needs pylance (`pip install pylance`)") from exc
    dataset: Any = lance.dataset(uri, storage_options=options)
    stats = dataset.cleanup_old_versions(older_than=older_than, delete_unverified=False)
    kept = len(dataset.versions())
    return int(stats.old_versions), int(stats.bytes_removed), kept


async def prune_remote(
    endpoint: S3Endpoint, user_id: str, *, retention_s: float, timeouts: Timeouts
) -> PruneReport:
    """Remove versions of the user's S3 table older than ``retention_s`` (latest always kept)."""
    uri = endpoint.uri("users", user_id, f"{TABLE_NAME}.lance")
    removed, freed, kept = await asyncio.to_thread(
        _prune, uri, endpoint.storage_options(timeouts), timedelta(seconds=retention_s)
    )
    return PruneReport(user_id, retention_s, removed, freed, kept)
