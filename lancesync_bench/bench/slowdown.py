"""A test-only switch that makes one operation genuinely slower, inside its timed window.

The regression gate's own tests need a real slowdown to catch: a code path that takes
longer, measured by the same recorder, through the same runner and results. Setting

    LANCESYNC_BENCH_TEST_SLOWDOWN="operation=point_read,factor=1.5"

makes every timed ``point_read`` wait, after the operation returns and before its timer
stops, ``factor - 1`` times the operation's own duration. The wait blocks the event loop
(``time.sleep``), as a slower synchronous code path would: an ``asyncio.sleep`` there let
queued background work run inside the window and overshot (a factor of 3 measured 4.6-5.7x
on point reads), and moved that work out of the operations timed after it.
``path=service`` narrows it to one path (default: every path timing that operation).
Unset in normal use; never set it for figures you publish.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

from lancesync_bench.errors import ConfigError

__all__ = ["ENV_VAR", "Slowdown"]

ENV_VAR = "LANCESYNC_BENCH_TEST_SLOWDOWN"
_FIELDS = ("operation", "factor", "path")


@dataclass(frozen=True)
class Slowdown:
    """Stretch ``operation`` (on ``path``, or on every path) to ``factor`` times its duration."""

    operation: str
    factor: float
    path: str | None = None

    def __post_init__(self) -> None:
        if not self.operation or not self.factor >= 1.0:
            raise ConfigError(
                f"{ENV_VAR}: needs an operation and a factor >= 1; got "
                f"operation={self.operation!r}, factor={self.factor}"
            )

    @classmethod
    def parse(cls, text: str) -> Slowdown:
        """``operation=NAME,factor=X[,path=P]`` as a Slowdown; ConfigError when malformed."""
        fields: dict[str, str] = {}
        for part in text.split(","):
            name, sep, value = part.partition("=")
            if not sep or name.strip() not in _FIELDS:
                raise ConfigError(f"{ENV_VAR}={text!r}: expected operation=NAME,factor=X[,path=P]")
            fields[name.strip()] = value.strip()
        try:
            factor = float(fields.get("factor", ""))
        except ValueError:
            raise ConfigError(f"{ENV_VAR}={text!r}: factor must be a number >= 1") from None
        return cls(fields.get("operation", ""), factor, fields.get("path") or None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Slowdown | None:
        """The switch as set in the environment, or None when unset (normal use)."""
        text = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
        return cls.parse(text) if text else None

    def applies(self, operation: str, path: str) -> bool:
        """Whether an operation timed on ``path`` is slowed."""
        return operation == self.operation and self.path in (None, path)

    async def stretch(self, elapsed_ns: int) -> None:
        """Wait ``factor - 1`` times ``elapsed_ns`` without yielding to the event loop: the
        operation then took ``factor`` x, and nothing else ran in its place."""
        time.sleep(elapsed_ns * (self.factor - 1.0) / 1e9)  # blocks on purpose (see above)
