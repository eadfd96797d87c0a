"""A fixed CPU probe: how fast is the machine running right now, against its usual speed?

On a shared VM the CPU can deliver a fraction of its usual throughput for ~100 ms at a
time (a fixed 5 ms loop then takes 20-40 ms). Every operation in that window looks slow,
whatever the code does. The probe runs the same small pure-Python loop and compares its
duration with the median of its own earlier runs: a ratio of 1.0 is the usual speed, 2.0
means the loop took twice as long (the CPU ran at half speed or worse around it).

The loop does integer arithmetic on small numbers only: no container grows, no object
survives an iteration, so neither the allocator nor the garbage collector shows up in
its time; what varies is the CPU throughput this thread gets.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable

__all__ = [
    "FIXED_JOB_LOOPS",
    "PROBE_LOOPS",
    "REFERENCE_PATH",
    "Probe",
    "fixed_job",
    "settle",
    "shared_probe",
    "spin",
]

# 1600 iterations took 120-160 us at p50 on the project's 2-core VM under CPython 3.11
# (sets of 400 back-to-back runs after a warm-up; p99 170 us to 1.8 ms, the VM's bursts):
# short next to the operations it brackets, long next to perf_counter_ns's resolution.
PROBE_LOOPS = 1600
_CALIBRATION_RUNS = 50
_WARMUP_RUNS = 5  # the first runs pay for bytecode specialisation, not for the machine
# Long enough that a 100 ms slow burst (a few hundred probes at most, even around the
# fastest operations) is a minority of the window; short enough to bound memory.
_WINDOW = 4001


def spin(loops: int = PROBE_LOOPS) -> int:
    """The probe's fixed work: ``loops`` multiply-add-mask steps on a small integer."""
    x = 1
    for i in range(loops):
        x = (x * 31 + i) & 0xFFFF
    return x


# The reference job: the same pure-Python work every time, ~5 ms at p50 on the project's
# 2-core VM (the size of a local read). Its spread is the machine's alone: in one run of
# 400 back-to-back jobs here, p50 5 ms, p95 7-11 ms, p99 20-25 ms. A tail target tighter
# than the reference job's own tail cannot be judged on that machine.
FIXED_JOB_LOOPS = 56_000
REFERENCE_PATH = "reference:fixed-cpu-job"


def fixed_job() -> int:
    """The reference job (:data:`FIXED_JOB_LOOPS` probe steps)."""
    return spin(FIXED_JOB_LOOPS)


class Probe:
    """Times :func:`spin` and reports each duration over the median of recent durations.

    The first call runs a short calibration (``calibration`` runs after a few discarded
    warm-up runs), so the first ratio already has a reference. After that every duration
    joins a window of the last ``window`` durations, whose median is the reference: should
    the calibration happen to fall inside a slow burst, the median moves back to the usual
    speed as soon as normal-speed runs outnumber the slow ones.

    ``clock`` (nanoseconds) and ``work`` are injectable so tests can script durations.
    """

    def __init__(
        self,
        *,
        loops: int = PROBE_LOOPS,
        calibration: int = _CALIBRATION_RUNS,
        window: int = _WINDOW,
        clock: Callable[[], int] = time.perf_counter_ns,
        work: Callable[[int], object] = spin,
    ) -> None:
        if loops < 1 or calibration < 0 or window < 1:
            raise ValueError(
                f"probe needs loops >= 1, calibration >= 0, window >= 1; "
                f"got {loops}, {calibration}, {window}"
            )
        self.loops = loops
        self.calibration = calibration
        self._clock = clock
        self._work = work
        self._order: deque[int] = deque(maxlen=window)  # durations, oldest first
        self._sorted: list[int] = []  # the same durations, sorted (for the median)
        self._calibrated = False

    @property
    def count(self) -> int:
        """How many durations the median is taken over now."""
        return len(self._sorted)

    def median_ns(self) -> float | None:
        """The median of the durations in the window (None before the first one)."""
        n = len(self._sorted)
        if n == 0:
            return None
        mid = n // 2
        if n % 2:
            return float(self._sorted[mid])
        return (self._sorted[mid - 1] + self._sorted[mid]) / 2

    def observe(self, duration_ns: int) -> float:
        """Add one duration to the window; return it over the window's median (itself included)."""
        if len(self._order) == self._order.maxlen:
            oldest = self._order[0]
            del self._sorted[bisect.bisect_left(self._sorted, oldest)]
        self._order.append(duration_ns)
        bisect.insort(self._sorted, duration_ns)
        median = self.median_ns()
        # A zero median only comes from a fake clock that never moves: call that usual speed.
        return duration_ns / median if median else 1.0

    def _run_once(self) -> int:
        start = self._clock()
        self._work(self.loops)
        return self._clock() - start

    def calibrate(self) -> None:
        """Warm the loop up, then fill the window with ``calibration`` durations."""
        for _ in range(_WARMUP_RUNS if self.calibration else 0):
            self._run_once()
        for _ in range(self.calibration):
            self.observe(self._run_once())
        self._calibrated = True

    def __call__(self) -> float:
        """Run the probe once: its duration over the median (1.0 = usual speed)."""
        if not self._calibrated:
            self.calibrate()
        return self.observe(self._run_once())


_SHARED: Probe | None = None


def shared_probe() -> Probe:
    """The process's probe: one reference speed for every recorder of a run.

    Created on first use; it calibrates on its first call, not at import.
    """
    global _SHARED  # noqa: PLW0603 - one lazily created probe per process, by design
    if _SHARED is None:
        _SHARED = Probe()
    return _SHARED


async def settle(
    probe: Probe | None = None,
    *,
    calm_ratio: float = 1.5,
    calm_runs: int = 20,
    pause_s: float = 0.005,
    timeout_s: float = 10.0,
) -> float:
    """Flush dirty pages, then wait until the CPU runs at its usual speed; returns seconds.

    A cell's set-up writes a table (320 MB at 100k rows) locally and to the S3 server: the
    kernel then spends seconds writing it back to disk, on the same two cores the timed
    operations run on. Measured in one run, the first ~40 searches at 100k rows after
    set-up took up to 58 ms against a steady 7-8 ms, with the probe flagging the CPU at
    2-4x slower. Timed phases start once ``calm_runs`` probes in a row (``pause_s`` apart)
    came in under ``calm_ratio``, or after ``timeout_s`` (then the samples carry the
    slowdown figures that say so).
    """
    import asyncio
    import os

    probe = probe if probe is not None else shared_probe()
    start = time.perf_counter()
    await asyncio.to_thread(os.sync)
    calm = 0
    while calm < calm_runs and time.perf_counter() - start < timeout_s:
        calm = calm + 1 if probe() < calm_ratio else 0
        await asyncio.sleep(pause_s)
    return time.perf_counter() - start
