"""Timing one operation many times: raw samples with the S3 requests each one made."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from lancesync_bench.bench.probe import REFERENCE_PATH, Probe, shared_probe
from lancesync_bench.bench.slowdown import Slowdown
from lancesync_bench.netem import RequestCounts
from lancesync_bench.results import Phase, SampleRow

__all__ = ["CellKey", "FailedOperation", "Recorder", "failure_of", "failure_text"]


@dataclass(frozen=True)
class CellKey:
    """Which (scenario, mode, profile, size) a sample belongs to."""

    scenario: str
    storage_mode: str
    profile: str
    size: int


@dataclass(frozen=True)
class FailedOperation:
    """An operation that raised or reported failure: never a latency sample.

    ``iteration`` is None for a failure outside a timed call (the cell's set-up).
    """

    scenario: str
    storage_mode: str
    profile: str
    size: int
    operation: str
    path: str
    phase: str
    iteration: int | None
    error: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for results.json)."""
        return asdict(self)

    def describe(self) -> str:
        """One line naming the operation, where it ran and why it failed."""
        where = f"{self.scenario}/{self.profile}/{self.size}"
        at = "" if self.iteration is None else f" #{self.iteration}"
        return f"{where} {self.operation}{at} ({self.path}): {self.error}"


def failure_text(exc: BaseException) -> str:
    """An exception as one short line: its type and message."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def failure_of(result: Any) -> str | None:
    """Why a call's result says it failed, or None when it succeeded.

    Sync-like calls return a report with ``reachable=False`` or an ``error`` instead of
    raising (:class:`~lancesync_bench.storage.reports.SyncReport`): such a call did not do
    its work, and its duration is not a latency of that work.
    """
    error = getattr(result, "error", None)
    if getattr(result, "reachable", True) is False:
        return str(error or "S3 did not answer")
    return str(error) if error else None


class CountingProxy(Protocol):
    """What the recorder needs of a proxy: its request counts, now."""

    def snapshot(self) -> RequestCounts: ...


# Paths that make no S3 request by construction (plain LanceDB on local disk, the
# reference job): their samples skip the proxy's counters (two snapshots, ~0.5 ms a
# sample with the proxy in its own process) and record no request count.
NO_S3_PATHS = frozenset({"baseline:lancedb-local", REFERENCE_PATH})


@dataclass
class Recorder:
    """Collects :class:`~lancesync_bench.results.SampleRow` rows for one cell.

    Each operation is timed alone with ``perf_counter_ns`` (closed loop: the next starts
    when the previous one ended). When a proxy sits on the S3 path, the requests and bytes
    it saw during the operation are stored with the sample.

    With a ``probe`` (the process's shared one by default), the CPU probe runs right before
    and right after each operation, outside its timed window, and the slower of the two
    ratios is stored as the sample's ``machine_slowdown``. ``probe=None`` leaves it None.

    An operation that raises, or returns a report that says it failed (:func:`failure_of`),
    goes to ``failures`` instead of ``samples``; an exception is then raised again, since
    the caller cannot go on with a result it does not have.

    ``slowdown`` is a test-only switch (:mod:`lancesync_bench.bench.slowdown`, read from the
    environment): it stretches one operation inside its timed window, so the regression
    gate's tests have a genuine slowdown to catch. None in normal use.
    """

    key: CellKey
    proxy: CountingProxy | None = None  # an S3Proxy, or one in its own process
    samples: list[SampleRow] = field(default_factory=list)
    failures: list[FailedOperation] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    probe: Probe | None = field(default_factory=shared_probe)
    slowdown: Slowdown | None = field(default_factory=Slowdown.from_env)

    async def run(
        self,
        operation: str,
        fn: Callable[[int], Awaitable[Any]],
        *,
        repetitions: int,
        warmup: int = 0,
        path: str = "service",
        phase: Phase = "warm",
        first_iteration: int = 0,
    ) -> list[Any]:
        """Call ``fn(i)`` ``warmup`` times (recorded as warm-up) then ``repetitions`` times.

        Returns the results of the timed calls (for recall checks and the like).
        ``first_iteration`` numbers samples of an operation timed in several calls.
        """
        for i in range(warmup):
            await self._one(operation, fn, i, where=(path, "warmup", i))
        return [
            await self._one(operation, fn, warmup + i, where=(path, phase, first_iteration + i))
            for i in range(repetitions)
        ]

    async def _one(
        self,
        operation: str,
        fn: Callable[[int], Awaitable[Any]],
        arg: int,
        *,
        where: tuple[str, Phase, int],
    ) -> Any:
        path, phase, iteration = where
        # The probes bracket the proxy snapshots and the timed window: neither the latency
        # nor the S3 counts include the probe's own time.
        slow_before = self.probe() if self.probe is not None else None
        counted = self.proxy is not None and path not in NO_S3_PATHS
        before = self.proxy.snapshot() if counted and self.proxy is not None else None
        start = time.perf_counter_ns()
        try:
            result = await fn(arg)
            if self.slowdown is not None and self.slowdown.applies(operation, path):
                await self.slowdown.stretch(time.perf_counter_ns() - start)
        except Exception as exc:
            self.fail(
                operation,
                failure_text(exc),
                path=path,
                phase=phase,
                iteration=iteration,
            )
            raise
        elapsed = time.perf_counter_ns() - start
        why = failure_of(result)
        if why is not None:
            self.fail(operation, why, path=path, phase=phase, iteration=iteration)
            return result
        requests = transferred = None
        if before is not None and self.proxy is not None:
            delta = self.proxy.snapshot() - before
            requests = delta.total
            transferred = delta.bytes_up + delta.bytes_down
        slowdown = None
        if self.probe is not None and slow_before is not None:
            slowdown = round(max(slow_before, self.probe()), 2)
        self.samples.append(
            SampleRow(
                scenario=self.key.scenario,
                storage_mode=self.key.storage_mode,
                profile=self.key.profile,
                size=self.key.size,
                operation=operation,
                path=path,
                phase=phase,
                iteration=iteration,
                latency_ms=elapsed / 1e6,
                requests=requests,
                bytes=transferred,
                machine_slowdown=slowdown,
            )
        )
        return result

    def fail(
        self,
        operation: str,
        error: str,
        *,
        path: str = "service",
        phase: str = "setup",
        iteration: int | None = None,
    ) -> None:
        """Record a failed operation of this cell (never a sample)."""
        k = self.key
        self.failures.append(
            FailedOperation(
                k.scenario,
                k.storage_mode,
                k.profile,
                k.size,
                operation,
                path,
                phase,
                iteration,
                " ".join(error.split())[:300],  # one line; an S3 error can be long
            )
        )
