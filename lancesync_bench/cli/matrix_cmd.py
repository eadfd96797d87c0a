"""``lancesync-bench matrix``: the storage mode of every frontend x backend combination."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lancesync_bench.matrix import configuration_matrix, format_table

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``matrix`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "matrix",
        help="show the storage mode of each frontend x backend combination",
        description=(
            "Show the configuration matrix: for web and desktop frontends with a cloud or "
            "local backend, the storage mode the configuration resolves to by default, and "
            "whether S3 is primary, a local cache is kept, and S3 is used for sync or backup."
        ),
    )
    parser.add_argument(
        "--json", action="store_true", help="print a JSON list of objects instead of a table"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the matrix as a table or, with ``--json``, as a JSON list; return 0."""
    rows = configuration_matrix()
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
    else:
        print(format_table(rows))
    return 0
