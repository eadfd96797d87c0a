"""From raw samples to statistics rows, and from statistics to verdicts against the targets."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lancesync_bench.bench.baselines import TOOL_START
from lancesync_bench.bench.probe import REFERENCE_PATH
from lancesync_bench.bench.summary import columns
from lancesync_bench.config import DEFAULT_CACHE_MAX_STALENESS_MS, StorageMode
from lancesync_bench.intervals import (
    CONFIDENCE,
    Interval,
    interval_min_samples,
    judge_interval,
    judge_recall,
    percentile_interval,
)
from lancesync_bench.results import SampleRow, StatsRow, VerdictRow
from lancesync_bench.scenarios import Scenario
from lancesync_bench.stats import (
    SLOWED,
    Summary,
    compare,
    steady,
    steady_status,
    summarize,
)

__all__ = [
    "comparison_rows",
    "format_machine_noise",
    "format_verdicts",
    "machine_noise",
    "recall_rows",
    "stats_rows",
    "targets_for",
    "verdict_rows",
]

_KEY = ("scenario", "storage_mode", "profile", "size", "operation", "path", "phase")


def stats_rows(samples: Iterable[SampleRow]) -> list[StatsRow]:
    """One summary per (scenario, mode, profile, size, operation, path, phase).

    Each row also counts the samples taken while the machine was slowed and gives the
    percentiles of the steady rest (:func:`lancesync_bench.stats.steady`); the summary
    itself is of every sample. p50, p95 and p99 carry their 95% intervals
    (:func:`lancesync_bench.stats.percentile_interval`; None where n is too small).
    """
    groups: dict[tuple[object, ...], list[SampleRow]] = defaultdict(list)
    for s in samples:
        groups[tuple(s[k] for k in _KEY)].append(s)  # type: ignore[literal-required]
    rows: list[StatsRow] = []
    for key, members in groups.items():
        values_ns = [round(m["latency_ms"] * 1e6) for m in members]
        summary = summarize(values_ns)
        noise = steady(values_ns, [m.get("machine_slowdown") for m in members])
        fields = dict(zip(_KEY, key, strict=True))
        cis: dict[str, float | None] = {}
        for q in (50, 95, 99):
            ci = percentile_interval(values_ns, q)
            cis[f"p{q}_ci_low_ms"] = None if ci is None else ci.low
            cis[f"p{q}_ci_high_ms"] = None if ci is None else ci.high
        rows.append(
            StatsRow(**fields, **summary.as_dict(), **noise.as_dict(), **cis)  # type: ignore[typeddict-item]
        )
    return rows


def machine_noise(samples: Iterable[SampleRow]) -> dict[str, Any]:
    """The run's machine noise: probed samples, how many were slowed, and their share.

    ``slowed_share`` is None when no sample was probed.
    """
    rows = list(samples)
    figures = [s.get("machine_slowdown") for s in rows]
    probed = [f for f in figures if f is not None]
    slowed = sum(f >= SLOWED for f in probed)
    job = [
        round(s["latency_ms"] * 1e6)
        for s in rows
        if s["path"] == REFERENCE_PATH and s["phase"] != "warmup"
    ]
    return {
        "threshold": SLOWED,
        "probed_n": len(probed),
        "slowed_n": slowed,
        "slowed_share": slowed / len(probed) if probed else None,
        "reference_job": summarize(job).as_dict() if job else None,
    }


def format_machine_noise(noise: dict[str, Any]) -> str:
    """One line for people from :func:`machine_noise`."""
    if not noise["probed_n"]:
        return "machine noise: not measured (no sample was taken with the CPU probe)"
    line = (
        f"machine noise: {noise['slowed_n']} of {noise['probed_n']} samples "
        f"({100 * noise['slowed_share']:.1f} %) ran with the CPU at half speed or worse "
        f"(machine_slowdown >= {noise['threshold']:g})"
    )
    job = noise.get("reference_job")
    if job:
        shown = ", ".join(
            f"{name} {job[f'{name}_ms']:.1f} ms"
            for name in ("p50", "p95", "p99")
            if job.get(f"{name}_ms") is not None
        )
        line += (
            f"\nreference job (the same CPU work every time, n={job['n']}): {shown}; a tail"
            " target tighter than this job's own tail cannot be judged on this machine"
        )
    return line


def targets_for(mode: str, operation: str, path: str, size: int, scenario: Scenario) -> list[str]:
    """The target names a figure is held against (empty: informational only).

    Local-primary modes read and write locally: the local targets apply. The S3-primary
    mode writes to S3 (the S3 band) and reads from its cache (the local read target); a
    read that has to fetch a new version from S3 is an S3 read.
    """
    if path != "service":
        return []
    s3_primary = mode == StorageMode.S3_PRIMARY_LOCAL_CACHE.value
    names: list[str] = []
    if operation in ("add_1", "add_batch"):
        names += ["s3_write", "s3_write_p95"] if s3_primary else ["local_write"]
    elif operation == "point_read":
        names += ["local_read", "local_point_read"]
    elif operation == "vector_search" or operation.startswith("vector_search_"):
        # vector_search_<data>: the same search on a [recall] hard set, judged alike.
        names.append("local_read")
        if size == scenario.targets.vector_top10_size:
            names.append("vector_top10")
    elif operation in ("miss_read", "fresh_read"):
        names += ["s3_read", "s3_read_p95"]
    return names


def _staleness_note(mode: str, operation: str, scenario: Scenario) -> str:
    """For the S3-primary mode's cached reads: the staleness bound they were measured under
    (within it a read asks S3 nothing), and where the same read without one is."""
    if mode != StorageMode.S3_PRIMARY_LOCAL_CACHE.value or not (
        operation == "point_read" or operation.startswith("vector_search")
    ):
        return ""
    bound = scenario.env.get("CACHE_MAX_STALENESS_MS", str(DEFAULT_CACHE_MAX_STALENESS_MS))
    return (
        f"; cached, CACHE_MAX_STALENESS_MS={bound}: reads within it ask S3 nothing "
        "(fresh_read: the same read at 0)"
    )


def verdict_rows(stats: Iterable[StatsRow], scenarios: dict[str, Scenario]) -> list[VerdictRow]:
    """Every warm service figure that a target applies to, judged."""
    rows: list[VerdictRow] = []
    for st in stats:
        if st["phase"] != "warm":
            continue
        scenario = scenarios[st["scenario"]]
        available = scenario.targets.as_targets()
        for name in targets_for(
            st["storage_mode"], st["operation"], st["path"], st["size"], scenario
        ):
            target = available[name]
            summary = Summary(
                n=st["n"],
                mean_ms=st["mean_ms"] or 0.0,
                min_ms=st["min_ms"] or 0.0,
                p50_ms=st["p50_ms"],
                p95_ms=st["p95_ms"],
                p99_ms=st["p99_ms"],
                max_ms=st["max_ms"] or 0.0,
            )
            cis: dict[str, Any] = dict(st)
            low, high = cis.get(f"{target.stat}_ci_low_ms"), cis.get(f"{target.stat}_ci_high_ms")
            ci = None if low is None or high is None else Interval(low, high)
            v = judge_interval(summary, target, ci, profile=st["profile"])
            note = v.note + _staleness_note(st["storage_mode"], st["operation"], scenario)
            # Only p95 and p99 have a steady figure: the targets judged there are the ones a
            # few slowed samples can tip over.
            by_stat = {"p95": st.get("steady_p95_ms"), "p99": st.get("steady_p99_ms")}
            steady_value = by_stat.get(target.stat)
            rows.append(
                VerdictRow(
                    scenario=st["scenario"],
                    storage_mode=st["storage_mode"],
                    profile=st["profile"],
                    size=st["size"],
                    operation=st["operation"],
                    path=st["path"],
                    target=name,
                    criterion=target.describe(),
                    status=v.status,
                    value_ms=v.value_ms,
                    note=note,
                    n=st["n"],
                    slowed_n=st.get("slowed_n"),
                    steady_value_ms=steady_value,
                    steady_status=steady_status(
                        v.status, target, steady_value, profile=st["profile"]
                    ),
                    unit="ms",
                    value=v.value_ms,
                    ci_low=None if ci is None else ci.low,
                    ci_high=None if ci is None else ci.high,
                    confidence=CONFIDENCE,
                    target_source=scenario.target_source(name),
                )
            )
    return rows


def recall_rows(
    cells: Iterable[dict[str, Any]], scenarios: dict[str, Scenario]
) -> list[VerdictRow]:
    """recall@10 of every timed vector search (a cell's ``recall`` extras), judged.

    PASS when the whole bootstrap interval of the mean recall is at or above the scenario's
    ``recall_at_10`` target, FAIL when it is wholly below, UNSURE otherwise.
    """
    rows: list[VerdictRow] = []
    for cell in cells:
        scenario = scenarios[cell["scenario"]]
        minimum = scenario.targets.recall_at_10
        for r in cell.get("recall", []):
            ci = None if r["ci_low"] is None else Interval(r["ci_low"], r["ci_high"])
            status = judge_recall(r["mean"], ci, minimum)
            shown = f"recall@10 {r['mean']:.3f}"
            note = f"{shown} ({ci.describe('recall')})" if ci else f"{shown} (no interval)"
            rows.append(
                VerdictRow(
                    scenario=cell["scenario"],
                    storage_mode=scenario.storage_mode.value,
                    profile=cell["profile"],
                    size=cell["size"],
                    operation=r["operation"],
                    path="service",
                    target="recall_at_10",
                    criterion=f"recall@10 >= {minimum:g}",
                    status=status,
                    value_ms=None,
                    note=f"{note} vs >= {minimum:g} on {r['data']}",
                    n=r["queries"],
                    unit="recall",
                    value=r["mean"],
                    ci_low=None if ci is None else ci.low,
                    ci_high=None if ci is None else ci.high,
                    confidence=CONFIDENCE,
                    target_source=scenario.target_source("recall_at_10"),
                    data=r["data"],
                )
            )
    return rows


def _machine_explains(r: VerdictRow) -> bool:
    """A FAIL whose steady samples alone meet the target: the slowed machine explains it."""
    return r["status"] == "FAIL" and r.get("steady_status") in ("PASS", "BELOW")


def _verdict_text(r: VerdictRow) -> str:
    stat = r["criterion"].split(" ", 1)[0]  # Target.describe() starts with the statistic
    if _machine_explains(r):
        return (
            f"FAIL (machine: {r.get('slowed_n')}/{r.get('n')} samples slowed; "
            f"steady {stat} {r.get('steady_value_ms') or 0.0:.2f} ms)"
        )
    too_few = r.get("steady_value_ms") is None and bool(r.get("slowed_n"))
    if r["status"] == "FAIL" and stat in ("p95", "p99") and too_few:
        # Slowed samples, but too few steady ones left for the percentile: say so, rather
        # than let a bare FAIL read as "the machine was not the cause".
        return f"FAIL (steady {stat}: too few steady samples)"
    if r["status"] == "UNSURE" and "ci_low" in r and r.get("ci_low") is None:
        return "UNSURE (n too small)"
    if r.get("unit") == "recall" and r.get("data"):
        return f"{r['status']} (on {r.get('data')})"  # recall is stated with its data
    return r["status"]


def _value_text(r: VerdictRow) -> str:
    if r.get("unit") == "recall":
        value = r.get("value")
        return "-" if value is None else f"{value:.3f}"
    return "-" if r["value_ms"] is None else f"{r['value_ms']:.2f} ms"


def _interval_text(r: VerdictRow) -> str:
    """The interval column: ``3.90-5.10 ms``, ``0.412-0.471``, ``n too small`` or ``-``."""
    if "ci_low" not in r:
        return "-"  # an older run: no interval was computed
    low, high = r.get("ci_low"), r.get("ci_high")
    if low is None or high is None:
        return "n too small"
    if r.get("unit") == "recall":
        return f"{low:.3f}-{high:.3f}"
    return f"{low:.2f}-{high:.2f} ms"


def _source_text(r: VerdictRow) -> str:
    source = r.get("target_source") or "default"
    return source if source == "default" else Path(source).name


_INTERVAL_LEGEND = (
    f"95% CI: distribution-free interval of the judged percentile (recall: bootstrap over "
    f"queries). PASS: the whole interval meets the target; FAIL: the whole interval misses "
    f"it; UNSURE: it straddles the target, or n is too small for an interval (p95 needs "
    f"{interval_min_samples(95)}, p99 {interval_min_samples(99)} samples). source: default "
    f"(the spec) or the scenario file whose [targets] set it."
)
_LEGEND = (
    f"slowed: samples taken while the CPU ran at half speed or worse (machine_slowdown >= "
    f"{SLOWED:g}); FAIL (machine: ...): missed on all samples, met on the steady ones alone "
    "- still a FAIL."
)


def format_verdicts(rows: Iterable[VerdictRow]) -> str:
    """A plain-text verdict table (one line per scenario x operation x profile x target).

    When the rows carry machine noise, a ``slowed`` column gives the slowed samples out of
    all, a FAIL the steady samples alone would pass is marked ``FAIL (machine: ...)``, and a
    legend line follows the table. The verdict itself is never changed.
    """
    rows = sorted(rows, key=lambda r: (r["scenario"], r["profile"], r["size"], r["operation"]))
    noisy = any(r.get("slowed_n") is not None for r in rows)
    header = ["scenario", "profile", "size", "operation", "target", "criterion", "value"]
    lines = [(*header, "95% CI", *(["slowed"] if noisy else []), "source", "verdict")]
    for r in rows:
        value = _value_text(r)
        slowed = r.get("slowed_n")
        noise = ["-" if slowed is None else f"{slowed}/{r.get('n')}"] if noisy else []
        lines.append(
            (
                r["scenario"],
                r["profile"],
                str(r["size"]),
                r["operation"],
                r["target"],
                r["criterion"],
                value,
                _interval_text(r),
                *noise,
                _source_text(r),
                _verdict_text(r),
            )
        )
    table = f"{columns(lines)}\n{_INTERVAL_LEGEND}"
    return f"{table}\n{_LEGEND}" if noisy else table


_PAIR = ("scenario", "storage_mode", "profile", "size", "operation")


def _median(values: list[int | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.median(known)) if known else None


def comparison_rows(samples: Iterable[SampleRow]) -> list[dict[str, Any]]:
    """Service against each baseline, per (scenario, mode, profile, size, operation).

    Only warm samples count, and only operations both paths measured in the same cell.
    ``median_ratio`` and ``p95_ratio`` are service / baseline (above 1: the service is
    slower); ``p_value`` (Mann-Whitney) and the bootstrap CI of the median ratio come from
    :func:`lancesync_bench.stats.compare` and are None when either side has too few samples.
    Median S3 requests and bytes per operation are given for both sides (None: not counted).
    A folder-copy tool whose start-up alone was timed in the same cell (``tool_start``)
    also gets ``baseline_start_p50_ms`` and ``baseline_net_p50_ms``: its median copy less
    its median start-up, the transfer a long-running process would pay (None otherwise).
    """
    groups: dict[tuple[object, ...], dict[str, list[SampleRow]]] = defaultdict(
        lambda: defaultdict(list)
    )
    starts: dict[tuple[object, ...], list[float]] = defaultdict(list)
    for s in samples:
        if s["phase"] != "warm":
            continue
        key = tuple(s[k] for k in _PAIR)  # type: ignore[literal-required]
        if s["operation"] == TOOL_START:
            starts[(*key[:-1], s["path"])].append(s["latency_ms"])
        else:
            groups[key][s["path"]].append(s)
    rows: list[dict[str, Any]] = []
    for key, by_path in groups.items():
        service = by_path.get("service")
        if not service:
            continue
        for path in sorted(p for p in by_path if p.startswith("baseline:")):
            base = by_path[path]
            start = starts.get((*key[:-1], path))
            start_p50 = float(np.median(start)) if start else None
            base_p50 = float(np.median([b["latency_ms"] for b in base]))
            cmp = compare(
                [round(b["latency_ms"] * 1e6) for b in base],
                [round(s["latency_ms"] * 1e6) for s in service],
            )
            rows.append(
                {
                    **dict(zip(_PAIR, key, strict=True)),
                    "baseline": path,
                    "n_service": cmp.n_b,
                    "n_baseline": cmp.n_a,
                    "service_p50_ms": float(np.median([s["latency_ms"] for s in service])),
                    "baseline_p50_ms": base_p50,
                    "baseline_start_p50_ms": start_p50,
                    "baseline_net_p50_ms": None if start_p50 is None else base_p50 - start_p50,
                    "median_ratio": cmp.median_ratio,
                    "p95_ratio": cmp.p95_ratio,
                    "ci_low": cmp.ci_low,
                    "ci_high": cmp.ci_high,
                    "p_value": cmp.p_value,
                    "service_requests": _median([s["requests"] for s in service]),
                    "baseline_requests": _median([b["requests"] for b in base]),
                    "service_bytes": _median([s["bytes"] for s in service]),
                    "baseline_bytes": _median([b["bytes"] for b in base]),
                }
            )
    return rows
