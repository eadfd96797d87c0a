"""Pieces every fault section shares: configs per mode, documents, ground truth, snapshots.

Ground truth is always read with plain LanceDB or a plain S3 listing, never through the
service under test: the live document of an id is its record with the greatest
``(updated_at, origin)``, and a tombstone winner hides it (the storage layer's own rule).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lancesync_bench.config import LanceDBSyncConfig
from lancesync_bench.s3.endpoint import S3Endpoint, Timeouts
from lancesync_bench.stats import summarize
from lancesync_bench.storage.doctable import MaintenancePolicy
from lancesync_bench.storage.service import LanceDBStorageService

__all__ = [
    "BACKUP",
    "DIM",
    "FAST_FAIL_ENV",
    "LOCAL",
    "MODE_ENV",
    "PRIMARY",
    "S3_MODES",
    "SYNC",
    "Acked",
    "content_hash",
    "document",
    "failure_bound_s",
    "folder_snapshot",
    "latency_figures",
    "live_from_records",
    "make_config",
    "missing_acked",
    "mode_env",
    "open_service",
    "remote_live",
    "s3_listing",
    "service_live",
    "tail_ms",
    "torn_uploads",
]

# A small embedding keeps every write cheap; the faults under test do not depend on it.
DIM = 16
TABLE = "documents"
LOCAL = "local_only"
BACKUP = "local_primary_s3_backup"
SYNC = "local_primary_s3_sync"
PRIMARY = "s3_primary_local_cache"
S3_MODES = (BACKUP, SYNC, PRIMARY)
MODE_ENV: Mapping[str, Mapping[str, str]] = {
    LOCAL: {"FRONTEND_TYPE": "web", "BACKEND_LOCATION": "local", "S3_STORAGE_ENABLED": "false"},
    BACKUP: {"FRONTEND_TYPE": "desktop", "BACKEND_LOCATION": "local"},
    SYNC: {"FRONTEND_TYPE": "web", "BACKEND_LOCATION": "local"},
    PRIMARY: {"FRONTEND_TYPE": "web", "BACKEND_LOCATION": "cloud"},
}
# Short S3 timeouts with one retry: an outage shows up in about a second instead of the
# Lance client's default three minutes, which is what a local-first app should configure.
FAST_FAIL_ENV: Mapping[str, str] = {
    "S3_CONNECT_TIMEOUT_S": "1",
    "S3_REQUEST_TIMEOUT_S": "5",
    "S3_MAX_RETRIES": "1",
}


def mode_env(
    mode: str, path: Path, ep: S3Endpoint, *, device: str, **overrides: str
) -> dict[str, str]:
    """The environment of a deployment in ``mode`` rooted at ``path``, talking to ``ep``.

    The S3 keys are not in it: the service is handed ``ep`` itself, so the secret never
    travels through an environment mapping that might be printed.
    """
    env = {
        **MODE_ENV[mode],
        "S3_BUCKET": ep.bucket,
        "LOCAL_STORAGE_PATH": str(path),
        "EMBEDDING_DIM": str(DIM),
        "DEVICE_ID": device,
        "SYNC_INTERVAL_S": "0",  # sections push when they mean to; one tests the period
        **FAST_FAIL_ENV,
    }
    env.update(overrides)
    return env


def make_config(
    mode: str, path: Path, ep: S3Endpoint, *, device: str, **overrides: str
) -> LanceDBSyncConfig:
    """A validated configuration for ``mode`` (see :func:`mode_env`)."""
    return LanceDBSyncConfig.from_env(mode_env(mode, path, ep, device=device, **overrides))


def open_service(
    mode: str,
    path: Path,
    ep: S3Endpoint,
    *,
    device: str,
    policy: MaintenancePolicy | None = None,
    **overrides: str,
) -> LanceDBStorageService:
    """A storage service for ``mode``; maintenance follows the service's own defaults."""
    config = make_config(mode, path, ep, device=device, **overrides)
    return LanceDBStorageService(config, endpoint=ep, policy=policy)


def document(doc_id: str, seq: int, *, seed: int = 0, writer: str = "") -> dict[str, Any]:
    """A document whose ``metadata.seq`` orders the writes of one id (higher = later)."""
    rng = random.Random(f"{seed}:{doc_id}:{seq}")
    return {
        "id": doc_id,
        "text": f"{doc_id} seq {seq} {writer}".strip(),
        "vector": [rng.uniform(-1.0, 1.0) for _ in range(DIM)],
        "metadata": {"seq": seq, "writer": writer},
    }


def live_from_records(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """id -> live record (winner by ``(updated_at, origin)``; tombstone winners hide)."""
    best: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        cur = best.get(row["id"])
        if cur is None or (row["updated_at"], row["origin"]) > (cur["updated_at"], cur["origin"]):
            best[row["id"]] = row
    out = {}
    for doc_id, row in best.items():
        if row["deleted"]:
            continue
        meta = row["metadata"]
        out[doc_id] = {
            "text": row["text"],
            "vector": [round(float(x), 6) for x in row["vector"]],
            "metadata": json.loads(meta) if isinstance(meta, str) and meta else {},
            "updated_at": int(row["updated_at"]),
            "origin": row["origin"],
        }
    return out


def content_hash(live: Mapping[str, Mapping[str, Any]]) -> str:
    """SHA-256 over the sorted live documents (id, text, vector, metadata)."""
    digest = hashlib.sha256()
    for doc_id in sorted(live):
        doc = live[doc_id]
        item = [doc_id, doc["text"], doc["vector"], doc["metadata"]]
        digest.update(json.dumps(item, sort_keys=True).encode())
    return digest.hexdigest()


async def _read_rows(db: Any) -> list[dict[str, Any]]:
    table = await db.open_table(TABLE)
    rows: list[dict[str, Any]] = (await table.to_arrow()).to_pylist()
    return rows


async def remote_live(ep: S3Endpoint, user: str) -> dict[str, dict[str, Any]]:
    """What S3 holds of the user, read directly: the S3 table at its latest version (plain
    LanceDB) and the records of the S3-primary mode's write log objects not yet folded into
    it (an acknowledged S3-primary write is on S3 in one or the other)."""
    import asyncio

    import lancedb

    # The log first: a record whose object is gone by then was committed to the table
    # before the object was deleted, so the table read after it holds that record.
    logged = await asyncio.to_thread(_log_rows, ep, user)
    db = await lancedb.connect_async(ep.uri("users", user), storage_options=ep.storage_options())
    return live_from_records([*await _read_rows(db), *logged])


def _log_rows(ep: S3Endpoint, user: str) -> list[dict[str, Any]]:
    """The records in the user's write log objects on S3 (none outside S3-primary mode)."""
    from lancesync_bench.storage.log import decode_records, parse_frames

    client = ep.client()
    prefix = ep.key("users", user, "_lancesync", f"{TABLE}.wal") + "/"
    rows: list[dict[str, Any]] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=ep.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            try:
                body = client.get_object(Bucket=ep.bucket, Key=item["Key"])["Body"].read()
            except client.exceptions.NoSuchKey:
                continue  # folded into the table and deleted since the listing
            for _, payload in parse_frames(body, item["Key"]):
                rows += decode_records(payload).to_pylist()
    return rows


def torn_uploads(ep: S3Endpoint, user: str) -> list[str]:
    """Keys under the user's folder holding an empty object whose upload recorded other
    bytes (its ``sha256`` metadata): what SeaweedFS keeps of a PUT cut short by a killed
    client, where S3 itself keeps nothing."""
    client = ep.client()
    prefix = ep.key("users", user) + "/"
    empty = hashlib.sha256(b"").hexdigest()
    torn: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=ep.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Size"] != 0:
                continue
            meta = client.head_object(Bucket=ep.bucket, Key=item["Key"]).get("Metadata", {})
            if meta.get("sha256") not in (None, empty):
                torn.append(item["Key"][len(prefix) :])
    return torn


async def service_live(service: LanceDBStorageService, user: str) -> dict[str, dict[str, Any]]:
    """The live documents of the user's primary table (read with plain LanceDB)."""
    return live_from_records(await _read_rows(await service.get_user_connection(user)))


@dataclass
class Acked:
    """The highest acknowledged ``seq`` per document id (writes only grow ``seq``)."""

    seqs: dict[str, int]

    @classmethod
    def empty(cls) -> Acked:
        """No acknowledged writes yet."""
        return cls({})

    def add(self, doc_id: str, seq: int) -> None:
        """Record an acknowledged write of ``doc_id`` at ``seq``."""
        self.seqs[doc_id] = max(seq, self.seqs.get(doc_id, -1))

    @property
    def writes(self) -> int:
        """How many ids hold an acknowledged write."""
        return len(self.seqs)


def missing_acked(live: Mapping[str, Mapping[str, Any]], acked: Acked) -> list[str]:
    """Ids whose acknowledged write (or a later one) is not the live document."""
    lost = []
    for doc_id, seq in sorted(acked.seqs.items()):
        doc = live.get(doc_id)
        if doc is None or int(doc["metadata"].get("seq", -1)) < seq:
            lost.append(doc_id)
    return lost


def folder_snapshot(path: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime_ns) of every file below ``path`` ({} when absent)."""
    out: dict[str, tuple[int, int]] = {}
    if not path.exists():
        return out
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = Path(root) / name
            try:
                st = full.stat()
            except FileNotFoundError:
                continue
            out[str(full.relative_to(path))] = (st.st_size, st.st_mtime_ns)
    return out


@functools.lru_cache(maxsize=16)
def _client(ep: S3Endpoint) -> Any:
    # Building a boto3 client costs tens of milliseconds; the catalogue lists S3 hundreds
    # of times. boto3 clients are safe to share between calls.
    return ep.client(Timeouts(connect_s=2, request_s=15, max_retries=2))


def s3_listing(ep: S3Endpoint, *parts: str) -> dict[str, tuple[int, str]]:
    """Key -> (size, ETag) of every object under the endpoint's prefix (and ``parts``)."""
    client = _client(ep)
    prefix = ep.key(*parts)
    out: dict[str, tuple[int, str]] = {}
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=ep.bucket, Prefix=prefix + "/" if prefix else ""):
        for item in page.get("Contents", []):
            out[item["Key"]] = (int(item["Size"]), str(item.get("ETag", "")))
    return out


def latency_figures(samples_ns: Iterable[int]) -> dict[str, Any]:
    """n, p50, p95, p99 and max in ms (a percentile n cannot support is None)."""
    summary = summarize(list(samples_ns))
    return {
        "n": summary.n,
        "p50_ms": _round(summary.p50_ms),
        "p95_ms": _round(summary.p95_ms),
        "p99_ms": _round(summary.p99_ms),
        "max_ms": _round(summary.max_ms),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def tail_ms(figures: Mapping[str, Any]) -> float | None:
    """p99 when n supports it, else the maximum (never smaller than p99)."""
    value = figures.get("p99_ms")
    if value is None:
        value = figures.get("max_ms")
    return None if value is None else float(value)


def failure_bound_s(config: LanceDBSyncConfig, *, slack_s: float = 3.0) -> float:
    """The longest one failing S3 call may take under ``config``'s timeouts and retries.

    boto3 makes ``retries + 1`` attempts, each bounded by connect + request timeout, and
    before retry ``i`` (from 0) sleeps a random share of ``min(20, 2**i)`` seconds
    (botocore's standard retry mode). The slack
    covers Python and a loaded machine; anything slower means a call waited on S3 longer
    than the configuration allows.
    """
    attempts = config.s3_max_retries + 1
    per_attempt = config.s3_connect_timeout_s + config.s3_request_timeout_s
    backoff = sum(min(20.0, 2.0**i) for i in range(config.s3_max_retries))
    return attempts * per_attempt + backoff + slack_s
