"""Run against run: per-operation latency ratios, a significance test, and a verdict.

Two runs are matched on (scenario, profile, size, operation, path) and phase. For every key
present in both, :func:`lancesync_bench.stats.compare` gives the ratio of medians and of p95
(B / A: above 1, B is slower), the Mann-Whitney p-value and a bootstrap CI of the median
ratio. The verdict is ``regression`` (:func:`~lancesync_bench.stats.is_regression`),
``improvement`` (the same rule with A and B swapped), ``same``, or ``untested`` when either
side has too few samples for the test. Keys found in one run only are listed, never judged.

Warm samples are always compared. Cold samples (one table open each) are few by design, so
a cold key is compared only when both runs hold enough of them for the test; the others
are counted and left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from lancesync_bench import results
from lancesync_bench.errors import LanceSyncError
from lancesync_bench.stats import MIN_TEST_SAMPLES, Comparison, compare, is_regression

__all__ = [
    "KEY_COLUMNS",
    "CompareInputError",
    "CompareRow",
    "RunComparison",
    "compare_runs",
    "format_comparison",
    "judge_comparison",
    "resolve_run",
]

KEY_COLUMNS = ("scenario", "profile", "size", "operation", "path", "phase")
RowVerdict = Literal["regression", "improvement", "same", "untested", "only in A", "only in B"]
_NS_PER_MS = 1e6
# Warm-up samples run before caches settle; they describe no steady state to compare.
_COMPARED_PHASES = ("warm", "cold")

Key = tuple[str, str, int, str, str, str]
Latencies = npt.NDArray[np.float64]


class CompareInputError(LanceSyncError, ValueError):
    """The runs to compare cannot be found, read, or have nothing in common."""


@dataclass(frozen=True)
class CompareRow:
    """One key of the comparison: the figures of both runs and the verdict."""

    scenario: str
    profile: str
    size: int
    operation: str
    path: str
    phase: str
    verdict: RowVerdict
    n_a: int
    n_b: int
    median_a_ms: float | None
    median_b_ms: float | None
    median_ratio: float | None  # B / A
    p95_ratio: float | None  # None unless both sides support p95 (n >= 20)
    p_value: float | None  # two-sided Mann-Whitney U
    ci_low: float | None  # bootstrap 95 % CI of median_ratio
    ci_high: float | None


@dataclass(frozen=True)
class RunComparison:
    """Every row of a comparison of run B (candidate) against run A (baseline)."""

    run_a: Path
    run_b: Path
    threshold: float
    alpha: float
    rows: list[CompareRow]
    skipped_cold: int = 0  # cold keys left out: too few samples in either run
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        tally: dict[str, int] = {}
        for row in self.rows:
            tally[row.verdict] = tally.get(row.verdict, 0) + 1
        object.__setattr__(self, "counts", tally)

    @property
    def regressions(self) -> list[CompareRow]:
        """The rows judged a regression."""
        return [r for r in self.rows if r.verdict == "regression"]

    def as_dict(self) -> dict[str, Any]:
        """The comparison as plain, JSON-ready data (non-finite numbers become None)."""
        return {
            "run_a": str(self.run_a),
            "run_b": str(self.run_b),
            "threshold": self.threshold,
            "alpha": self.alpha,
            "counts": dict(self.counts),
            "skipped_cold": self.skipped_cold,
            "rows": [{k: _finite(v) for k, v in asdict(r).items()} for r in self.rows],
        }


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def resolve_run(path: str | Path) -> Path:
    """The run folder ``path`` names: a run folder, its ``results.json``, or a results folder.

    Given a folder of runs (such as ``results/``), the most recent complete run in it.
    """
    p = Path(path)
    if p.is_file():
        return p.parent
    if (p / results.RESULTS_FILE).is_file():
        return p
    if p.is_dir():
        latest = results.latest_run(p)
        if latest is not None:
            return latest
        raise CompareInputError(f"{p}: no {results.RESULTS_FILE} in it or in any folder below")
    raise CompareInputError(f"{p}: no such run folder")


def _samples(run: Path) -> tuple[dict[Key, Latencies], set[Key]]:
    """Latencies (ms) per key, and the cold keys too small to test (left out of the first)."""
    frame = results.load(run)
    frame = frame[frame["phase"].isin(_COMPARED_PHASES)]
    out: dict[Key, Latencies] = {}
    small_cold: set[Key] = set()
    for values, group in frame.groupby(list(KEY_COLUMNS), sort=True):
        scenario, profile, _, operation, path, phase = (str(v) for v in values)
        size = int(group["size"].iloc[0])  # the group's value, typed (the tuple is Hashable)
        key: Key = (scenario, profile, size, operation, path, phase)
        latencies = group["latency_ms"].to_numpy(dtype=np.float64)
        if phase == "cold" and len(latencies) < MIN_TEST_SAMPLES:
            small_cold.add(key)
        else:
            out[key] = latencies
    return out, small_cold


def _inverse(ratio: float | None) -> float | None:
    return None if ratio is None or ratio <= 0 else 1.0 / ratio


def _mirror(cmp: Comparison) -> Comparison:
    """The comparison seen from the other side: A against B."""
    return replace(
        cmp,
        n_a=cmp.n_b,
        n_b=cmp.n_a,
        median_ratio=_inverse(cmp.median_ratio),
        p95_ratio=_inverse(cmp.p95_ratio),
        prob_b_slower=None if cmp.prob_b_slower is None else 1.0 - cmp.prob_b_slower,
        ci_low=_inverse(cmp.ci_high),
        ci_high=_inverse(cmp.ci_low),
    )


def judge_comparison(cmp: Comparison, *, threshold: float, alpha: float) -> RowVerdict:
    """``regression``, ``improvement`` (the mirror rule), ``same``, or ``untested``."""
    if cmp.p_value is None:
        return "untested"
    if is_regression(cmp, threshold, alpha):
        return "regression"
    if is_regression(_mirror(cmp), threshold, alpha):
        return "improvement"
    return "same"


def _median(values: Latencies | None) -> float | None:
    return float(np.median(values)) if values is not None and len(values) else None


def _row(
    key: Key, a: Latencies | None, b: Latencies | None, *, threshold: float, alpha: float
) -> CompareRow:
    scenario, profile, size, operation, path, phase = key
    cmp: Comparison | None = None
    if a is not None and b is not None:
        cmp = compare(a * _NS_PER_MS, b * _NS_PER_MS)
        verdict = judge_comparison(cmp, threshold=threshold, alpha=alpha)
    else:
        verdict = "only in A" if b is None else "only in B"
    return CompareRow(
        scenario=scenario,
        profile=profile,
        size=size,
        operation=operation,
        path=path,
        phase=phase,
        verdict=verdict,
        n_a=0 if a is None else len(a),
        n_b=0 if b is None else len(b),
        median_a_ms=_median(a),
        median_b_ms=_median(b),
        median_ratio=cmp.median_ratio if cmp else None,
        p95_ratio=cmp.p95_ratio if cmp else None,
        p_value=cmp.p_value if cmp else None,
        ci_low=cmp.ci_low if cmp else None,
        ci_high=cmp.ci_high if cmp else None,
    )


def compare_runs(
    run_a: str | Path, run_b: str | Path, *, threshold: float = 1.10, alpha: float = 0.01
) -> RunComparison:
    """Compare run B (candidate) against run A (baseline), key by key.

    The defaults are :func:`~lancesync_bench.stats.is_regression`'s: a 10 % shift is the
    run-to-run noise of a shared CI machine, and 1 % keeps false alarms rare over the many
    keys a run holds. Raises :class:`CompareInputError` when a run is missing or the two
    runs share no key; :class:`~lancesync_bench.results.ResultsError` when one is unreadable.
    """
    if not threshold > 1.0 or not 0.0 < alpha < 1.0:
        raise CompareInputError(
            f"threshold must be > 1 and alpha in (0, 1); got threshold={threshold}, alpha={alpha}"
        )
    path_a, path_b = resolve_run(run_a), resolve_run(run_b)
    a, small_a = _samples(path_a)
    b, small_b = _samples(path_b)
    # A cold key too small in either run is left out of both: not "only in" the other.
    skipped = small_a | small_b
    a = {k: v for k, v in a.items() if k not in skipped}
    b = {k: v for k, v in b.items() if k not in skipped}
    if not a.keys() & b.keys():
        raise CompareInputError(
            f"runs {path_a.name} and {path_b.name} share no (scenario, profile, size, "
            f"operation, path, phase): nothing to compare"
        )
    rows = [
        _row(key, a.get(key), b.get(key), threshold=threshold, alpha=alpha)
        for key in sorted(a.keys() | b.keys())
    ]
    return RunComparison(path_a, path_b, threshold, alpha, rows, skipped_cold=len(skipped))


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:{spec}}{suffix}"


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


_HEADERS: tuple[str, ...] = (
    *("scenario", "profile", "size", "operation", "path", "phase", "n A/B"),
    *("p50 A", "p50 B", "p50 B/A", "p95 B/A", "p", "95% CI", "verdict"),
)


def _cells(r: CompareRow) -> tuple[str, ...]:
    ci = "-" if r.ci_low is None else f"{r.ci_low:.2f}-{_fmt(r.ci_high, '.2f')}"
    return (
        r.scenario,
        r.profile,
        str(r.size),
        r.operation,
        r.path,
        r.phase,
        f"{r.n_a}/{r.n_b}",
        _fmt(r.median_a_ms, ".2f", " ms"),
        _fmt(r.median_b_ms, ".2f", " ms"),
        _fmt(r.median_ratio, ".2f", "x"),
        _fmt(r.p95_ratio, ".2f", "x"),
        _p(r.p_value),
        ci,
        r.verdict,
    )


def format_comparison(result: RunComparison) -> str:
    """A plain-text table, one line per key, with a summary line below it."""
    lines = [_HEADERS, *(_cells(r) for r in result.rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(_HEADERS))]

    def render(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [f"A (baseline):  {result.run_a}", f"B (candidate): {result.run_b}", ""]
    out += [render(lines[0]), render(tuple("-" * w for w in widths))]
    out += [render(line) for line in lines[1:]]
    out += ["", _summary(result.counts, result)]
    return "\n".join(out)


def _summary(counts: Mapping[str, int], result: RunComparison) -> str:
    order = ("regression", "improvement", "same", "untested", "only in A", "only in B")
    plural = {"regression": "regressions", "improvement": "improvements"}
    parts = [
        f"{counts[v]} {plural.get(v, v) if counts[v] > 1 else v}" for v in order if counts.get(v)
    ]
    rule = (
        f"ratios are B/A; regression: p50 or p95 ratio >= {result.threshold:g} "
        f"with p < {result.alpha:g}"
    )
    skipped = (
        f"; {result.skipped_cold} cold key(s) with n < {MIN_TEST_SAMPLES} left out"
        if result.skipped_cold
        else ""
    )
    return f"{', '.join(parts)} ({rule}{skipped})"
