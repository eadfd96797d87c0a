"""Bad-input cases for documents, in a local-primary and in the S3-primary mode.

Each bad batch goes to a user whose table already holds a document; the local folder and
the S3 listing must be exactly as before (a batch is checked in full before anything is
written, so a valid document beside a bad one is not written either). Query-side inputs
write nothing and are not judged; what they do is recorded as observations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from lancesync_bench.chaos.catalogue import Catalogue, shown
from lancesync_bench.chaos.common import (
    BACKUP,
    DIM,
    PRIMARY,
    document,
    folder_snapshot,
    open_service,
    s3_listing,
)
from lancesync_bench.chaos.context import SuiteContext
from lancesync_bench.errors import DocumentError
from lancesync_bench.storage.service import LanceDBStorageService

__all__ = ["document_cases"]

USER = "docs"
_DROP = object()  # marks a field to remove from the document


def _doc(**changes: Any) -> dict[str, Any]:
    doc = document("bad", 1)
    for key, value in changes.items():
        if value is _DROP:
            doc.pop(key)
        else:
            doc[key] = value
    return doc


CASES: list[tuple[str, Callable[[], list[Any]]]] = [
    ("vector too short", lambda: [_doc(vector=[0.1] * (DIM - 1))]),
    ("vector too long", lambda: [_doc(vector=[0.1] * (DIM + 1))]),
    ("vector holds NaN", lambda: [_doc(vector=[math.nan] + [0.1] * (DIM - 1))]),
    ("vector holds infinity", lambda: [_doc(vector=[math.inf] * DIM)]),
    ("vector of strings", lambda: [_doc(vector=["x"] * DIM)]),
    ("vector missing", lambda: [_doc(vector=_DROP)]),
    ("id missing", lambda: [_doc(id=_DROP)]),
    ("id not a string", lambda: [_doc(id=42)]),
    ("id empty", lambda: [_doc(id="")]),
    ("id with NUL", lambda: [_doc(id="a\x00b")]),
    ("text over 1 MiB", lambda: [_doc(text="x" * ((1 << 20) + 1))]),
    ("text not a string", lambda: [_doc(text=b"bytes")]),
    ("metadata not serialisable (datetime)", lambda: [_doc(metadata={"at": datetime.now(UTC)})]),
    ("metadata not serialisable (set)", lambda: [_doc(metadata={"tags": {1, 2}})]),
    ("metadata holds NaN", lambda: [_doc(metadata={"score": math.nan})]),
    ("metadata not a dict", lambda: [_doc(metadata=["a", "b"])]),
    ("metadata over 64 KiB", lambda: [_doc(metadata={"blob": "x" * (65 << 10)})]),
    ("unknown field", lambda: [_doc(extra="field")]),
    ("not a dict", lambda: ["just a string"]),
    ("empty batch", lambda: []),
    ("valid document then a bad one", lambda: [document("good", 1), _doc(vector=[0.0])]),
]


async def _observe(svc: LanceDBStorageService) -> list[dict[str, str]]:
    """What bad query vectors do (reads write nothing, so they are recorded, not judged)."""
    seen = []
    for name, vector in (
        ("search, vector too short", [0.0] * (DIM - 1)),
        ("search, NaN vector", [math.nan] * DIM),
    ):
        try:
            result = await svc.search(USER, vector, k=3)
            outcome = f"no error; {len(result)} result(s)"
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {str(exc)[:200]}"
        seen.append({"case": f"{name} ({svc.mode.value})", "outcome": outcome})
    return seen


async def document_cases(ctx: SuiteContext, catalogue: Catalogue) -> list[dict[str, str]]:
    """Every bad batch in both modes; returns the query-side observations."""
    observations: list[dict[str, str]] = []
    for mode in (BACKUP, PRIMARY):
        ep = ctx.endpoint_below(f"badinput-docs-{mode}")
        root = ctx.folder("badinput", f"docs-{mode}")
        async with open_service(mode, root, ep, device="d") as svc:
            await svc.add_documents(USER, [document("seed", 1)])

            def watch(root: Any = root, ep: Any = ep) -> object:
                return folder_snapshot(root), s3_listing(ep)

            for name, make in CASES:
                docs = make()
                await catalogue.case(
                    category="document",
                    name=f"{name} ({mode})",
                    shown=shown(docs),
                    action=partial(svc.add_documents, USER, docs),
                    expect=DocumentError,
                    watch=watch,
                )
            bad_ids: Any = [42]
            await catalogue.case(
                category="document",
                name=f"delete with a non-string id ({mode})",
                shown="[42]",
                action=partial(svc.delete_documents, USER, bad_ids),
                expect=DocumentError,
                watch=watch,
            )
            observations += await _observe(svc)
    return observations
