"""What each millisecond of vector search buys: latency against recall@10.

One panel per (scenario, table size) that ran the plain-LanceDB search-parameter sweep
(:mod:`lancesync_bench.bench.search_sweep`): one line per dataset through its settings
(nprobes rising; filled markers without refine, open markers with it), median latency on
x, mean recall@10 on y with its 95% interval. The service's own figure on the same data
(its fixed search setting) is a star, and the recall target a dashed line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lancesync_bench.report.data import ReportData
from lancesync_bench.report.style import MARKERS, color_for, log_ms_axis, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["recall_figure", "sweep_points"]


def sweep_points(data: ReportData) -> list[dict[str, Any]]:
    """Every sweep setting of the run, each with the scenario and size of its cell."""
    cells = (data.envelope.get("extra") or {}).get("cells") or []
    return [
        {**p, "scenario": c.get("scenario"), "size": c.get("size")}
        for c in cells
        if isinstance(c, Mapping)
        for p in c.get("search_sweep") or []
    ]


def _service_points(data: ReportData, scenario: str, size: int) -> dict[str, tuple[float, float]]:
    """(median ms, recall) of the service's vector search per dataset in that cell."""
    cells = (data.envelope.get("extra") or {}).get("cells") or []
    frame = data.timed()
    out: dict[str, tuple[float, float]] = {}
    for c in cells:
        if c.get("scenario") != scenario or c.get("size") != size:
            continue
        for r in c.get("recall") or []:
            rows = frame[
                (frame["scenario"] == scenario)
                & (frame["size"] == size)
                & (frame["profile"] == c.get("profile"))
                & (frame["operation"] == r["operation"])
            ]
            if len(rows):
                out.setdefault(r["dataset"], (float(rows["latency_ms"].median()), r["mean"]))
    return out


def recall_figure(data: ReportData) -> Figure | None:
    """Latency (p50) against recall@10 over the sweep's settings; None without a sweep."""
    points = sweep_points(data)
    if not points:
        return None
    panels = sorted({(str(p["scenario"]), int(p["size"])) for p in points})
    datasets = sorted({str(p["dataset"]) for p in points})
    target = data.targets().recall_at_10
    fig = new_figure(max(6.5 * len(panels) + 1.0, 9.0), 5.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (scenario, size) in zip(axes, panels, strict=True):
        mine = [p for p in points if p["scenario"] == scenario and p["size"] == size]
        for d in datasets:
            color = color_for(d, datasets)
            marker = MARKERS[datasets.index(d) % len(MARKERS)]
            for refine in sorted({int(p["refine_factor"]) for p in mine}):
                line = sorted(
                    (p for p in mine if p["dataset"] == d and p["refine_factor"] == refine),
                    key=lambda p: int(p["nprobes"]),
                )
                if not line:
                    continue
                xs = [float(p["p50_ms"]) for p in line]
                ys = [float(p["recall_at_10"]) for p in line]
                low = [y - float(p["recall_ci_low"] or y) for p, y in zip(line, ys, strict=True)]
                high = [float(p["recall_ci_high"] or y) - y for p, y in zip(line, ys, strict=True)]
                label = f"{line[0]['data']}; " + (f"refine {refine}" if refine else "no refine")
                ax.errorbar(
                    xs,
                    ys,
                    yerr=[low, high],
                    color=color,
                    marker=marker,
                    markerfacecolor=color if not refine else "white",
                    linestyle="-" if not refine else "--",
                    capsize=2,
                    label=label,
                )
                for p, x, y in zip(line, xs, ys, strict=True):
                    ax.annotate(
                        str(p["nprobes"]),
                        (x, y),
                        textcoords="offset points",
                        xytext=(4, -10 if refine else 4),
                        fontsize=7,
                        color=color,
                    )
            star = _service_points(data, scenario, size).get(d)
            if star is not None:
                ax.plot(
                    *star,
                    marker="*",
                    markersize=14,
                    color=color,
                    markeredgecolor="black",
                    linestyle="none",
                    label=f"service on {d} (its own setting)",
                )
        ax.axhline(target, color="#333333", linestyle=":", linewidth=1)
        ax.annotate(
            f"recall target {target:g}",
            (0.01, target),
            xycoords=("axes fraction", "data"),
            xytext=(0, 3),
            textcoords="offset points",
            fontsize=8,
        )
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.03)
        log_ms_axis(ax)
        ax.set_xlabel("median latency per top-10 search, ms (log)")
        ax.set_ylabel("mean recall@10 (95% CI)")
        partitions = mine[0].get("partitions")
        ax.set_title(
            f"{scenario}: {size:,} rows, IVF_FLAT {partitions} partitions; labels: nprobes",
            fontsize=10,
            loc="left",
        )
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"What each ms of vector search buys (run {data.run_id})\nplain LanceDB over nprobes"
        " x refine_factor on the cell's data; star: the service's own search",
        fontsize=11,
    )
    return fig
