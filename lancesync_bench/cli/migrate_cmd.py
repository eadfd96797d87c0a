"""``lancesync-bench migrate``: move a user's documents to another storage mode, verified."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lancesync_bench.cli.options import add_command

__all__ = ["register"]

_DESCRIPTION = """\
Move one user's documents from the storage mode a deployment used to the one it moves to,
and prove it: S3 is read back and its live documents must equal the source's (same count,
same SHA-256 over id, text, metadata and vector bytes). Supported:

  local_primary_s3_backup -> s3_primary_local_cache   desktop app -> web app (cloud)
      the desktop's S3 backup is the table the web backend reads: final backup, nothing
      pending, contents equal; the desktop then stops writing (it becomes a client of
      the web backend) because two primaries on one table conflict.
  local_only -> s3_primary_local_cache                local development -> cloud production
      the local table is uploaded (data first, manifest last, SHA-256 recorded) into an
      S3 location that holds no table; an existing table there is never written into.
  local_primary_s3_sync -> s3_primary_local_cache     web app, local backend -> cloud backend
      final sync (pushes this device's pending records); S3 must hold every live
      document of this device, and is the primary from then on.

S3 and local settings come from the environment as for the service (S3_BUCKET, S3_PREFIX,
S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, LOCAL_STORAGE_PATH,
EMBEDDING_DIM, DEVICE_ID...); FRONTEND_TYPE, BACKEND_LOCATION and the mode flags are set
from --from and --to. Stop every app that writes the user's table first.

exit status: 0 migrated and verified (or dry run done), 1 refused or verification failed
(nothing handed over), 2 usage or configuration error.
"""


def register(subparsers: Any) -> None:
    """Add the ``migrate`` subcommand."""
    p = add_command(
        subparsers,
        "migrate",
        summary="move a user's documents to another storage mode, verified",
        description=_DESCRIPTION,
    )
    p.add_argument("--user", required=True, metavar="ID", help="the user id to migrate")
    p.add_argument(
        "--from", dest="source", required=True, metavar="MODE", help="storage mode used until now"
    )
    p.add_argument("--to", dest="target", required=True, metavar="MODE", help="storage mode to use")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would move (files, bytes, versions) and change nothing",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from lancesync_bench.migrate import format_report, migrate

    report = migrate(
        args.user,
        args.source,
        args.target,
        dry_run=args.dry_run,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(format_report(report))
    return 0
