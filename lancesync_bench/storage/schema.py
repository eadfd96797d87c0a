"""The per-user document table: its Arrow schema, document checks, and user-id rules.

The table is an append-only log of *records*. A write appends a record; a delete appends
a tombstone record. The live document for an id is the record with the greatest
``(updated_at, origin)``: last writer wins on the update timestamp, ties broken by the
origin (device) id so that every replica picks the same winner. Appending is the fastest
write LanceDB has (about 2 ms locally, where ``merge_insert`` takes 20-40 ms), and a log of
records merges between devices by plain union, which is what makes sync converge.
Maintenance later removes records that lost (see :mod:`lancesync_bench.storage.doctable`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from lancesync_bench.errors import DocumentError, UserIdError

__all__ = [
    "MAX_TEXT_BYTES",
    "TABLE_NAME",
    "check_vector",
    "records_table",
    "schema",
    "validate_user_id",
]

TABLE_NAME = "documents"
# A document is a chunk of text with its embedding; 1 MiB of text is far beyond any chunk
# an embedding model takes, and keeps one bad write from bloating every later read.
MAX_TEXT_BYTES = 1 << 20
MAX_METADATA_BYTES = 64 << 10
MAX_ID_CHARS = 256
_USER_ID_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


def validate_user_id(user_id: object) -> str:
    """Return ``user_id`` if it is 1-128 of ``A-Za-z0-9._-`` not starting with a dot.

    Anything else (``../x``, ``a/b``, empty, NUL, look-alike Unicode) raises
    :class:`UserIdError` before any I/O, so a user id can never leave its folder or prefix.
    """
    if not isinstance(user_id, str):
        raise UserIdError(f"user id must be a string, got {type(user_id).__name__}")
    if not _USER_ID_RE.fullmatch(user_id):
        shown = user_id if len(user_id) <= 40 else user_id[:40] + "..."
        raise UserIdError(
            f"user id {shown!r} is not allowed; use 1-128 characters of A-Za-z0-9._- "
            "not starting with '.'"
        )
    return user_id


def schema(dim: int) -> pa.Schema:
    """The record schema for embeddings of ``dim`` dimensions."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
            pa.field("metadata", pa.string(), nullable=False),
            pa.field("updated_at", pa.int64(), nullable=False),
            pa.field("origin", pa.string(), nullable=False),
            pa.field("deleted", pa.bool_(), nullable=False),
        ]
    )


def check_vector(vector: object, label: str, dim: int) -> np.ndarray:
    """``vector`` as ``dim`` finite float32 values, or a DocumentError naming ``label``
    (``"query vector"``, ``"document 3 (id 'a'): vector"``) and what is wrong."""
    try:
        arr = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError):
        raise DocumentError(f"{label} must be {dim} numbers (EMBEDDING_DIM)") from None
    if arr.shape != (dim,):
        raise DocumentError(f"{label} has shape {arr.shape}, expected ({dim},) (EMBEDDING_DIM)")
    if not np.isfinite(arr).all():
        raise DocumentError(f"{label} holds NaN or infinity")
    return arr


def _check_vectors(
    docs: Sequence[Mapping[str, Any]], checked: Sequence[tuple[str, ...]], dim: int
) -> np.ndarray:
    """Every document's vector as one float32 matrix (one conversion for the whole batch).

    When the batch does not convert cleanly, each vector is checked alone so that the error
    names the first bad document.
    """
    try:
        matrix = np.asarray([d.get("vector") for d in docs], dtype=np.float32)
        ok = matrix.shape == (len(docs), dim) and bool(np.isfinite(matrix).all())
    except (TypeError, ValueError):
        ok = False
    if ok:
        return matrix
    for i, (doc, c) in enumerate(zip(docs, checked, strict=True)):
        check_vector(doc.get("vector"), f"document {i} (id {c[0]!r}): vector", dim)
    raise DocumentError(f"vectors must be {dim} numbers each (EMBEDDING_DIM)")  # not reached


# What json.dumps(metadata, allow_nan=False, sort_keys=True) does, built once: dumps with
# options builds an encoder per call: 0.07 ms of a 100-document batch's ~1.3 ms of checks.
_METADATA_JSON = json.JSONEncoder(allow_nan=False, sort_keys=True)


def _check_document(doc: object, index: int, dim: int) -> tuple[str, str, str]:
    where = f"document {index}"
    if not isinstance(doc, Mapping):
        raise DocumentError(
            f"{where}: expected a dict with id, text and vector, got {type(doc).__name__}"
        )
    unknown = set(doc) - {"id", "text", "vector", "metadata"}
    if unknown:
        raise DocumentError(
            f"{where}: unknown field(s) {sorted(map(str, unknown))}; "
            "allowed: id, text, vector, metadata"
        )
    doc_id = doc.get("id")
    if not isinstance(doc_id, str) or not doc_id or len(doc_id) > MAX_ID_CHARS or "\x00" in doc_id:
        raise DocumentError(
            f"{where}: id must be a non-empty string of at most {MAX_ID_CHARS} characters "
            f"without NUL, got {doc_id!r}"[:300]
        )
    text = doc.get("text")
    if not isinstance(text, str):
        raise DocumentError(
            f"{where} (id {doc_id!r}): text must be a string, got {type(text).__name__}"
        )
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise DocumentError(f"{where} (id {doc_id!r}): text is larger than {MAX_TEXT_BYTES} bytes")
    metadata = doc.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise DocumentError(
            f"{where} (id {doc_id!r}): metadata must be a dict, got {type(metadata).__name__}"
        )
    try:
        meta_json = _METADATA_JSON.encode(metadata) if metadata else "{}"
    except (TypeError, ValueError) as exc:
        raise DocumentError(
            f"{where} (id {doc_id!r}): metadata is not JSON-serialisable: {exc}"
        ) from None
    if len(meta_json) > MAX_METADATA_BYTES:
        raise DocumentError(
            f"{where} (id {doc_id!r}): metadata is larger than {MAX_METADATA_BYTES} bytes"
        )
    return doc_id, text, meta_json


def records_table(
    documents: Sequence[Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    *,
    dim: int,
    origin: str,
    timestamps: Sequence[int],
) -> pa.Table:
    """Check every document and build the record batch to append (all or nothing).

    ``timestamps`` gives each record's ``updated_at``; a later duplicate id in the same
    batch wins because its timestamp is larger.
    """
    docs = list(documents)
    if not docs:
        raise DocumentError("no documents given; pass at least one document")
    checked = [_check_document(d, i, dim) for i, d in enumerate(docs)]
    vectors = _check_vectors(docs, checked, dim)
    n = len(checked)
    return pa.table(
        [
            pa.array([c[0] for c in checked], pa.string()),
            pa.array([c[1] for c in checked], pa.string()),
            pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), dim),
            pa.array([c[2] for c in checked], pa.string()),
            pa.array(list(timestamps)[:n], pa.int64()),
            pa.array([origin] * n, pa.string()),
            pa.array([False] * n, pa.bool_()),
        ],
        schema=schema(dim),
    )


def tombstones_table(
    ids: Sequence[str], *, dim: int, origin: str, timestamps: Sequence[int]
) -> pa.Table:
    """Tombstone records for ``ids``: they win over older records and hide the document."""
    for i, doc_id in enumerate(ids):
        if not isinstance(doc_id, str) or not doc_id or "\x00" in doc_id:
            raise DocumentError(f"id {i}: must be a non-empty string without NUL, got {doc_id!r}")
    n = len(ids)
    return pa.table(
        [
            pa.array(list(ids), pa.string()),
            pa.array([""] * n, pa.string()),
            pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(n * dim, np.float32)), dim),
            pa.array(["{}"] * n, pa.string()),
            pa.array(list(timestamps)[:n], pa.int64()),
            pa.array([origin] * n, pa.string()),
            pa.array([True] * n, pa.bool_()),
        ],
        schema=schema(dim),
    )


def record_to_document(row: Mapping[str, Any]) -> dict[str, Any]:
    """The public document view of a record row (plus ``_distance`` when present)."""
    doc: dict[str, Any] = {
        "id": row["id"],
        "text": row["text"],
        "vector": list(row["vector"]),
        "metadata": json.loads(row["metadata"]) if row["metadata"] else {},
        "updated_at": row["updated_at"],
    }
    if "_distance" in row and row["_distance"] is not None:
        distance = float(row["_distance"])
        doc["distance"] = distance if math.isfinite(distance) else None
    return doc


def sql_string(value: str) -> str:
    """A SQL string literal for a LanceDB filter (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"
