"""Plain-text tables ``run`` prints after the verdict: baselines, sweep, failed operations.

Ratios are always service / baseline and are said in words ("2.2x slower than plain
LanceDB on local disk"), the same direction and wording as the report's baselines figure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from lancesync_bench.bench.baselines import NOT_ON_PATH, SYNC_TOOLS
from lancesync_bench.bench.recorder import FailedOperation
from lancesync_bench.results import SampleRow

__all__ = [
    "baseline_name",
    "columns",
    "format_baselines",
    "format_failures",
    "format_missing_tools",
    "format_sweep",
    "ratio_words",
]

# What each baseline is, in a sentence's words; an unknown one keeps its path name.
_BASELINE_NAMES = {
    "lancedb-local": "plain LanceDB on local disk",
    "lancedb-s3": "plain LanceDB on S3",
    "aws-s3-sync": "aws s3 sync",
    "rclone-sync": "rclone sync",
}
# Within this many per cent the two are reported as the same speed: a median ratio of
# 1.02 is inside the run-to-run spread of a loopback figure on a shared machine.
_SAME_WITHIN = 0.05
_FAILURES_SHOWN = 10  # lines (cell and operation); results.json has every failure


def baseline_name(path: str) -> str:
    """A baseline's readable name from its path (``baseline:lancedb-local``) or short name."""
    short = path.removeprefix("baseline:")
    return _BASELINE_NAMES.get(short, short)


def ratio_words(ratio: float | None, baseline: str) -> str:
    """``service / baseline`` in words: "2.2x slower than plain LanceDB on local disk"."""
    name = baseline_name(baseline)
    if ratio is None or ratio <= 0:
        return f"no ratio against {name}"
    if abs(ratio - 1.0) <= _SAME_WITHIN:
        return f"as fast as {name}"
    if ratio > 1.0:
        return f"{ratio:.2g}x slower than {name}"
    return f"{1.0 / ratio:.2g}x faster than {name}"


def columns(lines: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, the first line a header underlined with dashes (every table
    ``run`` prints, the verdict table too)."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_baselines(rows: Iterable[dict[str, Any]]) -> str:
    """Service median, baseline median, and the service in words against the baseline.

    ``rows`` are :func:`lancesync_bench.bench.verdicts.comparison_rows` (``median_ratio``
    is service / baseline). ``n`` is the service's samples / the baseline's. A folder-copy
    tool whose start-up was timed alone also gets the ratio net of it, in brackets.
    """
    lines: list[tuple[str, ...]] = [
        (
            "scenario",
            "profile",
            "size",
            "operation",
            "n",
            "service p50",
            "baseline p50",
            "service is",
        )
    ]
    for r in sorted(
        rows, key=lambda r: (r["scenario"], r["profile"], r["size"], r["operation"], r["baseline"])
    ):
        words = ratio_words(r["median_ratio"], r["baseline"])
        net = r.get("baseline_net_p50_ms")
        base = f"{r['baseline_p50_ms']:.2f} ms"
        if net is not None:
            base += f" ({net:.2f} net of start-up)"
            if net > 0:
                net_words = ratio_words(r["service_p50_ms"] / net, r["baseline"])
                words += f" ({net_words.split(' than ')[0]} net of its start-up)"
            else:
                words += " (its start-up is all of it)"
        lines.append(
            (
                r["scenario"],
                r["profile"],
                str(r["size"]),
                r["operation"],
                f"{r.get('n_service', '?')}/{r.get('n_baseline', '?')}",
                f"{r['service_p50_ms']:.2f} ms",
                base,
                words,
            )
        )
    if len(lines) == 1:
        return "(no baseline measured an operation of the service)"
    return columns(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_sweep(rows: Iterable[dict[str, Any]]) -> str:
    """The concurrency sweep: one line per scenario, profile, size, operation, users and rate.

    ``rows`` are the sweep's summary rows (bench/sweep.py); p95 is "-" where n cannot
    support it. ``offered`` is users x rate per user, ``done`` the operations completed per
    second over the level (both kinds); a ramp level where the load stopped paying off ends
    the table with a ``knee:`` line. Empty string: no sweep ran.
    """
    rows = list(rows)
    lines: list[tuple[str, ...]] = [
        (
            "scenario",
            "profile",
            "size",
            "operation",
            "users",
            "offered/s",
            "done/s",
            "n",
            "p50 ms",
            "p95 ms",
            "late",
        )
    ]
    order = sorted(
        rows,
        key=lambda r: (
            r["scenario"],
            r["profile"],
            r["size"],
            r["operation"],
            r["users"],
            r.get("rate_per_s") or 0.0,
        ),
    )
    for r in order:
        lines.append(
            (
                r["scenario"],
                r["profile"],
                str(r["size"]),
                r["operation"],
                str(r["users"]),
                _ms(r.get("offered_per_s")),
                _ms(r.get("throughput_per_s")),
                str(r["n"]),
                _ms(r.get("p50_ms")),
                _ms(r.get("p95_ms")),
                f"{100 * float(r.get('late_share') or 0):.0f}%",
            )
        )
    if len(lines) == 1:
        return ""
    knees = {
        (r["scenario"], r["size"], r["users"], r.get("offered_per_s"), r["knee"])
        for r in rows
        if r.get("knee")
    }
    notes = [
        f"knee: {sc} at {size} rows, {users} users offered {offered:.0f} ops/s: {why}"
        for sc, size, users, offered, why in sorted(knees)
    ]
    return "\n".join([columns(lines), *notes])


def format_failures(failed: Sequence[FailedOperation]) -> str:
    """How many operations failed, then one line per cell and operation with its first error.

    Empty string: nothing failed.
    """
    if not failed:
        return ""
    groups: dict[tuple[str, str, int, str, str], list[FailedOperation]] = {}
    for f in failed:
        groups.setdefault((f.scenario, f.profile, f.size, f.operation, f.path), []).append(f)
    out = [f"{len(failed)} operation(s) FAILED and were not recorded as samples:"]
    for (scenario, profile, size, operation, path), fs in list(groups.items())[:_FAILURES_SHOWN]:
        where = f"{scenario}/{profile}/{size}"
        out.append(f"  {where} {operation} ({path}) x{len(fs)}: {fs[0].error}")
    if len(groups) > _FAILURES_SHOWN:
        out.append(f"  ... and {len(groups) - _FAILURES_SHOWN} more in results.json")
    return "\n".join(out)


def format_missing_tools(skipped: Iterable[dict[str, Any]], samples: Iterable[SampleRow]) -> str:
    """One line per folder-copy tool the run skipped because it is not installed.

    The line gives the skip reason (with its one-line install) and the time the tool would
    have added, estimated from what the installed tool's copies and start-ups took in this
    run; without one installed, that time is not known. Empty string: none missing.
    """
    missing = [r for r in skipped if r["what"] in SYNC_TOOLS and NOT_ON_PATH in str(r["reason"])]
    if not missing:
        return ""
    spent: dict[str, float] = {}
    for s in samples:
        if s["path"] in SYNC_TOOLS and s["phase"] == "warm":  # copies and start-ups
            spent[s["path"]] = spent.get(s["path"], 0.0) + s["latency_ms"] / 1000.0
    lines = []
    for r in missing:
        name = baseline_name(r["what"])
        others = {p: t for p, t in spent.items() if p != r["what"]}
        if others:
            other, seconds = next(iter(others.items()))
            cost = (
                f"it would add about {seconds:.0f} s to this run (what "
                f"{baseline_name(other)} took here)"
            )
        else:
            cost = "the time it would add is not known (no copy tool ran in this run)"
        cells = len(r.get("cells", []))
        lines.append(f"{name}: not measured in {cells} cell(s): {r['reason']}; {cost}")
    return "\n".join(lines)
