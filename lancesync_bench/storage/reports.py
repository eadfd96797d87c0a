"""What sync-like calls and status queries return."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["StoreStatus", "SyncReport"]


@dataclass
class SyncReport:
    """The outcome of one sync, backup, restore or cache refresh.

    ``reachable`` is False when S3 did not answer; the call then returns instead of raising,
    and ``error`` says what happened. ``requests`` counts S3 requests by kind.
    """

    operation: str
    user_id: str
    mode: str
    reachable: bool = True
    error: str | None = None
    files_up: int = 0
    bytes_up: int = 0
    files_down: int = 0
    bytes_down: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    records_up: int = 0
    records_down: int = 0
    local_version: int | None = None
    remote_version: int | None = None
    versions_created: list[int] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def requests_total(self) -> int:
        """All S3 requests the call made."""
        return sum(self.requests.values())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        out = asdict(self)
        out["requests_total"] = self.requests_total
        return out


@dataclass
class StoreStatus:
    """Where one user's data stands: versions, pending changes, last transfers, last error."""

    user_id: str
    mode: str
    local_version: int | None
    remote_version: int | None
    in_sync: bool | None
    pending_changes: int
    last_push: float | None = None
    last_pull: float | None = None
    last_error: str | None = None
    reachable: bool | None = None
    reads_may_be_stale: bool = False
    documents: int | None = None
    # The write log and in-memory table (local-primary modes): see WriteTier.stats().
    write_tier: dict[str, Any] | None = None
    # Vector search parameters calibrated against exact search, with the estimated recall
    # (a 95 % lower bound), the sample and the index: see storage.calibrate.SearchParams.
    search: dict[str, Any] | None = None
    # The periodic sync/backup (SYNC_INTERVAL_S): failures since the last success, failures
    # in all, the last error and the time of the last success.
    background: dict[str, Any] | None = None
    # Background upkeep (compaction, index updates, search calibration, prewarming), in the
    # same shape: a failed pass is retried by the next one, and counted here meanwhile.
    upkeep: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)
