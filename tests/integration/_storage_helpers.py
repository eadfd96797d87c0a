"""Shared pieces of the storage integration tests: configs per mode, documents, content hashes.

The helpers read tables with plain LanceDB (never through the service under test) when a
test needs ground truth: the live document of an id is its record with the greatest
``(updated_at, origin)``, and a tombstone winner hides it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lancesync_bench.config import LanceDBSyncConfig
from lancesync_bench.s3.endpoint import S3Endpoint, Timeouts
from lancesync_bench.s3.fast import fast_client
from lancesync_bench.storage.doctable import MaintenancePolicy
from lancesync_bench.storage.service import LanceDBStorageService
from lancesync_bench.storage.tier import TierPolicy

# Every write flushed to its own Lance version, as before the write tier: for tests of
# maintenance and of version-by-version transfers.
FLUSH_EACH_WRITE = TierPolicy(flush_rows=1)

DIM = 8
TABLE = "documents"

MODE_ENV: dict[str, dict[str, str]] = {
    "local_only": {
        "FRONTEND_TYPE": "web",
        "BACKEND_LOCATION": "local",
        "S3_STORAGE_ENABLED": "false",
    },
    "local_primary_s3_backup": {"FRONTEND_TYPE": "desktop", "BACKEND_LOCATION": "local"},
    "local_primary_s3_sync": {"FRONTEND_TYPE": "web", "BACKEND_LOCATION": "local"},
    "s3_primary_local_cache": {"FRONTEND_TYPE": "web", "BACKEND_LOCATION": "cloud"},
}
ALL_MODES = list(MODE_ENV)
S3_MODES = [m for m in ALL_MODES if m != "local_only"]


def config_env(
    mode: str, path: Path, ep: S3Endpoint, *, device: str = "A", **env: str
) -> dict[str, str]:
    """The environment for ``mode`` with a tiny embedding and fail-fast S3 timeouts."""
    return {
        **MODE_ENV[mode],
        "S3_BUCKET": ep.bucket,
        "LOCAL_STORAGE_PATH": str(path),
        "EMBEDDING_DIM": str(DIM),
        "DEVICE_ID": device,
        "CACHE_MAX_STALENESS_MS": "0",
        # Fail fast when the server is stopped: a refused connection answers at once, and
        # no retry hides an outage from the report. The request timeout is generous: the
        # embedded server has stalled a single PUT for 10 s on a loaded 2-core machine.
        "S3_CONNECT_TIMEOUT_S": "0.5",
        "S3_REQUEST_TIMEOUT_S": "30",
        "S3_MAX_RETRIES": "0",
        # No background push unless a test asks for one: they count requests and transfers.
        "SYNC_INTERVAL_S": "0",
        **env,
    }


def make_config(
    mode: str, path: Path, ep: S3Endpoint, *, device: str = "A", **env: str
) -> LanceDBSyncConfig:
    """A validated config for ``mode`` (see :func:`config_env`)."""
    config = LanceDBSyncConfig.from_env(config_env(mode, path, ep, device=device, **env))
    assert config.storage_mode.value == mode
    return config


def open_service(
    mode: str,
    path: Path,
    ep: S3Endpoint,
    *,
    device: str = "A",
    policy: MaintenancePolicy | None = None,
    tier: TierPolicy | None = None,
    wall_clock: Callable[[], int] = time.time_ns,
    **env: str,
) -> LanceDBStorageService:
    """A storage service for ``mode`` rooted at ``path`` and talking to ``ep``; its
    timestamps start from ``wall_clock`` (a skewed clock for a device that runs off)."""
    config = make_config(mode, path, ep, device=device, **env)
    if policy is None:
        # Tests that do not exercise maintenance keep it out of the way; the default
        # keep_tombstones rule (shared tables keep them) is what the service itself chooses.
        policy = MaintenancePolicy(
            max_fragments=10_000,
            max_flushes=10_000,
            keep_tombstones=mode in ("local_primary_s3_sync", "s3_primary_local_cache"),
        )
    return LanceDBStorageService(
        config, endpoint=ep, policy=policy, tier=tier, wall_clock=wall_clock
    )


def make_docs(
    n: int, start: int = 0, *, seed: int = 0, prefix: str = "d", tag: str = ""
) -> list[dict[str, Any]]:
    """``n`` documents ``{prefix}{i}`` with seeded vectors; ``tag`` marks the writer/round."""
    out = []
    for i in range(start, start + n):
        rng = np.random.default_rng([seed, i])
        out.append(
            {
                "id": f"{prefix}{i}",
                "text": f"{prefix}{i} {tag}".strip(),
                "vector": rng.standard_normal(DIM).astype(np.float32).tolist(),
                "metadata": {"i": i, "tag": tag},
            }
        )
    return out


def live_from_records(records: pa.Table) -> dict[str, dict[str, Any]]:
    """id -> live document (winner by ``(updated_at, origin)``, tombstones hide)."""
    best: dict[str, dict[str, Any]] = {}
    for row in records.to_pylist():
        cur = best.get(row["id"])
        if cur is None or (row["updated_at"], row["origin"]) > (cur["updated_at"], cur["origin"]):
            best[row["id"]] = row
    return {
        k: {
            "text": r["text"],
            "vector": [float(x) for x in np.asarray(r["vector"], dtype=np.float32)],
            "metadata": json.loads(r["metadata"]),
            "updated_at": r["updated_at"],
            "origin": r["origin"],
        }
        for k, r in best.items()
        if not r["deleted"]
    }


def content_hash(live: dict[str, dict[str, Any]]) -> str:
    """SHA-256 of the sorted live documents (id, text, vector, metadata)."""
    digest = hashlib.sha256()
    for doc_id in sorted(live):
        doc = live[doc_id]
        item = [doc_id, doc["text"], doc["vector"], doc["metadata"]]
        digest.update(json.dumps(item, sort_keys=True).encode())
    return digest.hexdigest()


async def read_table(db: Any) -> pa.Table:
    """Every record of the ``documents`` table behind a LanceDB async connection."""
    table = await db.open_table(TABLE)
    result: pa.Table = await table.to_arrow()
    return result


async def service_live(service: LanceDBStorageService, user: str) -> dict[str, dict[str, Any]]:
    """The live documents of the user's primary table (local, or S3 in S3-primary mode)."""
    return live_from_records(await read_table(await service.get_user_connection(user)))


async def remote_records(ep: S3Endpoint, user: str) -> pa.Table:
    """The user's S3 table read in full with plain LanceDB (its latest version)."""
    import lancedb

    db = await lancedb.connect_async(ep.uri("users", user), storage_options=ep.storage_options())
    return await read_table(db)


def s3_keys(ep: S3Endpoint, below: str = "") -> list[str]:
    """Every object key under the endpoint's prefix (and ``below`` inside it)."""
    client = ep.client()
    prefix = ep.key(below) if below else ep.prefix
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=ep.bucket, Prefix=prefix + "/"
    ):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def table_key(ep: S3Endpoint, user: str) -> str:
    """The S3 key prefix of a user's Lance table."""
    return ep.key("users", user, f"{TABLE}.lance")


def expected_nearest(live: dict[str, dict[str, Any]], vector: list[float], k: int) -> list[str]:
    """Brute-force L2 top-k ids over the live documents."""
    q = np.asarray(vector, dtype=np.float32)
    ids = sorted(live)
    dists = [float(np.sum((np.asarray(live[i]["vector"], np.float32) - q) ** 2)) for i in ids]
    order = np.argsort(dists, kind="stable")[:k]
    return [ids[int(j)] for j in order]


@dataclass(frozen=True, kw_only=True)
class CountingEndpoint(S3Endpoint):
    """An endpoint whose boto3 clients count the requests they send (LIST, GET, PUT, ...)."""

    counts: Counter[str] = field(default_factory=Counter, compare=False, hash=False)

    def client(self, timeouts: Timeouts | None = None) -> Any:
        """A boto3 client that adds every request it sends to :attr:`counts`."""
        client = super().client(timeouts)

        def count(request: Any, **_: Any) -> None:
            # A listing is an HTTP GET; count it apart, as the S3 bill does.
            kind = "LIST" if "list-type=" in request.url else request.method
            self.counts[kind] += 1

        client.meta.events.register("before-send.s3", count)
        fast = fast_client(client)
        if fast is not None:  # the lean client's requests too

            def count_lean(op: str, phase: str, _params: dict[str, Any]) -> None:
                if phase == "send":
                    self.counts["LIST" if op == "ListObjectsV2" else "PUT"] += 1

            fast.hooks.append(count_lean)
        return client

    @classmethod
    def wrap(cls, ep: S3Endpoint) -> CountingEndpoint:
        """The same endpoint, counting."""
        return cls(
            url=ep.url,
            region=ep.region,
            access_key_id=ep.access_key_id,
            secret_access_key=ep.secret_access_key,
            bucket=ep.bucket,
            prefix=ep.prefix,
            provider=ep.provider,
            provider_version=ep.provider_version,
        )


def die(svc: LanceDBStorageService) -> None:
    """Stop a service as a killed process stops: its write tiers' flushers end, nothing is
    flushed or closed, and its files and S3 objects stay as they are."""
    for store in svc._stores.values():
        if store.tier is not None:
            store.tier._closed = True
            if store.tier._flusher is not None:
                store.tier._flusher.cancel()
    svc._closed = True
