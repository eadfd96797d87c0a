"""Rounds: the runs a comparison is made of, each read down to one median per key."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lancesync_bench import results
from lancesync_bench.bench.probe import REFERENCE_PATH
from lancesync_bench.errors import LanceSyncError

__all__ = ["KEY_COLUMNS", "CompareInputError", "Key", "Round", "load_round", "resolve_runs"]

KEY_COLUMNS = ("scenario", "profile", "size", "operation", "path", "phase")
# Warm-up samples run before caches settle; they describe no steady state to compare.
_COMPARED_PHASES = ("warm", "cold")

Key = tuple[str, str, int, str, str, str]
Cell = tuple[str, str, int]  # scenario, profile, size


class CompareInputError(LanceSyncError, ValueError):
    """The runs to compare cannot be found, read, or have nothing in common."""


@dataclass(frozen=True)
class Round:
    """One run's figures: per key its median latency (ms) and sample count."""

    run: Path
    medians: dict[Key, float]
    counts: dict[Key, int]
    reference: dict[Cell, float]  # the reference job's median per cell (ms)
    overall_reference: float | None  # over every reference-job sample of the run

    def reference_for(self, key: Key) -> float | None:
        """The reference-job median beside a key's median (None: the run has none)."""
        ref = self.reference.get(key[:3], self.overall_reference)
        return ref if ref is not None and ref > 0 else None


def _created(results_json: Path) -> str | None:
    try:
        return str(json.loads(results_json.read_text(encoding="utf-8"))["created_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable or foreign: not a run this package wrote


def resolve_runs(path: str | Path) -> list[Path]:
    """The run folders ``path`` names: a run folder, its ``results.json``, or a folder of runs.

    A folder of runs gives every complete run in it (each one a round), oldest first.
    """
    p = Path(path)
    if p.is_file():
        return [p.parent]
    if (p / results.RESULTS_FILE).is_file():
        return [p]
    if p.is_dir():
        found = [(c, f.parent) for f in p.glob(f"*/{results.RESULTS_FILE}") if (c := _created(f))]
        if found:
            return [run for _, run in sorted(found)]
        raise CompareInputError(f"{p}: no {results.RESULTS_FILE} in it or in any folder below")
    raise CompareInputError(f"{p}: no such run folder")


def load_round(run: Path) -> Round:
    """Per-key medians of one run, and its reference-job medians."""
    frame = results.load(run)
    frame = frame[frame["phase"].isin(_COMPARED_PHASES)]
    medians: dict[Key, float] = {}
    counts: dict[Key, int] = {}
    for values, group in frame.groupby(list(KEY_COLUMNS), sort=True):
        scenario, profile, _, operation, path, phase = (str(v) for v in values)
        size = int(group["size"].iloc[0])  # the group's value, typed (the tuple is Hashable)
        key: Key = (scenario, profile, size, operation, path, phase)
        medians[key] = float(np.median(group["latency_ms"].to_numpy(dtype=np.float64)))
        counts[key] = len(group)
    ref = frame[frame["path"] == REFERENCE_PATH]["latency_ms"].to_numpy(dtype=np.float64)
    reference = {k[:3]: v for k, v in medians.items() if k[4] == REFERENCE_PATH}
    overall = float(np.median(ref)) if len(ref) else None
    return Round(run, medians, counts, reference, overall)
