"""The comparison as text: one line per key, then the rule it was judged by and a summary."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from typing import TYPE_CHECKING

from lancesync_bench.bench.gate import CONFIDENCE, MIN_ROUNDS

if TYPE_CHECKING:
    from pathlib import Path

    from lancesync_bench.bench.compare import CompareRow, RunComparison

__all__ = ["counts_text", "render"]

_HEADERS: tuple[str, ...] = (
    *("scenario", "profile", "size", "operation", "path", "phase", "rounds A/B"),
    *("p50 A", "p50 B", "B/A", f"{CONFIDENCE:.0%} CI", "noise", "p (BH)", "raw B/A", "verdict"),
)
# The rule below the table is wrapped to a terminal's width.
_WIDTH = 100
_ORDER = ("regression", "improvement", "unsure", "same", "untested", "only in A", "only in B")


def counts_text(counts: Mapping[str, int]) -> str:
    """``1 regression, 5 same, ...`` in a fixed order (the reference row is not counted)."""
    plural = {"regression": "regressions", "improvement": "improvements"}
    return ", ".join(
        f"{counts[v]} {plural.get(v, v) if counts[v] > 1 else v}" for v in _ORDER if counts.get(v)
    )


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:{spec}}{suffix}"


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _noise(sd: float | None) -> str:
    # The between-round SD of log figures, shown as the typical factor one round moves by.
    return "-" if sd is None else f"±{math.expm1(sd):.0%}"


def _cells(r: CompareRow) -> tuple[str, ...]:
    ci = "-" if r.ci_low is None else f"{r.ci_low:.2f}-{_fmt(r.ci_high, '.2f')}"
    ratio = _fmt(r.ratio, ".2f", "x")
    if r.ratio is not None and not r.normalised and r.verdict != "reference":
        ratio += "*"
    return (
        r.scenario,
        r.profile,
        str(r.size),
        r.operation,
        r.path,
        r.phase,
        f"{r.rounds_a}/{r.rounds_b}",
        _fmt(r.median_a_ms, ".2f", " ms"),
        _fmt(r.median_b_ms, ".2f", " ms"),
        ratio,
        ci,
        _noise(r.round_sd),
        _p(r.p_value),
        _fmt(r.raw_ratio, ".2f", "x"),
        r.verdict,
    )


def render(result: RunComparison) -> str:
    """A plain-text table, one line per key, with the rule and a summary line below it."""
    lines = [_HEADERS, *(_cells(r) for r in result.rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(_HEADERS))]

    def row(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [_side("A (baseline): ", result.runs_a), _side("B (candidate):", result.runs_b), ""]
    out += [row(lines[0]), row(tuple("-" * w for w in widths))]
    out += [row(line) for line in lines[1:]]
    out += ["", *(textwrap.fill(p, width=_WIDTH) for p in _rule(result)), "", _summary(result)]
    return "\n".join(out)


def _side(label: str, runs: list[Path]) -> str:
    if len(runs) == 1:
        return f"{label} {runs[0]}"
    names = ", ".join(p.name for p in runs)
    return f"{label} {len(runs)} rounds in {runs[0].parent}: {names}"


def _rule(result: RunComparison) -> list[str]:
    t, a = result.threshold, result.alpha
    lines = [
        "B/A: the key's median latency, B's rounds over A's (geometric means), at equal"
        " reference-job speed: each round's figure is scaled by its cell's reference-job"
        " median as far as the key follows it across the rounds (a fitted slope; dividing"
        " when there are too few rounds to fit one). raw B/A: without that. * = raw only: a"
        " round had no reference job. noise: how far one round's figure typically moves.",
    ]
    if result.single_run:
        lines.append(
            f"One run on a side: the noise between runs cannot be estimated, so no key is"
            f" tested and none is called a regression. unsure = B/A past {t:g}x either way,"
            f" which the machine's drift alone can do (2x seen a minute apart on 2 cores);"
            f" untested = within it, which may still hide a regression behind a faster run."
            f" For a verdict give {MIN_ROUNDS}+ runs a side (3-5 advised): compare A1 A2 A3"
            f" vs B1 B2 B3, or run `lancesync-bench gate`."
        )
    else:
        lines.append(
            f"regression: B/A >= {t:g} and p < {a:g} (t-test on log figures across rounds,"
            f" Benjamini-Hochberg over the judged keys), and raw B/A >= {t**0.5:.2f} (halfway:"
            f" the reference job may sharpen a shift, not make one); improvement: the mirror"
            f" rule; same: the {CONFIDENCE:.0%} CI lies within {1 / t:.2f}-{t:g}; unsure: the"
            f" rounds' noise is too large to tell, or the figures disagree; untested: fewer"
            f" than {MIN_ROUNDS} rounds a side and within {t:g}x (unsure when past it)."
        )
    return lines


def _summary(result: RunComparison) -> str:
    text = counts_text(result.counts) or "nothing judged"
    if result.single_run:
        return f"{text} (one run on a side: no regression can be called)"
    return f"{text} ({len(result.runs_a)} vs {len(result.runs_b)} rounds)"
