"""A writer that the kill -9 test starts as a subprocess and kills at a random moment.

It reads its settings as one JSON object on stdin (the S3 secret never appears in the
process list), then loops forever: write a few documents (replacing some, deleting one now
and then), sync or back up, and print ``ack <round> <ids written>`` once the transfer was
acknowledged.
Maintenance runs often, so a kill also lands inside compaction and cleanup.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lancesync_bench.config import LanceDBSyncConfig, Secret
from lancesync_bench.errors import SyncConflict
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.storage.doctable import MaintenancePolicy
from lancesync_bench.storage.service import LanceDBStorageService


async def run(settings: dict[str, Any]) -> None:
    """Write and transfer until killed."""
    ep = S3Endpoint(
        url=settings["url"],
        region=settings["region"],
        access_key_id=settings["access_key_id"],
        secret_access_key=Secret(settings["secret_access_key"]),
        bucket=settings["bucket"],
        prefix=settings["prefix"],
    )
    config = LanceDBSyncConfig.from_env(settings["env"])
    sync = config.storage_mode.value == "local_primary_s3_sync"
    policy = MaintenancePolicy(max_fragments=6, keep_tombstones=sync)
    user = settings["user"]
    rng = np.random.default_rng(settings["seed"])
    async with LanceDBStorageService(config, endpoint=ep, policy=policy) as svc:
        rnd = settings["first_round"]
        while True:
            ids = [f"k{int(i)}" for i in rng.integers(0, 60, size=4)]
            docs = [
                {
                    "id": doc_id,
                    "text": f"{doc_id} round {rnd}",
                    "vector": rng.standard_normal(config.embedding_dim).tolist(),
                    "metadata": {"round": rnd},
                }
                for doc_id in dict.fromkeys(ids)
            ]
            await svc.add_documents(user, docs)
            if rnd % 3 == 2:
                await svc.delete_documents(user, [f"k{int(rng.integers(0, 60))}"])
            try:
                report = await (svc.sync(user) if sync else svc.backup(user))
            except SyncConflict as exc:
                _explain(exc, ep, config, user)
                raise
            if report.reachable:  # a slow server under load is not what this test is about
                print(f"ack {rnd} {' '.join(d['id'] for d in docs)}", flush=True)
            else:
                print(f"unreachable: {report.error}", file=sys.stderr, flush=True)
            rnd += 1


def _explain(exc: SyncConflict, ep: S3Endpoint, config: LanceDBSyncConfig, user: str) -> None:
    """Print both sides of a file the conflict names (local and S3 size, time, SHA-256)."""
    import hashlib
    import re

    match = re.search(r"different (\S+) than", str(exc))
    if not match:
        return
    rel = match.group(1)
    local = config.local_storage_path / "users" / user / "documents.lance" / rel
    head = ep.client().head_object(
        Bucket=ep.bucket, Key=ep.key("users", user, "documents.lance", rel)
    )
    print(
        f"local {rel}: {local.stat().st_size} bytes, mtime {local.stat().st_mtime_ns}, "
        f"sha256 {hashlib.sha256(local.read_bytes()).hexdigest()}; S3: {head['ContentLength']} "
        f"bytes, {head['LastModified']}, metadata {head.get('Metadata')}",
        file=sys.stderr,
        flush=True,
    )


def main() -> None:
    """Entry point: settings from stdin."""
    settings = json.loads(sys.stdin.read())
    Path(settings["env"]["LOCAL_STORAGE_PATH"]).mkdir(parents=True, exist_ok=True)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
