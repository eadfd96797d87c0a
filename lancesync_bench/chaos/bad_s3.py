"""Bad-input cases for S3 access: a wrong secret, an unknown key id, a missing bucket.

SeaweedFS (like some other servers) creates a missing bucket on the first PUT, so a missing
bucket is only caught by an explicit check before anything is written. Each case records
where it was caught: at open (the multi-writer modes probe S3 with ``check_access`` before
their first write) or, in the local-first backup mode, at the first backup.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from functools import partial
from pathlib import Path

from lancesync_bench.chaos.catalogue import Catalogue, sync_call
from lancesync_bench.chaos.common import (
    BACKUP,
    PRIMARY,
    SYNC,
    document,
    folder_snapshot,
    open_service,
    s3_listing,
)
from lancesync_bench.chaos.context import SuiteContext
from lancesync_bench.config import Secret
from lancesync_bench.errors import S3Error
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.s3.probe import check_access

__all__ = ["s3_cases"]


def _shown(ep: S3Endpoint) -> str:
    return f"bucket={ep.bucket!r}, access_key_id={ep.access_key_id!r}, secret=***"


async def _first_write(mode: str, root: Path, ep: S3Endpoint) -> None:
    async with open_service(mode, root, ep, device="s") as svc:
        await svc.add_documents("s3user", [document("x", 1)])


async def s3_cases(ctx: SuiteContext, catalogue: Catalogue) -> None:
    """Wrong keys and a missing bucket against check_access and each S3 mode."""
    good = ctx.endpoint_below("badinput-s3")
    wrong_secret = replace(good, secret_access_key=Secret("wrong-" + uuid.uuid4().hex))
    unknown_key = replace(good, access_key_id="AKUNKNOWN" + uuid.uuid4().hex[:8].upper())
    missing = replace(good, bucket="lsb-missing-" + uuid.uuid4().hex[:10])
    ctx.secrets.append(wrong_secret.secret_access_key.reveal())  # must not leak either
    client = ctx.endpoint.client()

    def watch(root: Path | None = None) -> object:
        buckets = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        return s3_listing(good), missing.bucket in buckets, folder_snapshot(root) if root else None

    for label, ep, cause in (
        ("wrong secret key", wrong_secret, "SignatureDoesNotMatch"),
        ("unknown access key id", unknown_key, "InvalidAccessKeyId"),
        ("missing bucket", missing, "NoSuchBucket"),
    ):
        category = "S3 bucket" if ep is missing else "S3 access keys"
        tag = "-".join(label.split())
        record = await catalogue.case(
            category=category,
            name=f"{label}: check_access",
            shown=_shown(ep),
            action=sync_call(partial(check_access, ep)),
            expect=S3Error,
            watch=watch,
        )
        record["names_cause"] = cause in str(record["message"])
        for mode in (SYNC, PRIMARY):
            root = ctx.workdir / "badinput" / f"s3-{tag}-{mode}"
            record = await catalogue.case(
                category=category,
                name=f"{label}: {mode}, first call",
                shown=_shown(ep),
                action=partial(_first_write, mode, root, ep),
                expect=S3Error,
                watch=partial(watch, root),
            )
            record["caught_at"] = "open, before any write" if record["passed"] else "not caught"
            record["names_cause"] = cause in str(record["message"])
        # Backup mode is local-first: the write is accepted offline; the first backup fails.
        root = ctx.folder("badinput", f"s3-{tag}-backup")
        async with open_service(BACKUP, root, ep, device="b") as svc:
            await svc.add_documents("s3user", [document("b", 1)])
            record = await catalogue.case(
                category=category,
                name=f"{label}: {BACKUP}, first backup",
                shown=_shown(ep),
                action=partial(svc.backup, "s3user"),
                expect=S3Error,
                watch=watch,
                note="local-first: the write before it is accepted; opening does not contact S3",
            )
            record["caught_at"] = "first backup (opening does not contact S3)"
            record["names_cause"] = cause in str(record["message"])
