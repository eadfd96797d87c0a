"""The public storage API: one service, per-user tables, the mode chosen by the config."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lancesync_bench.config import LanceDBSyncConfig, StorageMode, WriteDurability
from lancesync_bench.errors import S3Error
from lancesync_bench.s3.endpoint import S3Endpoint, Timeouts
from lancesync_bench.storage.doctable import MaintenancePolicy
from lancesync_bench.storage.remote_stores import BackupStore, S3PrimaryStore, SyncStore
from lancesync_bench.storage.reports import StoreStatus, SyncReport
from lancesync_bench.storage.schema import TABLE_NAME, check_vector, validate_user_id
from lancesync_bench.storage.stores import LocalStore, StoreContext
from lancesync_bench.storage.tier import TierPolicy
from lancesync_bench.storage.transfer import RemoteTable

__all__ = ["LanceDBStorageService"]

_log = logging.getLogger("lancesync_bench.storage")


def _device_id(config: LanceDBSyncConfig) -> str:
    """The configured device id, or a random one kept beside the data (stable per install)."""
    if config.device_id:
        return config.device_id
    path = config.local_storage_path / "device-id"
    with contextlib.suppress(OSError):
        existing = path.read_text().strip()
        if existing:
            return existing
    device = "dev-" + secrets.token_hex(6)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".device-id.tmp")
    tmp.write_text(device + "\n")
    tmp.replace(path)
    return device


class LanceDBStorageService:
    """Documents per user, kept the way the configuration's storage mode says.

    ``endpoint`` overrides the S3 endpoint the configuration describes (tests and the
    benchmark pass the embedded server's, possibly through a delaying proxy). ``wall_clock``
    replaces the wall clock (nanoseconds) that timestamps start from: the reliability
    suite and the tests run devices whose clocks are skewed or set back. Use it as
    ``async with LanceDBStorageService(config) as service:`` or call :meth:`close`.
    """

    def __init__(
        self,
        config: LanceDBSyncConfig,
        *,
        endpoint: S3Endpoint | None = None,
        policy: MaintenancePolicy | None = None,
        tier: TierPolicy | None = None,
        check_conditional_put: bool = True,
        wall_clock: Callable[[], int] = time.time_ns,
    ) -> None:
        config.validate()
        self.wall_clock = wall_clock
        self.config = config
        self.mode: StorageMode = config.storage_mode
        self.endpoint = endpoint
        if self.mode.uses_s3 and self.endpoint is None:
            self.endpoint = S3Endpoint.from_config(config)
        self.timeouts = Timeouts.from_config(config)
        self.device_id = _device_id(config)
        # Tables other writers share keep their tombstones: a writer that has not seen a
        # delete may still hold an older record of that document.
        self.policy = policy or MaintenancePolicy(
            keep_tombstones=self.mode
            in (StorageMode.LOCAL_PRIMARY_S3_SYNC, StorageMode.S3_PRIMARY_LOCAL_CACHE)
        )
        # Local writes: a write log and an in-memory table in front of Lance (storage.tier).
        fsync = config.write_durability is WriteDurability.FSYNC
        self.tier_policy = tier or TierPolicy(durability="fsync" if fsync else "process")
        self._check_conditional_put = check_conditional_put
        self._client: Any = None
        self._probed = False
        self._stores: dict[str, LocalStore] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._background: asyncio.Task[None] | None = None
        self._closed = False

    async def __aenter__(self) -> LanceDBStorageService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return (
            f"LanceDBStorageService(mode={self.mode.value!r}, users={len(self._stores)}, "
            f"local={str(self.config.local_storage_path)!r})"
        )

    # -- per-user stores -------------------------------------------------------------------

    def _user_dir(self, user_id: str) -> Path:
        return self.config.local_storage_path / "users" / user_id

    def _remote(self, user_id: str) -> RemoteTable:
        assert self.endpoint is not None
        return RemoteTable(
            self._s3_client,
            self.endpoint.bucket,
            self.endpoint.key("users", user_id, f"{TABLE_NAME}.lance"),
            self.endpoint.key("users", user_id, "_lancesync", TABLE_NAME),
        )

    def _s3_client(self) -> Any:
        """The service's one boto3 client, built on first use and shared by all users."""
        if self._client is None:
            assert self.endpoint is not None
            self._client = self.endpoint.client(self.timeouts)
        return self._client

    async def _ensure_multi_writer_safe(self) -> None:
        """Refuse multi-writer modes on an endpoint that ignores ``If-None-Match: *``."""
        if self._probed or not self._check_conditional_put:
            return
        if self.mode not in (StorageMode.S3_PRIMARY_LOCAL_CACHE, StorageMode.LOCAL_PRIMARY_S3_SYNC):
            return
        from lancesync_bench.s3.probe import probe_conditional_put

        assert self.endpoint is not None
        result = await asyncio.to_thread(
            probe_conditional_put, self.endpoint, client=self._s3_client()
        )
        if not result.enforced:
            raise S3Error(
                f"storage mode {self.mode.value} lets several writers commit to one table, which "
                f"is only safe when S3 rejects an existing key under If-None-Match: *; "
                f"{self.endpoint.describe()} does not ({result.detail})"
            )
        self._probed = True

    async def _store(self, user_id: str) -> LocalStore:
        if self._closed:
            raise RuntimeError("the storage service is closed")
        validate_user_id(user_id)
        store = self._stores.get(user_id)
        if store is not None:
            return store
        lock = self._opening.setdefault(user_id, asyncio.Lock())
        async with lock:
            store = self._stores.get(user_id)
            if store is not None:
                return store
            store = await self._open_store(user_id)
            self._stores[user_id] = store
            self._start_background()
            return store

    async def _open_store(self, user_id: str) -> LocalStore:
        ctx = StoreContext(
            user_id=user_id,
            user_dir=self._user_dir(user_id),
            dim=self.config.embedding_dim,
            writer=self.device_id,
            policy=self.policy,
            mode=self.mode.value,
            tier=self.tier_policy,
            wall_clock=self.wall_clock,
        )
        store: LocalStore
        if self.mode is StorageMode.LOCAL_ONLY:
            store = LocalStore(ctx)
        elif self.mode is StorageMode.LOCAL_PRIMARY_S3_BACKUP:
            store = BackupStore(ctx, self._remote(user_id))
        elif self.mode is StorageMode.LOCAL_PRIMARY_S3_SYNC:
            await self._ensure_multi_writer_safe()
            store = SyncStore(ctx, self._remote(user_id))
        else:
            await self._ensure_multi_writer_safe()
            store = S3PrimaryStore(
                ctx,
                self._remote(user_id),
                cache=self.config.local_cache_enabled,
                staleness_ms=self.config.cache_max_staleness_ms,
                connect_s3=lambda: self._connect_s3(user_id),
            )
        await store.open()
        return store

    async def _connect_s3(self, user_id: str) -> Any:
        import lancedb

        assert self.endpoint is not None
        return await lancedb.connect_async(
            self.endpoint.uri("users", user_id),
            storage_options=self.endpoint.storage_options(self.timeouts),
        )

    def _start_background(self) -> None:
        interval = self.config.sync_interval_s
        if interval <= 0 or self._background is not None:
            return
        if self.mode not in (
            StorageMode.LOCAL_PRIMARY_S3_SYNC,
            StorageMode.LOCAL_PRIMARY_S3_BACKUP,
        ):
            return
        self._background = asyncio.get_running_loop().create_task(self._periodic(interval))

    async def _periodic(self, interval: float) -> None:
        """Sync or back up every open user each ``interval`` seconds; every failure is
        counted in that user's ``status()`` and logged, never dropped."""
        while True:
            await asyncio.sleep(interval)
            for store in list(self._stores.values()):
                if not isinstance(store, (SyncStore, BackupStore)):
                    continue
                try:
                    report = await (
                        store.sync() if isinstance(store, SyncStore) else store.backup()
                    )
                except Exception as exc:
                    error: str | None = f"{type(exc).__name__}: {exc}"
                else:
                    error = (
                        None
                        if report.reachable and not report.error
                        else (report.error or "S3 unreachable")
                    )
                store.background.record(error)
                if error is not None:
                    _log.warning("background push for user %s failed: %s", store.ctx.user_id, error)

    # -- the public API --------------------------------------------------------------------

    async def get_user_connection(self, user_id: str) -> Any:
        """The user's LanceDB async connection: S3 for the S3-primary mode, else local.

        The write log is flushed first, so the table holds every write acknowledged so far.
        """
        store = await self._store(user_id)
        await store.flush()
        return await store.connection()

    async def flush(self, user_id: str) -> None:
        """Move the user's acknowledged writes from the write log into a Lance version now.

        Normally a background flush does this in batches; sync, backup, restore, status and
        close flush first by themselves.
        """
        await (await self._store(user_id)).flush()

    async def add_documents(self, user_id: str, documents: Sequence[dict[str, Any]]) -> int:
        """Add documents (``id``, ``text``, ``vector``, optional ``metadata``); same id replaces.

        All documents are checked before anything is written; returns how many were added.
        """
        from lancesync_bench.errors import DocumentError

        if isinstance(documents, (str, bytes, dict)) or not isinstance(documents, Sequence):
            raise DocumentError(
                f"documents must be a list of dicts, got {type(documents).__name__}"
            )
        return await (await self._store(user_id)).add(documents)

    async def import_documents(self, user_id: str, table: Any) -> int:
        """Add many documents given as one Arrow table (id, text, vector, optional metadata).

        One commit for the whole table; the columns are checked before anything is written.
        """
        return await (await self._store(user_id)).import_table(table)

    async def get_document(self, user_id: str, doc_id: str) -> dict[str, Any] | None:
        """The document with ``doc_id``, or None."""
        return await (await self._store(user_id)).get(doc_id)

    async def search(
        self, user_id: str, vector: Sequence[float], k: int = 10
    ) -> list[dict[str, Any]]:
        """The ``k`` documents nearest to ``vector``, nearest first, each with ``distance``."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 10_000:
            raise ValueError(f"k={k!r} is out of range; allowed: an integer from 1 to 10000")
        return await (await self._store(user_id)).search(self._query_vector(vector), k)

    def _query_vector(self, vector: Sequence[float]) -> Any:
        """A query vector of EMBEDDING_DIM finite numbers, or a DocumentError saying why not."""
        return check_vector(vector, "query vector", self.config.embedding_dim)

    async def delete_documents(self, user_id: str, ids: Sequence[str]) -> int:
        """Delete documents by id (kept as tombstones where sync needs them)."""
        return await (await self._store(user_id)).delete(ids)

    async def sync(self, user_id: str) -> SyncReport:
        """Push this device's changes and pull other devices' (sync mode)."""
        return await (await self._store(user_id)).sync()

    async def backup(self, user_id: str) -> SyncReport:
        """Push an incremental backup to S3 (backup mode)."""
        return await (await self._store(user_id)).backup()

    async def restore(self, user_id: str, version: int | None = None) -> SyncReport:
        """Rebuild the local table from S3, latest or ``version`` (backup mode)."""
        return await (await self._store(user_id)).restore(version)

    async def refresh(self, user_id: str) -> SyncReport:
        """Pull newer S3 versions into the cache now (S3-primary mode)."""
        return await (await self._store(user_id)).refresh()

    async def status(self, user_id: str) -> StoreStatus:
        """Mode, versions, pending changes, last push/pull and last error for a user."""
        return await (await self._store(user_id)).status()

    async def prune(self, user_id: str, *, retention_s: float | None = None) -> Any:
        """Remove the user's S3 versions older than RETENTION_S (or ``retention_s``).

        The latest version and every file a kept version references stay; see
        :mod:`lancesync_bench.storage.retention`. Returns a ``PruneReport``.
        """
        from lancesync_bench.storage.retention import prune_remote

        validate_user_id(user_id)
        if not self.mode.uses_s3 or self.endpoint is None:
            from lancesync_bench.errors import ConfigError

            raise ConfigError(f"prune() is not available in storage mode {self.mode.value}")
        keep = self.config.retention_s if retention_s is None else retention_s
        return await prune_remote(self.endpoint, user_id, retention_s=keep, timeouts=self.timeouts)

    async def maintain(self, user_id: str) -> Any:
        """Compact the user's table now (normally automatic, off the write path)."""
        return await (await self._store(user_id)).maintain()

    async def wait_idle(self, user_id: str) -> None:
        """Wait until background maintenance for a user has finished."""
        await (await self._store(user_id)).wait_idle()

    async def close(self) -> None:
        """Stop background work and release every table."""
        if self._closed:
            return
        self._closed = True
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background
        for store in self._stores.values():
            await store.close()
        self._stores.clear()
