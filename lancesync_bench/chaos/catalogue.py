"""The bad-input catalogue's bookkeeping: run one input, record its error and the proof.

A case passes when the call raised the expected error type with a clear message (one
line, non-empty, not overlong) and the watched state (local folders, S3 listings, the
bucket list) is exactly as it was before the call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Catalogue", "shown", "sync_call"]

# A clear error fits on a line a person reads: the value, what was wrong, what is allowed.
MAX_MESSAGE = 500
Watch = Callable[[], object]


def shown(value: object) -> str:
    """A short, printable form of a bad input (long values are cut, their size kept)."""
    text = repr(value)
    if len(text) > 80:
        size = len(value) if isinstance(value, str | bytes | list | dict) else len(text)
        return f"{text[:60]}... ({size} long)"
    return text


def sync_call(fn: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    """An awaitable action around a plain call."""

    async def run() -> object:
        return fn()

    return run


def clear_error(exc: BaseException | None, expect: type[BaseException]) -> bool:
    """Whether ``exc`` is of the expected type with a one-line, readable message."""
    if exc is None or not isinstance(exc, expect):
        return False
    message = str(exc)
    return bool(message.strip()) and "\n" not in message and len(message) <= MAX_MESSAGE


class Catalogue:
    """The cases of one run, in the order they were tried."""

    def __init__(self) -> None:
        self.cases: list[dict[str, Any]] = []

    async def case(
        self,
        *,
        category: str,
        name: str,
        shown: str,
        action: Callable[[], Awaitable[object]],
        expect: type[BaseException],
        watch: Watch,
        note: str = "",
    ) -> dict[str, Any]:
        """Run ``action``; record what it raised and whether ``watch()`` stayed the same."""
        before = watch()
        error: BaseException | None = None
        try:
            await action()
        except Exception as exc:
            error = exc
        unchanged = watch() == before
        record: dict[str, Any] = {
            "category": category,
            "case": name,
            "input": shown,
            "expected": expect.__name__,
            "error_type": None if error is None else type(error).__name__,
            "message": None if error is None else str(error)[:MAX_MESSAGE],
            "nothing_written": unchanged,
            "passed": clear_error(error, expect) and unchanged,
        }
        if note:
            record["note"] = note
        self.cases.append(record)
        return record

    def by_category(self) -> dict[str, list[dict[str, Any]]]:
        """Cases grouped by category, categories in first-seen order."""
        out: dict[str, list[dict[str, Any]]] = {}
        for record in self.cases:
            out.setdefault(record["category"], []).append(record)
        return out
