"""From raw samples to statistics rows, and from statistics to verdicts against the targets."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from lancesync_bench.config import StorageMode
from lancesync_bench.results import SampleRow, StatsRow, VerdictRow
from lancesync_bench.scenarios import Scenario
from lancesync_bench.stats import Summary, judge, summarize

__all__ = ["format_verdicts", "stats_rows", "targets_for", "verdict_rows"]

_KEY = ("scenario", "storage_mode", "profile", "size", "operation", "path", "phase")


def stats_rows(samples: Iterable[SampleRow]) -> list[StatsRow]:
    """One summary per (scenario, mode, profile, size, operation, path, phase)."""
    groups: dict[tuple[object, ...], list[float]] = defaultdict(list)
    for s in samples:
        groups[tuple(s[k] for k in _KEY)].append(s["latency_ms"])  # type: ignore[literal-required]
    rows: list[StatsRow] = []
    for key, values in groups.items():
        summary = summarize([round(v * 1e6) for v in values])
        fields = dict(zip(_KEY, key, strict=True))
        rows.append(StatsRow(**fields, **summary.as_dict()))  # type: ignore[typeddict-item]
    return rows


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
        names.append("s3_write" if s3_primary else "local_write")
    elif operation == "point_read":
        names += ["local_read", "local_point_read"]
    elif operation == "vector_search":
        names.append("local_read")
        if size == scenario.targets.vector_top10_size:
            names.append("vector_top10")
    elif operation == "miss_read":
        names.append("s3_read")
    return names


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
            v = judge(summary, target, profile=st["profile"])
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
                    note=v.note,
                )
            )
    return rows


def format_verdicts(rows: Iterable[VerdictRow]) -> str:
    """A plain-text verdict table (one line per scenario x operation x profile x target)."""
    header = ("scenario", "profile", "size", "operation", "target", "criterion", "value", "verdict")
    lines = [header]
    for r in sorted(rows, key=lambda r: (r["scenario"], r["profile"], r["size"], r["operation"])):
        value = "-" if r["value_ms"] is None else f"{r['value_ms']:.2f} ms"
        lines.append(
            (
                r["scenario"],
                r["profile"],
                str(r["size"]),
                r["operation"],
                r["target"],
                r["criterion"],
                value,
                r["status"],
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
