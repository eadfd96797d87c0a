"""Moving a user's documents from one storage mode to another, verified end to end.

Every S3-using mode keeps a user's table at ``s3://BUCKET/PREFIX/users/<id>/documents.lance``
and local-primary modes at ``LOCAL_STORAGE_PATH/users/<id>/documents.lance``, so a migration
moves data only when S3 does not hold it yet, and always ends by reading S3 back and
comparing the live documents (:func:`content_hash`) with the source's.

Supported (:data:`SUPPORTED`): ``local_primary_s3_backup``, ``local_only`` and
``local_primary_s3_sync`` to ``s3_primary_local_cache``. The command line is
``lancesync-bench migrate --user ID --from MODE --to MODE [--dry-run] [--json]``.
"""

from __future__ import annotations

from lancesync_bench.migrate.content import (
    Snapshot,
    content_hash,
    coverage,
    live_documents,
    read_local,
    read_s3,
)
from lancesync_bench.migrate.report import MigrationReport, format_report
from lancesync_bench.migrate.runner import (
    MODE_ENV,
    SUPPORTED,
    migrate,
    migrate_async,
    mode_config,
    parse_mode,
)
from lancesync_bench.migrate.upload import MigrationError

__all__ = [
    "MODE_ENV",
    "SUPPORTED",
    "MigrationError",
    "MigrationReport",
    "Snapshot",
    "content_hash",
    "coverage",
    "format_report",
    "live_documents",
    "migrate",
    "migrate_async",
    "mode_config",
    "parse_mode",
    "read_local",
    "read_s3",
]
