"""What a report reads from a run folder, and the tidy views its figures and tables share.

A :class:`ReportData` holds one run (samples, stats, verdicts and the envelope). The helpers
here pick what the figures draw: timed samples only (warm-up excluded), operations in a
reading order, network profiles from the fastest to the slowest, and one table size per
scenario for the per-operation figures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lancesync_bench.errors import ConfigError
from lancesync_bench.results import RESULTS_FILE, load, load_run, load_stats, load_verdicts
from lancesync_bench.stats import Targets, min_samples

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "SERVICE",
    "ReportData",
    "load_report_data",
    "operation_sort_key",
    "pick_size",
    "quantile",
    "sweep_samples",
]

SERVICE = "service"
BASELINE_PREFIX = "baseline:"
SWEEP_PREFIX = "sweep_"
# Reading order of the runner's operations: reads, then writes, then S3 traffic. Unknown
# operations follow in alphabetical order, so a new operation shows up without a code change.
_OPERATION_ORDER = (
    "cold_read",
    "point_read",
    "vector_search",
    "miss_read",
    "fresh_read",
    "refresh_no_change",
    "add_1",
    "add_batch",
    "sync_no_change",
    "sync_after_add_1",
    "backup_no_change",
    "backup_after_add_1",
    "restore_latest",
)
# A sweep operation names its concurrency in a trailing number: bench/sweep.py writes
# "sweep_point_read_u8"; "sweep_point_read@8" and "sweep_point_read_8users" are read too,
# and a "users" column wins should the samples ever carry one.
_SWEEP_NAME = re.compile(
    rf"^{SWEEP_PREFIX}(?P<op>.+?)(?:[_@-]+(?:u|users=?)?)(?P<users>\d+)(?:_?users|u)?$"
)


def operation_sort_key(label: str) -> tuple[int, str]:
    """Sort key putting known operations in reading order, then the rest alphabetically."""
    base = label.split(" ", 1)[0]
    rank = _OPERATION_ORDER.index(base) if base in _OPERATION_ORDER else len(_OPERATION_ORDER)
    return rank, label


def quantile(values: Iterable[float], q: float) -> float | None:
    """Percentile ``q`` (percent) of ``values``, or None when too few support it.

    The same guard as :func:`lancesync_bench.stats.percentile`: a p95 from 5 samples would
    be the maximum under another name.
    """
    import numpy as np

    arr = np.asarray(list(values), dtype=np.float64)
    if len(arr) < min_samples(q):
        return None
    return float(np.percentile(arr, q))


def pick_size(frame: pd.DataFrame) -> int:
    """The largest table size measured on every profile of ``frame``, else the largest.

    Per-operation figures show one size per scenario: mixing sizes in one box would blur
    the growth the size figure shows on its own.
    """
    per_profile = [set(g["size"].tolist()) for _, g in frame.groupby("profile")]
    common = set.intersection(*per_profile) if per_profile else set()
    return int(max(common) if common else frame["size"].max())


@dataclass(frozen=True)
class ReportData:
    """One run as the report sees it: the samples, stats and verdict tables, the envelope.

    Notebooks may build one from filtered frames with :func:`dataclasses.replace`.
    """

    envelope: Mapping[str, Any]
    samples: pd.DataFrame
    stats: pd.DataFrame
    verdicts: pd.DataFrame
    run_dir: Path | None = None

    @property
    def run_id(self) -> str:
        """The run's id (``results.json`` field ``run_id``)."""
        return str(self.envelope.get("run_id", "unknown run"))

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The envelope's ``metadata`` object (empty when the run recorded none)."""
        meta = self.envelope.get("metadata")
        return meta if isinstance(meta, Mapping) else {}

    def targets(self) -> Targets:
        """The targets the run's scenarios state (the spec's defaults when none do)."""
        for scenario in self.envelope.get("scenarios") or []:
            found = scenario.get("targets") if isinstance(scenario, Mapping) else None
            if isinstance(found, Mapping):
                known = set(Targets.__dataclass_fields__)
                return Targets(**{k: v for k, v in found.items() if k in known})
        return Targets()

    def profile_rtts(self) -> dict[str, float | None]:
        """Round-trip time (ms) of every profile in the samples; None when not recorded."""
        known: dict[str, float] = {}
        listed = list(self.metadata.get("profiles") or [])
        for scenario in self.envelope.get("scenarios") or []:
            if isinstance(scenario, Mapping):
                listed += list(scenario.get("profiles") or [])
        for p in listed:
            if isinstance(p, Mapping) and "name" in p and p.get("rtt_ms") is not None:
                known.setdefault(str(p["name"]), float(p["rtt_ms"]))
        names = self.samples["profile"].unique().tolist() if len(self.samples) else []
        return {str(n): known.get(str(n)) for n in names}

    def profiles(self) -> list[str]:
        """Profiles in the samples, fastest network first (unknown RTT last)."""
        rtts = self.profile_rtts()
        return sorted(rtts, key=lambda n: (rtts[n] is None, rtts[n] or 0.0, n))

    def emulated_profiles(self) -> list[str]:
        """Profiles with a known RTT above zero (the delay proxy added latency)."""
        rtts = self.profile_rtts()
        return [p for p in self.profiles() if (rtts[p] or 0.0) > 0]

    def timed(self, path: str | None = SERVICE) -> pd.DataFrame:
        """Timed samples (warm-up excluded, sweeps apart) with a ``label`` column.

        ``label`` is the operation, suffixed with its phase when not warm ("cold_read
        (cold)"), so a cold figure never hides among warm ones. ``path=None``: every path.
        """
        s = self.samples
        keep = (s["phase"] != "warmup") & ~s["operation"].str.startswith(SWEEP_PREFIX)
        if path is not None:
            keep &= s["path"] == path
        out = s[keep].copy()
        warm = out["phase"] == "warm"
        out["label"] = out["operation"].where(warm, out["operation"] + " (" + out["phase"] + ")")
        return out

    def baseline_paths(self) -> list[str]:
        """The baseline paths present (``baseline:<name>``), sorted."""
        paths = self.samples["path"].unique().tolist() if len(self.samples) else []
        return sorted(str(p) for p in paths if str(p).startswith(BASELINE_PREFIX))


def sweep_samples(samples: pd.DataFrame) -> pd.DataFrame:
    """Concurrency-sweep samples with ``users`` and ``label`` columns (empty when none).

    Sweep operations start with ``sweep_``; the number of users comes from a ``users``
    column when the samples carry one, otherwise from a trailing number in the operation
    name. Rows whose user count cannot be told are left out rather than guessed.
    """
    import pandas as pd

    s = samples[samples["operation"].str.startswith(SWEEP_PREFIX) & (samples["phase"] != "warmup")]
    if s.empty:
        return s.assign(users=pd.Series(dtype="int64"), label=pd.Series(dtype="string"))
    parts = s["operation"].str.extract(_SWEEP_NAME)
    if "users" in s.columns:
        users = pd.to_numeric(s["users"], errors="coerce")
        label = s["operation"].str.removeprefix(SWEEP_PREFIX)
    else:
        users = pd.to_numeric(parts["users"], errors="coerce")
        label = parts["op"]
    out = s.assign(users=users, label=label)
    return out[out["users"].notna() & out["label"].notna()].astype({"users": "int64"})


def load_report_data(path: str | Path) -> ReportData:
    """Load the run in folder ``path`` (or its ``results.json``) for a report.

    Raises :class:`~lancesync_bench.errors.ConfigError` when ``path`` holds no
    ``results.json``: a folder without one is not a (complete) run.
    """
    p = Path(path)
    file = p if p.is_file() else p / RESULTS_FILE
    if not file.is_file():
        raise ConfigError(
            f"{p}: no {RESULTS_FILE} here; give a run folder such as results/<run-id>/ "
            "(written by `lancesync-bench run`; a folder without it is an incomplete run)"
        )
    return ReportData(
        envelope=load_run(file),
        samples=load(file),
        stats=load_stats(file),
        verdicts=load_verdicts(file),
        run_dir=file.parent,
    )
