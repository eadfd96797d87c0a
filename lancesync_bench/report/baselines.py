"""The service against the tools a user might script instead (``baseline:<name>`` paths)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from lancesync_bench.bench.summary import baseline_name
from lancesync_bench.report.data import ReportData, operation_sort_key
from lancesync_bench.report.panels import bottom_legend
from lancesync_bench.report.style import CAVEAT, OKABE_ITO, new_figure
from lancesync_bench.report.tables import baseline_ratios

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["baseline_figure", "ratio_label"]

# Vertical space, in inches (the y axis is drawn in inches): one bar, and the gap between
# rows. Tick labels at 9 pt need ~0.15 in; a row of one bar gets 0.34 in.
_BAR_IN = 0.2
_GAP_IN = 0.14
# Ticks at 1-2-5 fit a 5.5-inch panel up to ~3 decades; beyond, decades only.
_DENSE_DECADES = 3.0


def ratio_label(ratio: float) -> str:
    """A service / baseline ratio in words: "2.2x slower", "1.3x faster", "same"."""
    if abs(ratio - 1.0) <= 0.05:  # within the run-to-run spread of a loopback median
        return "same"
    return f"{ratio:.2g}x slower" if ratio > 1 else f"{1 / ratio:.2g}x faster"


def _rows(ratios: pd.DataFrame) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Row labels in reading order, the baselines each row has, and every row's label."""
    triples = [
        (str(sc), str(op), int(size))
        for sc, op, size in zip(ratios["scenario"], ratios["label"], ratios["size"], strict=True)
    ]
    keys = sorted(set(triples), key=lambda k: (k[0], operation_sort_key(k[1]), k[2]))
    rows = [f"{sc}: {op}, {size:,} rows" for sc, op, size in keys]
    labels = [rows[keys.index(t)] for t in triples]
    in_row = {
        row: sorted({str(b) for b, r in zip(ratios["baseline"], labels, strict=True) if r == row})
        for row in rows
    }
    return rows, in_row, labels


def _ratio_axis(ax: Axes, low: float, high: float) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.set_xlim(low, high)
    dense = math.log10(high / low) <= _DENSE_DECADES
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if dense else (1.0,)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0) if not dense else (3.0,)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(axis="x", which="both", alpha=0.25)


def baseline_figure(data: ReportData) -> Figure | None:
    """How the service's median compares with each baseline's, per operation, in words.

    The ratio is service / baseline, as in ``run``'s table: right of 1 the service is
    slower, left of it faster; each bar is labelled "2.2x slower" or "1.3x faster". One
    panel per network profile. None: no baseline shares an operation with the service.
    """
    from matplotlib.patches import Patch

    ratios = baseline_ratios(data)
    if ratios.empty:
        return None
    rows, in_row, labels = _rows(ratios)
    ratios = ratios.assign(row=labels)
    baselines = sorted(ratios["baseline"].unique())
    profiles = [p for p in data.profiles() if p in set(ratios["profile"])]
    # Each row is as tall as its bars (sync rows have two tools, read rows one baseline).
    heights = [len(in_row[row]) * _BAR_IN + _GAP_IN for row in rows]
    tops = [sum(heights[:i]) for i in range(len(rows))]
    total = sum(heights)
    fig = new_figure(5.0 * len(profiles) + 3.0, total + 1.9)
    axes = fig.subplots(1, len(profiles), squeeze=False, sharey=True)[0]
    low = min(1.0, float(ratios["ratio"].min())) / 4  # room for the labels at both ends
    high = max(1.0, float(ratios["ratio"].max())) * 4
    for ax, profile in zip(axes, profiles, strict=True):
        here = ratios[ratios["profile"] == profile]
        for _, r in here.iterrows():
            names = in_row[r["row"]]
            i = rows.index(r["row"])
            y = tops[i] + _GAP_IN / 2 + _BAR_IN * (names.index(r["baseline"]) + 0.5)
            ratio = float(r["ratio"])
            color = OKABE_ITO[baselines.index(r["baseline"]) % len(OKABE_ITO)]
            # Bars grow from 1 (same speed) towards the ratio, either way.
            ax.barh(y, ratio - 1.0, left=1.0, height=_BAR_IN * 0.85, color=color)
            ax.text(
                ratio,
                y,
                f" {ratio_label(ratio)} ",
                va="center",
                fontsize=7.5,
                ha="left" if ratio >= 1 else "right",
            )
        ax.axvline(1.0, color="#333333", linewidth=1)
        _ratio_axis(ax, low, high)
        ax.set_title(profile, fontsize=10, loc="left")
        ax.set_xlabel("service median / baseline median (log scale)", fontsize=9)
        ax.text(1.0, -0.05, " service slower \u2192", fontsize=8, ha="left", va="bottom")
        ax.text(1.0, -0.05, "\u2190 service faster ", fontsize=8, ha="right", va="bottom")
    axes[0].set_yticks([t + h / 2 for t, h in zip(tops, heights, strict=True)], rows)
    axes[0].tick_params(axis="y", labelsize=9, length=0)
    axes[0].set_ylim(total, -0.3)  # first row at the top; room for the direction words
    for ax in axes:
        for t in tops[1:]:
            ax.axhline(t, color="#DDDDDD", linewidth=0.6, zorder=0)
    fig.suptitle(
        f"The service against what a user could run instead, same operation and table "
        f"(run {data.run_id})\n{CAVEAT}",
        fontsize=11,
    )
    handles: list[Artist] = [
        Patch(color=OKABE_ITO[j % len(OKABE_ITO)], label=baseline_name(name))
        for j, name in enumerate(baselines)
    ]
    bottom_legend(fig, handles, max_columns=4)
    return fig
