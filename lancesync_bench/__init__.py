"""lancesync-bench: a real LanceDB sync system, its storage modes, and benchmarks of them.

The public surface:

* configuration: :class:`LanceDBSyncConfig`, :class:`StorageMode`, :class:`ConfigError`
* S3 endpoints: :class:`S3Endpoint` (see :mod:`lancesync_bench.s3`)
* storage: :class:`LanceDBStorageService`
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# Lance logs one "partition N is empty, skipping" warning per empty IVF partition whenever
# maintenance folds a few new rows into a delta index segment (hundreds per pass at 100k
# rows), and a k-means warning when sqrt(n) partitions outnumber the data's clusters:
# routine, and they buried the benchmark's output (which measures recall itself). pylance
# (LANCE_LOG) and LanceDB (LANCEDB_LOG, its own copy of Lance) read these once, when first
# imported; a value the user set wins.
os.environ.setdefault(
    "LANCE_LOG", "warn,lance::index::vector::builder=error,lance_index::vector::kmeans=error"
)
os.environ.setdefault(
    "LANCEDB_LOG", "warn,lance::index::vector::builder=error,lance_index::vector::kmeans=error"
)
# Search calibration reads index statistics (for the index type) and never needs the IVF
# centroids in them; without this, Lance warns on each call that they will be left out by
# default in a future release.
os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")

from lancesync_bench.config import BackendLocation, FrontendType, LanceDBSyncConfig, StorageMode
from lancesync_bench.errors import (
    ConfigError,
    DocumentError,
    IntegrityError,
    LanceSyncError,
    S3Error,
    S3Unavailable,
    SyncConflict,
    UserIdError,
)
from lancesync_bench.s3.endpoint import S3Endpoint

if TYPE_CHECKING:
    from lancesync_bench.storage.service import LanceDBStorageService

__version__ = "0.1.0"

__all__ = [
    "BackendLocation",
    "ConfigError",
    "DocumentError",
    "FrontendType",
    "IntegrityError",
    "LanceDBStorageService",
    "LanceDBSyncConfig",
    "LanceSyncError",
    "S3Endpoint",
    "S3Error",
    "S3Unavailable",
    "StorageMode",
    "SyncConflict",
    "UserIdError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # The storage service pulls in LanceDB; load it only when it is asked for, so that
    # `lancesync-bench matrix` and config checks start fast.
    if name == "LanceDBStorageService":
        from lancesync_bench.storage.service import LanceDBStorageService

        return LanceDBStorageService
    raise AttributeError(f"module 'lancesync_bench' has no attribute {name!r}")
