"""The verdict's answer first: one line per storage mode, before the detailed table."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from lancesync_bench.results import VerdictRow

__all__ = ["format_summary", "mode_summaries", "worst_row"]

# Which status decides a mode's answer, most serious first; BELOW (under the S3 band on a
# loopback or emulated network) and N/A (nothing measured) never decide it.
_RANK = {"FAIL": 0, "UNSURE": 1, "PASS": 2}
_ANSWER = {
    "FAIL": "MISSES its targets",
    "UNSURE": "NOT PROVEN (no target missed; some intervals straddle their target)",
    "PASS": "MEETS its targets",
}
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _limit(criterion: str) -> float | None:
    """The bound a figure is held against: the upper edge for ms targets, the minimum for
    recall (criteria read ``p95 < 10 ms``, ``p50 in 50-200 ms``, ``recall@10 >= 0.95``)."""
    numbers = _NUMBER.findall(criterion.split(" ", 1)[-1])
    return float(numbers[-1]) if numbers else None


def _severity(r: VerdictRow) -> float:
    """How far a figure is from its bound, as a ratio (above 1: on the wrong side)."""
    limit = _limit(r["criterion"])
    value = r.get("value", r["value_ms"])
    if limit is None or value is None or limit <= 0:
        return 0.0
    if r.get("unit") == "recall":
        return limit / value if value > 0 else float("inf")
    return value / limit


def worst_row(rows: Iterable[VerdictRow]) -> VerdictRow | None:
    """The row that decides the answer: the most serious status, then the furthest figure."""
    judged = [r for r in rows if r["status"] in _RANK]
    if not judged:
        return None
    return min(judged, key=lambda r: (_RANK[r["status"]], -_severity(r)))


def _figure(r: VerdictRow) -> str:
    stat = r["criterion"].split(" ", 1)[0]
    value = r.get("value", r["value_ms"])
    low, high = r.get("ci_low"), r.get("ci_high")
    if r.get("unit") == "recall":
        shown = "-" if value is None else f"{value:.3f}"
        ci = "" if low is None or high is None else f" (95% CI {low:.3f}-{high:.3f})"
        return f"{r['operation']} {stat} {shown}{ci} on {r.get('data', 'its data')}"
    shown = "-" if value is None else f"{value:.2f} ms"
    if "ci_low" not in r:
        ci = ""
    elif low is None or high is None:
        ci = f" (n={r.get('n')}: too few for an interval)"
    else:
        ci = f" (95% CI {low:.2f}-{high:.2f})"
    return f"{r['operation']} {stat} {shown}{ci}"


def mode_summaries(rows: Iterable[VerdictRow]) -> dict[str, str]:
    """One sentence per storage mode: the answer, the counts, and the worst figure."""
    by_mode: dict[str, list[VerdictRow]] = defaultdict(list)
    for r in rows:
        by_mode[r["storage_mode"]].append(r)
    out: dict[str, str] = {}
    for mode in sorted(by_mode):
        members = by_mode[mode]
        counts = {s: sum(r["status"] == s for r in members) for s in ("FAIL", "UNSURE", "PASS")}
        counted = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        worst = worst_row(members)
        if worst is None:
            out[mode] = f"{mode}: nothing judged ({len(members)} rows, none PASS/FAIL/UNSURE)"
            continue
        source = worst.get("target_source") or "default"
        source = source if source == "default" else Path(source).name
        scenarios = ", ".join(sorted({r["scenario"] for r in members}))
        out[mode] = (
            f"{mode} ({scenarios}): {_ANSWER[worst['status']]} [{counted} of {len(members)}];"
            f" worst: {_figure(worst)} against {worst['criterion']}"
            f" ({worst['target']}, {source}) in {worst['scenario']}/{worst['profile']}/"
            f"{worst['size']} rows"
        )
    return out


def format_summary(rows: Iterable[VerdictRow]) -> str:
    """The lines that lead the verdict: ``Verdict by storage mode`` and one line per mode."""
    lines = list(mode_summaries(rows).values())
    if not lines:
        return "Verdict: nothing was judged"
    return "\n".join(["Verdict by storage mode (details below):", *(f"  {x}" for x in lines)])
