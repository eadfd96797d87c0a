"""``lancesync-bench config``: the configuration this environment resolves to, and its verdict."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lancesync_bench.cli.options import add_command
from lancesync_bench.config import CLOUD_INDICATORS, LanceDBSyncConfig
from lancesync_bench.errors import ConfigError

__all__ = ["ENVIRONMENT_VARIABLES", "register", "run"]

# The variables `config` reads, with the one-line explanation `--help` shows.
ENVIRONMENT_VARIABLES: tuple[tuple[str, str], ...] = (
    ("FRONTEND_TYPE", "required: web or desktop"),
    ("BACKEND_LOCATION", "cloud or local; unset: detected from cloud indicators"),
    ("S3_STORAGE_ENABLED", "boolean; unset: from frontend x backend"),
    ("USE_S3_AS_PRIMARY", "boolean; unset: true only for web + cloud"),
    ("LOCAL_CACHE_ENABLED", "boolean; unset: true"),
    ("S3_BACKUP_ENABLED", "boolean; unset: true for desktop"),
    ("S3_BUCKET", "bucket name; required by every mode that uses S3"),
    ("S3_PREFIX", "key prefix such as apps/notes (no '..' segments)"),
    ("S3_ENDPOINT_URL", "http(s)://host[:port]; falls back to AWS_ENDPOINT_URL"),
    ("AWS_ACCESS_KEY_ID", "S3 access key id"),
    ("AWS_SECRET_ACCESS_KEY", "S3 secret key (never printed)"),
    ("AWS_REGION", "falls back to AWS_DEFAULT_REGION, then us-east-1"),
    ("LOCAL_STORAGE_PATH", "local data directory; default: per-user data dir"),
    ("EMBEDDING_DIM", "vector dimension, 1-16384; default 384"),
    ("DEVICE_ID", "this device's id in sync tie-breaks (1-64 of A-Za-z0-9._-)"),
    ("CACHE_MAX_STALENESS_MS", "S3-primary cache staleness bound; default 1000"),
    ("SYNC_INTERVAL_S", "background sync/backup period; default 30 (0: off)"),
    ("RETENTION_S", "keep remote versions newer than this; default 7 days"),
    ("S3_CONNECT_TIMEOUT_S", "default 2"),
    ("S3_REQUEST_TIMEOUT_S", "default 15"),
    ("S3_MAX_RETRIES", "default 2"),
)


def _epilog() -> str:
    width = max(len(name) for name, _ in ENVIRONMENT_VARIABLES)
    lines = ["environment variables:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, text in ENVIRONMENT_VARIABLES]
    lines.append("")
    lines.append("booleans accept true/false, 1/0, yes/no, on/off (any case).")
    lines.append("cloud indicators (any present, BACKEND_LOCATION unset -> cloud):")
    lines.append("  " + ", ".join(name for name, _ in CLOUD_INDICATORS))
    lines.append("")
    lines.append("exit status: 0 valid, 2 invalid or unparseable configuration.")
    return "\n".join(lines)


def register(subparsers: Any) -> None:
    """Add the ``config`` subcommand to ``subparsers``."""
    parser = add_command(
        subparsers,
        "config",
        summary="show the configuration resolved from the current environment",
        description=(
            "Resolve the LanceDB sync configuration from the current environment and show "
            "it: frontend type, backend location and why it was chosen, storage mode, flags "
            "and S3 settings (secrets redacted), and whether the configuration is valid."
        ),
        epilog=_epilog(),
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of aligned text"
    )
    parser.set_defaults(func=run)


def _format_text(report: dict[str, Any]) -> str:
    width = max(len(key) for key in report)
    return "\n".join(f"{key.ljust(width)}  {_text(value)}" for key, value in report.items())


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "-"
    return str(value)


def run(args: argparse.Namespace) -> int:
    """Print the resolved configuration and its validation result.

    Returns 0 when valid. An unparseable value, or an invalid combination (after the
    configuration has been shown), raises :class:`ConfigError`: the command line prints
    its message on one line and exits 2.
    """
    config = LanceDBSyncConfig.from_env(validate=False)
    error: ConfigError | None = None
    try:
        config.validate()
    except ConfigError as exc:
        error = exc
    report = config.to_dict()
    report["validation"] = "valid" if error is None else str(error)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_format_text(report))
    if error is not None:
        raise error
    return 0
