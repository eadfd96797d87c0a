"""Runs against runs: per-key figures of each round, judged across rounds (:mod:`.gate`).

Each side (A, the baseline; B, the candidate) is one run or several: each run is a round.
Keys are (scenario, profile, size, operation, path, phase), warm and cold phases. Per
round and key the figure is the median latency, judged beside the median of the reference
job in the same cell (the run's overall reference-job median where the cell has none):
see :func:`lancesync_bench.bench.gate.judge_key` for how far it scales a round. A key
with a round that holds no reference job is judged on raw medians, and marked so. Keys
found on one side only are listed, never judged. The reference job's own row shows how
fast B's machine ran against A's.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lancesync_bench.bench.gate import (
    CONFIDENCE,
    DEFAULT_ALPHA,
    DEFAULT_THRESHOLD,
    MIN_ROUNDS,
    GateVerdict,
    KeyJudgement,
    judge_key,
    judge_keys,
)
from lancesync_bench.bench.probe import REFERENCE_PATH
from lancesync_bench.bench.rounds import (
    KEY_COLUMNS,
    CompareInputError,
    Key,
    Round,
    load_round,
    resolve_runs,
)

__all__ = [
    "KEY_COLUMNS",
    "CompareInputError",
    "CompareRow",
    "Round",
    "RunComparison",
    "compare_runs",
    "format_comparison",
    "load_round",
    "resolve_runs",
]

RowVerdict = GateVerdict | Literal["reference", "only in A", "only in B"]


@dataclass(frozen=True)
class CompareRow:
    """One key: both sides' figures and the verdict. Ratios are B / A."""

    scenario: str
    profile: str
    size: int
    operation: str
    path: str
    phase: str
    verdict: RowVerdict
    rounds_a: int
    rounds_b: int
    n_a: int  # samples over all rounds
    n_b: int
    median_a_ms: float | None  # median over rounds of each round's median (not normalised)
    median_b_ms: float | None
    ratio: float | None  # normalised figures; see RunComparison.normalised
    ci_low: float | None  # CONFIDENCE interval of ratio (two rounds a side at least)
    ci_high: float | None
    p_value: float | None  # Benjamini-Hochberg adjusted, over the judged keys
    round_sd: float | None  # between-round SD of the log figures (0.1: ~10 % per round)
    raw_ratio: float | None  # of the rounds' raw medians (geometric means), for reference
    normalised: bool  # ratio..round_sd allow for the reference job (False: raw medians)


@dataclass(frozen=True)
class RunComparison:
    """Every row of a comparison of side B (candidate) against side A (baseline)."""

    runs_a: list[Path]
    runs_b: list[Path]
    threshold: float
    alpha: float
    rows: list[CompareRow]
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        tally: dict[str, int] = {}
        for row in self.rows:
            tally[row.verdict] = tally.get(row.verdict, 0) + 1
        object.__setattr__(self, "counts", tally)

    @property
    def single_run(self) -> bool:
        """True when a side has fewer rounds than a test needs: nothing can be a regression."""
        return min(len(self.runs_a), len(self.runs_b)) < MIN_ROUNDS

    @property
    def regressions(self) -> list[CompareRow]:
        """The rows judged a regression."""
        return [r for r in self.rows if r.verdict == "regression"]

    def as_dict(self) -> dict[str, Any]:
        """The comparison as plain, JSON-ready data (non-finite numbers become None)."""
        return {
            "runs_a": [str(p) for p in self.runs_a],
            "runs_b": [str(p) for p in self.runs_b],
            "threshold": self.threshold,
            "alpha": self.alpha,
            "confidence": CONFIDENCE,
            "single_run": self.single_run,
            "counts": dict(self.counts),
            "rows": [{k: _finite(v) for k, v in asdict(r).items()} for r in self.rows],
        }


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _figures(key: Key, rounds: Sequence[Round]) -> list[float]:
    """The key's median in each round that holds it (ms)."""
    return [r.medians[key] for r in rounds if key in r.medians]


def _references(key: Key, rounds: Sequence[Round]) -> list[float]:
    """The reference-job median beside each of :func:`_figures` (all present: checked)."""
    return [r.reference_for(key) or math.nan for r in rounds if key in r.medians]


def _can_normalise(key: Key, rounds: Sequence[Round]) -> bool:
    return key[4] != REFERENCE_PATH and all(
        r.reference_for(key) is not None for r in rounds if key in r.medians
    )


def _median_ms(key: Key, rounds: Sequence[Round]) -> float | None:
    values = [r.medians[key] for r in rounds if key in r.medians]
    return float(np.median(values)) if values else None


def compare_runs(
    runs_a: str | Path | Sequence[str | Path],
    runs_b: str | Path | Sequence[str | Path],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    normalise: bool = True,
    operations: Collection[str] = (),
    sizes: Collection[int] = (),
) -> RunComparison:
    """Compare side B (candidate) against side A (baseline), key by key, across rounds.

    Each side is a path or a list of paths (see :func:`resolve_runs`). ``operations`` and
    ``sizes`` limit the judged keys to those operations and table sizes (the reference job
    is kept for every size judged). Raises
    :class:`CompareInputError` when a run is missing or the sides share no key;
    :class:`~lancesync_bench.results.ResultsError` when one is unreadable.
    """
    if not threshold > 1.0 or not 0.0 < alpha < 1.0:
        raise CompareInputError(
            f"threshold must be > 1 and alpha in (0, 1); got threshold={threshold}, alpha={alpha}"
        )
    paths_a = _side(runs_a)
    paths_b = _side(runs_b)
    a = [load_round(p) for p in paths_a]
    b = [load_round(p) for p in paths_b]
    keys_a = {k for r in a for k in r.medians if _wanted(k, operations, sizes)}
    keys_b = {k for r in b for k in r.medians if _wanted(k, operations, sizes)}
    if (operations or sizes) and all(k[4] == REFERENCE_PATH for k in keys_a | keys_b):
        every = {k for r in a + b for k in r.medians}
        raise CompareInputError(
            f"no run holds operation(s) {', '.join(sorted(operations)) or 'any'} at size(s) "
            f"{', '.join(map(str, sorted(sizes))) or 'any'}; the runs hold operations "
            f"{', '.join(sorted({k[3] for k in every}))}; sizes "
            f"{', '.join(map(str, sorted({k[2] for k in every})))}"
        )
    if not keys_a & keys_b:
        raise CompareInputError(
            f"runs {', '.join(p.name for p in paths_a)} and {', '.join(p.name for p in paths_b)}"
            " share no (scenario, profile, size, operation, path, phase): nothing to compare"
        )
    shared = sorted(keys_a & keys_b)
    normed = {k: normalise and _can_normalise(k, a + b) for k in shared}
    judged = [k for k in shared if k[4] != REFERENCE_PATH]
    with_ref = [k for k in judged if normed[k]]
    verdicts = judge_keys(
        {k: _figures(k, a) for k in judged},
        {k: _figures(k, b) for k in judged},
        refs_a={k: _references(k, a) for k in with_ref},
        refs_b={k: _references(k, b) for k in with_ref},
        threshold=threshold,
        alpha=alpha,
    )
    rows = []
    for key in sorted(keys_a | keys_b):
        j: KeyJudgement | None = None
        verdict: RowVerdict
        if key in verdicts:
            j = verdicts[key]
            verdict = j.verdict
        elif key in shared:  # the reference job: the machine's speed, B against A
            j = judge_key(_figures(key, a), _figures(key, b))
            verdict = "reference"
        else:
            verdict = "only in A" if key in keys_a else "only in B"
        rows.append(_row(key, (a, b), verdict, j, normalised=normed.get(key, False)))
    return RunComparison(paths_a, paths_b, threshold, alpha, rows)


def _wanted(key: Key, operations: Collection[str], sizes: Collection[int]) -> bool:
    if sizes and key[2] not in sizes:
        return False
    return not operations or key[3] in operations or key[4] == REFERENCE_PATH


def _side(runs: str | Path | Sequence[str | Path]) -> list[Path]:
    items = [runs] if isinstance(runs, str | Path) else list(runs)
    if not items:
        raise CompareInputError("each side needs at least one run")
    paths = [p for item in items for p in resolve_runs(item)]
    return list(dict.fromkeys(paths))  # one run named twice is one round


def _row(
    key: Key,
    sides: tuple[list[Round], list[Round]],
    verdict: RowVerdict,
    j: KeyJudgement | None,
    *,
    normalised: bool,
) -> CompareRow:
    scenario, profile, size, operation, path, phase = key
    a, b = sides
    return CompareRow(
        scenario=scenario,
        profile=profile,
        size=size,
        operation=operation,
        path=path,
        phase=phase,
        verdict=verdict,
        rounds_a=sum(key in r.medians for r in a),
        rounds_b=sum(key in r.medians for r in b),
        n_a=sum(r.counts.get(key, 0) for r in a),
        n_b=sum(r.counts.get(key, 0) for r in b),
        median_a_ms=_median_ms(key, a),
        median_b_ms=_median_ms(key, b),
        ratio=None if j is None else j.ratio,
        ci_low=None if j is None else j.ci_low,
        ci_high=None if j is None else j.ci_high,
        p_value=None if j is None or verdict == "reference" else j.p_value,
        round_sd=None if j is None else j.round_sd,
        raw_ratio=_geometric_ratio(_figures(key, a), _figures(key, b)),
        normalised=normalised,
    )


def _geometric_ratio(a: list[float], b: list[float]) -> float | None:
    if not a or not b:
        return None
    return math.exp(float(np.log(b).mean() - np.log(a).mean()))


def format_comparison(result: RunComparison) -> str:
    """A plain-text table, one line per key, with the rule and a summary below it."""
    from lancesync_bench.bench.compare_text import render

    return render(result)
