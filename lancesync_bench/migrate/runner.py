"""Which migrations exist, the configuration each side gets, and the entry points.

A migration's two configurations come from one environment: the variables that decide a
storage mode (:data:`MODE_ENV`) are imposed for ``--from`` and ``--to``; everything else
(S3 endpoint and keys, LOCAL_STORAGE_PATH, EMBEDDING_DIM, DEVICE_ID) is the user's.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping

from lancesync_bench.config import LanceDBSyncConfig, StorageMode
from lancesync_bench.errors import ConfigError
from lancesync_bench.migrate.flows import FLOWS, Run
from lancesync_bench.migrate.report import MigrationReport
from lancesync_bench.s3.endpoint import S3Endpoint, Timeouts
from lancesync_bench.s3.probe import check_access
from lancesync_bench.storage.schema import TABLE_NAME, validate_user_id
from lancesync_bench.storage.transfer import TransferStats

__all__ = ["MODE_ENV", "SUPPORTED", "migrate", "migrate_async", "mode_config", "parse_mode"]

_BACKUP = StorageMode.LOCAL_PRIMARY_S3_BACKUP
_LOCAL = StorageMode.LOCAL_ONLY
_SYNC = StorageMode.LOCAL_PRIMARY_S3_SYNC
_PRIMARY = StorageMode.S3_PRIMARY_LOCAL_CACHE

# The settings that put a configuration in each mode; they override the environment's own,
# everything else (S3 endpoint, keys, LOCAL_STORAGE_PATH, EMBEDDING_DIM...) is kept.
MODE_ENV: dict[StorageMode, dict[str, str]] = {
    _LOCAL: {
        "FRONTEND_TYPE": "web",
        "BACKEND_LOCATION": "local",
        "S3_STORAGE_ENABLED": "false",
        "USE_S3_AS_PRIMARY": "false",
        "S3_BACKUP_ENABLED": "false",
        "LOCAL_CACHE_ENABLED": "true",
    },
    _BACKUP: {
        "FRONTEND_TYPE": "desktop",
        "BACKEND_LOCATION": "local",
        "USE_S3_AS_PRIMARY": "false",
        "S3_BACKUP_ENABLED": "true",
        "LOCAL_CACHE_ENABLED": "true",
    },
    _SYNC: {
        "FRONTEND_TYPE": "web",
        "BACKEND_LOCATION": "local",
        "S3_STORAGE_ENABLED": "true",
        "USE_S3_AS_PRIMARY": "false",
        "LOCAL_CACHE_ENABLED": "true",
    },
    _PRIMARY: {
        "FRONTEND_TYPE": "web",
        "BACKEND_LOCATION": "cloud",
        "S3_STORAGE_ENABLED": "true",
        "USE_S3_AS_PRIMARY": "true",
    },
}

SUPPORTED: dict[tuple[StorageMode, StorageMode], str] = {
    (_BACKUP, _PRIMARY): "desktop app -> web app with a cloud backend",
    (_LOCAL, _PRIMARY): "local development -> cloud production",
    (_SYNC, _PRIMARY): "web app with a local backend -> cloud backend",
}


def _allowed_pairs() -> str:
    return ", ".join(f"{a.value} -> {b.value}" for a, b in SUPPORTED)


def parse_mode(value: str, option: str) -> StorageMode:
    """A storage mode by name; a :class:`ConfigError` names the value and the modes."""
    try:
        return StorageMode(value.strip().lower())
    except ValueError:
        allowed = ", ".join(m.value for m in StorageMode)
        raise ConfigError(f"{option} {value!r} is not a storage mode; allowed: {allowed}") from None


def mode_config(mode: StorageMode, env: Mapping[str, str]) -> LanceDBSyncConfig:
    """The configuration ``env`` gives once the settings of ``mode`` are imposed on it."""
    config = LanceDBSyncConfig.from_env({**env, **MODE_ENV[mode]})
    if config.storage_mode is not mode:  # pragma: no cover - MODE_ENV pins every deciding flag
        raise ConfigError(f"the environment resolves to {config.storage_mode.value}, not {mode}")
    return config


async def migrate_async(
    user_id: str,
    source: StorageMode | str,
    target: StorageMode | str,
    *,
    env: Mapping[str, str] | None = None,
    endpoint: S3Endpoint | None = None,
    dry_run: bool = False,
    progress: bool = False,
) -> MigrationReport:
    """Migrate one user's documents from storage mode ``source`` to ``target``.

    Settings come from ``env`` (``os.environ`` when None) with each mode's deciding
    variables imposed (:data:`MODE_ENV`); ``endpoint`` overrides the S3 endpoint they
    describe. A dry run only lists and reads. Raises :class:`ConfigError` for an
    unsupported pair or bad settings, :class:`MigrationError` when the migration refuses or
    its verification fails (nothing is handed over then).
    """
    start = time.perf_counter()
    validate_user_id(user_id)
    src = source if isinstance(source, StorageMode) else parse_mode(source, "--from")
    dst = target if isinstance(target, StorageMode) else parse_mode(target, "--to")
    flow = FLOWS.get((src, dst))
    if flow is None or (src, dst) not in SUPPORTED:
        raise ConfigError(
            f"migrating from {src.value} to {dst.value} is not supported; allowed: "
            f"{_allowed_pairs()}"
        )
    env = os.environ if env is None else env
    source_config, target_config = mode_config(src, env), mode_config(dst, env)
    endpoint = endpoint or S3Endpoint.from_config(target_config)
    timeouts = Timeouts.from_config(target_config)
    await asyncio.to_thread(check_access, endpoint, timeouts=timeouts)
    report = MigrationReport(
        user_id=user_id,
        source_mode=src.value,
        target_mode=dst.value,
        dry_run=dry_run,
        source=str(source_config.local_storage_path / "users" / user_id / f"{TABLE_NAME}.lance"),
        target=endpoint.uri("users", user_id, f"{TABLE_NAME}.lance"),
    )
    run = Run(
        user_id=user_id,
        source=source_config,
        target=target_config,
        endpoint=endpoint,
        timeouts=timeouts,
        dry_run=dry_run,
        progress=progress,
        report=report,
        stats=TransferStats(),
    )
    try:
        await flow(run)
    finally:
        report.requests = dict(run.stats.requests)
        report.duration_s = time.perf_counter() - start
    return report


def migrate(
    user_id: str,
    source: StorageMode | str,
    target: StorageMode | str,
    *,
    env: Mapping[str, str] | None = None,
    endpoint: S3Endpoint | None = None,
    dry_run: bool = False,
    progress: bool = False,
) -> MigrationReport:
    """:func:`migrate_async` run to completion in a fresh event loop."""
    return asyncio.run(
        migrate_async(
            user_id, source, target, env=env, endpoint=endpoint, dry_run=dry_run, progress=progress
        )
    )
