"""The configuration matrix: the storage strategy of every frontend x backend combination.

Each row is computed by the real configuration code (:meth:`LanceDBSyncConfig.from_env`
on a synthetic environment), so the table can never drift from what a deployment gets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lancesync_bench.config import BackendLocation, FrontendType, LanceDBSyncConfig, StorageMode

__all__ = ["MATRIX_KEYS", "MatrixRow", "configuration_matrix", "format_table"]

# The keys of MatrixRow.as_dict(), in column order (the `matrix --json` contract).
MATRIX_KEYS: tuple[str, ...] = (
    "frontend_type",
    "backend_location",
    "storage_mode",
    "s3_primary",
    "local_cache",
    "s3_sync",
    "s3_backup",
    "use_case",
)

# The "Use Case" column of the spec's Configuration Matrix tables.
_USE_CASES: dict[tuple[FrontendType, BackendLocation], str] = {
    (FrontendType.WEB, BackendLocation.CLOUD): "Production Web App",
    (FrontendType.WEB, BackendLocation.LOCAL): "Development/Testing",
    (FrontendType.DESKTOP, BackendLocation.CLOUD): "Desktop with Cloud Backup",
    (FrontendType.DESKTOP, BackendLocation.LOCAL): "Desktop Standalone",
}

# A syntactically valid placeholder: every default mode but local_only needs a bucket to
# pass validation. Nothing is ever sent to it.
_PLACEHOLDER_BUCKET = "lancesync-matrix"

_HEADERS: dict[str, str] = {
    "frontend_type": "Frontend",
    "backend_location": "Backend",
    "storage_mode": "Storage mode",
    "s3_primary": "S3 primary",
    "local_cache": "Local cache",
    "s3_sync": "S3 sync",
    "s3_backup": "S3 backup",
    "use_case": "Use case",
}


@dataclass(frozen=True, kw_only=True)
class MatrixRow:
    """One frontend x backend combination and the storage behaviour it resolves to."""

    frontend_type: str
    backend_location: str
    storage_mode: str
    s3_primary: bool
    local_cache: bool
    s3_sync: bool
    s3_backup: bool
    use_case: str

    @classmethod
    def from_config(cls, config: LanceDBSyncConfig) -> MatrixRow:
        """The row describing a resolved configuration."""
        mode = config.storage_mode
        return cls(
            frontend_type=config.frontend_type.value,
            backend_location=config.backend_location.value,
            storage_mode=mode.value,
            s3_primary=mode.s3_is_primary,
            local_cache=config.local_cache_enabled,
            s3_sync=mode is StorageMode.LOCAL_PRIMARY_S3_SYNC,
            s3_backup=mode is StorageMode.LOCAL_PRIMARY_S3_BACKUP and config.s3_backup_enabled,
            use_case=_USE_CASES[(config.frontend_type, config.backend_location)],
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with exactly the keys of :data:`MATRIX_KEYS`, in that order."""
        return asdict(self)


def configuration_matrix() -> list[MatrixRow]:
    """The four frontend x backend rows with default flags (web first, cloud first)."""
    rows = []
    for frontend in FrontendType:
        for backend in BackendLocation:
            env = {
                "FRONTEND_TYPE": frontend.value,
                "BACKEND_LOCATION": backend.value,
                "S3_BUCKET": _PLACEHOLDER_BUCKET,
            }
            rows.append(MatrixRow.from_config(LanceDBSyncConfig.from_env(env)))
    return rows


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def format_table(rows: Sequence[MatrixRow]) -> str:
    """A plain-text table of ``rows``: a header, a rule, one line per row."""
    table = [list(_HEADERS.values())]
    table += [[_cell(row.as_dict()[key]) for key in MATRIX_KEYS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(MATRIX_KEYS))]

    def render(cells: list[str]) -> str:
        padded = (cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        return "  ".join(padded).rstrip()

    lines = [render(table[0]), render(["-" * width for width in widths])]
    lines += [render(line) for line in table[1:]]
    return "\n".join(lines)
