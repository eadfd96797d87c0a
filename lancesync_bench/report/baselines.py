"""The service against the tools a user might script instead (``baseline:<name>`` paths)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lancesync_bench.report.data import ReportData, operation_sort_key
from lancesync_bench.report.style import CAVEAT, OKABE_ITO, TIMES, new_figure
from lancesync_bench.report.tables import baseline_ratios

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure

__all__ = ["baseline_figure"]


def baseline_figure(data: ReportData) -> Figure | None:
    """How many times longer each baseline takes than the service, per operation.

    One panel per network profile; bars on a log axis from 1 (same speed): right of the
    line the service is faster. None: no baseline shares an operation with the service.
    """
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ratios = baseline_ratios(data)
    if ratios.empty:
        return None
    # One row per scenario, operation and table size: two sizes on one row would overdraw.
    triples = [
        (str(sc), str(op), int(size))
        for sc, op, size in zip(ratios["scenario"], ratios["label"], ratios["size"], strict=True)
    ]
    keys = sorted(set(triples), key=lambda k: (k[0], operation_sort_key(k[1]), k[2]))
    rows = [f"{sc}: {op}, {size:,} rows" for sc, op, size in keys]
    ratios = ratios.assign(row=[rows[keys.index(t)] for t in triples])
    baselines = sorted(ratios["baseline"].unique())
    profiles = [p for p in data.profiles() if p in set(ratios["profile"])]
    # Bars dodge only among the baselines a row has (sync tools measure backups, plain
    # LanceDB reads and writes), so every row's bars sit centred on its label.
    in_row = {row: sorted(set(ratios.loc[ratios["row"] == row, "baseline"])) for row in rows}
    most = max(len(names) for names in in_row.values())
    fig = new_figure(5.5 * len(profiles) + 1.5, len(rows) * (0.3 * most + 0.25) + 2.0)
    axes = fig.subplots(1, len(profiles), squeeze=False, sharey=True)[0]
    low = min(1.0, float(ratios["ratio"].min()))
    high = max(1.0, float(ratios["ratio"].max()))
    for ax, profile in zip(axes, profiles, strict=True):
        here = ratios[ratios["profile"] == profile]
        for j, name in enumerate(baselines):
            color = OKABE_ITO[j % len(OKABE_ITO)]
            for _, r in here[here["baseline"] == name].iterrows():
                names = in_row[r["row"]]
                height = 0.8 / len(names)
                y = rows.index(r["row"]) - 0.4 + height * (names.index(name) + 0.5)
                ratio = float(r["ratio"])
                # Bars grow from 1 (same speed) towards the ratio, either way.
                ax.barh(y, ratio - 1.0, left=1.0, height=min(height * 0.9, 0.5), color=color)
                ax.text(
                    ratio,
                    y,
                    f" {TIMES}{ratio:.3g} ",
                    va="center",
                    fontsize=7,
                    ha="left" if ratio >= 1 else "right",
                )
        ax.axvline(1.0, color="#333333", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlim(low / 2.5, high * 2.5)  # room for the printed ratios at both ends
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(f"{profile}", fontsize=10, loc="left")
        ax.set_xlabel(f"baseline median / service median ({TIMES}, log scale)")
        ax.text(1.0, -0.55, " baseline slower \u2192", fontsize=8, ha="left", va="bottom")
        ax.text(1.0, -0.55, "\u2190 baseline faster ", fontsize=8, ha="right", va="bottom")
    axes[0].set_yticks(range(len(rows)), rows)
    axes[0].set_ylim(len(rows) - 0.5, -1.1)
    fig.suptitle(
        f"Service vs baselines, same operation and table (run {data.run_id})\n{CAVEAT}",
        fontsize=11,
    )
    handles: list[Artist] = [
        Patch(color=OKABE_ITO[j % len(OKABE_ITO)], label=f"baseline: {name}")
        for j, name in enumerate(baselines)
    ]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), 4),
        frameon=False,
        fontsize=9,
    )
    return fig
