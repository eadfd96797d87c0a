"""What every section receives: the S3 endpoint, a work folder, the scale and the seed."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lancesync_bench.s3.endpoint import S3Endpoint

if TYPE_CHECKING:
    from lancesync_bench.chaos.security import BenchmarkRun

__all__ = ["FULL", "QUICK", "Scale", "SuiteContext"]


@dataclass(frozen=True, kw_only=True)
class Scale:
    """How much of each fault a run applies."""

    kill_trials_per_kind: int
    # Kills during sustained single-document writes (the write log, flushes, compaction).
    write_kill_trials: int
    outage_ops: int
    flaky_ops: int
    device_rounds: int
    flaky_fail_rate: float = 0.05


# Full: at least 50 kill trials during transfers (18 each of sync, backup and S3-primary
# write) and 50 during sustained local writes, 1,000 operations per outage and flaky
# workload (enough writes per phase for a p99), and 100 rounds of two racing devices.
FULL = Scale(
    kill_trials_per_kind=18,
    write_kill_trials=50,
    outage_ops=1000,
    flaky_ops=1000,
    device_rounds=100,
)
# Quick (CI): two trials per kind and a tenth of each workload; the same checks, in well
# under two minutes on two cores.
QUICK = Scale(
    kill_trials_per_kind=2, write_kill_trials=3, outage_ops=100, flaky_ops=100, device_rounds=10
)


@dataclass
class SuiteContext:
    """The run's shared pieces. ``endpoint`` reaches the server directly, under the run's
    own key prefix; sections put proxies in front of it as they need."""

    endpoint: S3Endpoint
    workdir: Path
    quick: bool
    seed: int
    scale: Scale
    secrets: list[str] = field(default_factory=list)
    # Files whose content the secret scan reads at the end (worker logs, run output).
    outputs: list[Path] = field(default_factory=list)
    # Texts (captured output, error messages, reprs) the secret scan reads at the end.
    texts: dict[str, str] = field(default_factory=dict)
    # `lancesync-bench run --quick`, started early by the suite for the security scan.
    benchmark_run: BenchmarkRun | None = None

    def folder(self, *parts: str) -> Path:
        """A fresh folder below the work folder."""
        path = self.workdir.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def rng(self, section: str) -> random.Random:
        """A seeded random stream of its own for one section."""
        return random.Random(f"{self.seed}:{section}")

    def endpoint_below(self, name: str) -> S3Endpoint:
        """The endpoint with a sub-prefix of the run's prefix, so sections never share keys."""
        return self.endpoint.with_prefix(self.endpoint.key(name))
