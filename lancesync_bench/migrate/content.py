"""What a migration compares: the live documents of a table, and one hash of them.

A table is a log of records; the live document of an id is its record with the greatest
``(updated_at, origin)`` unless that record is a tombstone (see
:mod:`lancesync_bench.storage.schema`). Two tables hold the same content when their live
documents are equal, whatever their record history, file layout or version numbers.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lancesync_bench.s3.endpoint import S3Endpoint, Timeouts
from lancesync_bench.storage.doctable import winners_mask
from lancesync_bench.storage.schema import TABLE_NAME

__all__ = [
    "Coverage",
    "Snapshot",
    "content_hash",
    "coverage",
    "live_documents",
    "read_local",
    "read_s3",
    "winners",
]

RECORD_COLUMNS = ["id", "text", "vector", "metadata", "updated_at", "origin", "deleted"]


def winners(records: pa.Table) -> pa.Table:
    """The winning record of every id (tombstones included), sorted by id."""
    if records.num_rows == 0:
        return records
    mask = winners_mask(records.select(["id", "updated_at", "origin"]))
    return records.filter(pa.array(mask)).sort_by("id")


def live_documents(records: pa.Table) -> pa.Table:
    """The live documents of a record table: winners that are not tombstones, by id."""
    won = winners(records)
    if won.num_rows == 0:
        return won
    return won.filter(pc.invert(won.column("deleted")))


def _vectors(table: pa.Table) -> np.ndarray:
    """The vector column as an ``(n, dim)`` float32 array."""
    n = table.num_rows
    column = table.column("vector").combine_chunks()
    values: np.ndarray = column.flatten().to_numpy(zero_copy_only=False).astype("<f4", copy=False)
    return values.reshape(n, -1) if n else values.reshape(0, 0)


def _field(digest: Any, text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    digest.update(len(data).to_bytes(8, "little"))
    digest.update(data)


def content_hash(live: pa.Table) -> str:
    """SHA-256 of live documents sorted by id: (id, text, metadata, vector bytes) each.

    Strings enter as length-prefixed UTF-8 (metadata as the JSON text the table stores),
    vectors as little-endian float32 bytes. ``updated_at`` and ``origin`` do not enter:
    they say when and where a document was written, not what it holds.
    """
    ordered = live.sort_by("id") if live.num_rows else live
    digest = hashlib.sha256()
    if ordered.num_rows == 0:
        return digest.hexdigest()
    ids = ordered.column("id").to_pylist()
    texts = ordered.column("text").to_pylist()
    metadata = ordered.column("metadata").to_pylist()
    vectors = _vectors(ordered)
    for i, doc_id in enumerate(ids):
        _field(digest, doc_id)
        _field(digest, texts[i])
        _field(digest, metadata[i])
        digest.update(vectors[i].tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class _Winner:
    key: tuple[int, str]
    deleted: bool
    digest: bytes


def _index(records: pa.Table) -> dict[str, _Winner]:
    won = winners(records)
    if won.num_rows == 0:
        return {}
    vectors = _vectors(won)
    out: dict[str, _Winner] = {}
    rows = zip(
        won.column("id").to_pylist(),
        won.column("text").to_pylist(),
        won.column("metadata").to_pylist(),
        won.column("updated_at").to_pylist(),
        won.column("origin").to_pylist(),
        won.column("deleted").to_pylist(),
        strict=True,
    )
    for i, (doc_id, text, metadata, updated_at, origin, deleted) in enumerate(rows):
        digest = hashlib.sha256()
        _field(digest, text)
        _field(digest, metadata)
        digest.update(vectors[i].tobytes())
        out[doc_id] = _Winner((updated_at, origin), bool(deleted), digest.digest())
    return out


@dataclass(frozen=True)
class Coverage:
    """How a remote table covers a local one's live state.

    ``missing``: ids whose local state (live document or deletion) the remote lacks or
    holds only in an older form. ``newer``: ids the remote shows differently because it
    holds a newer record (another writer's).
    """

    missing: list[str]
    newer: list[str]


def coverage(local: pa.Table, remote: pa.Table) -> Coverage:
    """Compare the winners of two record tables id by id (see :class:`Coverage`)."""
    mine, theirs = _index(local), _index(remote)
    missing: list[str] = []
    newer: list[str] = []
    for doc_id, here in mine.items():
        there = theirs.get(doc_id)
        if there is None:
            if not here.deleted:
                missing.append(doc_id)
        elif there.key > here.key:
            if there.deleted != here.deleted or (not here.deleted and there.digest != here.digest):
                newer.append(doc_id)
        elif there.deleted != here.deleted or (not here.deleted and there.digest != here.digest):
            missing.append(doc_id)
    newer += [i for i, w in theirs.items() if i not in mine and not w.deleted]
    return Coverage(sorted(missing), sorted(newer))


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """One side of a migration as read at one moment: where, version, counts, hash, dim."""

    location: str
    version: int
    records: int
    live: int
    content_sha256: str
    dim: int | None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)


async def _snapshot(db: Any, location: str) -> tuple[Snapshot, pa.Table]:
    table = await db.open_table(TABLE_NAME)
    version = int(await table.version())
    records: pa.Table = await table.query().select(RECORD_COLUMNS).to_arrow()
    vector_type = records.schema.field("vector").type
    dim = vector_type.list_size if pa.types.is_fixed_size_list(vector_type) else None
    live = live_documents(records)
    snap = Snapshot(
        location=location,
        version=version,
        records=records.num_rows,
        live=live.num_rows,
        content_sha256=content_hash(live),
        dim=dim,
    )
    return snap, records


async def read_local(user_dir: str) -> tuple[Snapshot, pa.Table]:
    """Snapshot and records of the table in a local user folder (read only)."""
    import lancedb

    db = await lancedb.connect_async(user_dir)
    return await _snapshot(db, f"{user_dir}/{TABLE_NAME}.lance")


async def read_s3(
    endpoint: S3Endpoint, user_id: str, timeouts: Timeouts
) -> tuple[Snapshot, pa.Table]:
    """Snapshot and records of a user's S3 table at its latest version, read by plain
    LanceDB (what any reader of the S3 table sees; read only)."""
    import lancedb

    db = await lancedb.connect_async(
        endpoint.uri("users", user_id), storage_options=endpoint.storage_options(timeouts)
    )
    return await _snapshot(db, endpoint.uri("users", user_id, f"{TABLE_NAME}.lance"))
