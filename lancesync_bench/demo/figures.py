"""The demo notebooks' figures: the configuration matrix, cache reads, and an outage.

Each function returns a matplotlib ``Figure`` already closed in pyplot, so a notebook shows
it exactly once (as the cell's value) and scripts can ``savefig`` it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from lancesync_bench.demo.cache import CacheDemo
from lancesync_bench.demo.configuration import matrix_frame
from lancesync_bench.demo.outage import OUTCOMES, OutageDemo

__all__ = ["MODE_COLOURS", "OUTCOME_COLOURS", "plot_cache_reads", "plot_matrix", "plot_outage"]

MODE_COLOURS: dict[str, str] = {
    "s3_primary_local_cache": "#4C72B0",
    "local_primary_s3_sync": "#55A868",
    "local_primary_s3_backup": "#DD8452",
    "local_only": "#8C8C8C",
}
OUTCOME_COLOURS: dict[str, str] = {
    "ok": "#55A868",
    "stale": "#CCB974",
    "unreachable": "#DD8452",
    "failed": "#C44E52",
}
_FRONTENDS = ("web", "desktop")
_BACKENDS = ("cloud", "local")
# Log-scale axes cannot show zero; anything faster than this is drawn at it.
_MIN_MS = 0.01


def _new_figure(width: float, height: float, rows: int = 1) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, 1, figsize=(width, height), squeeze=False, sharex=True)
    plt.close(fig)  # pyplot forgets it; the caller (or a notebook) shows it once
    return fig, axes[:, 0]


def _cell_text(row: pd.Series) -> str:
    primary = "S3" if row["S3 primary"] else "local"
    others = [
        name
        for name, on in (
            ("local cache", row["S3 primary"] and row["local cache"]),
            ("S3 sync", row["S3 sync"]),
            ("S3 backup", row["S3 backup"]),
        )
        if on
    ]
    return f"{row['storage mode']}\nprimary: {primary}; {', '.join(others)}\n{row['use case']}"


def plot_matrix(frame: pd.DataFrame | None = None) -> Any:
    """A 2x2 grid, frontend by backend, each cell coloured by its storage mode."""
    from matplotlib.patches import Patch, Rectangle

    frame = matrix_frame() if frame is None else frame
    fig, (ax,) = _new_figure(9, 4.6)
    for _, row in frame.iterrows():
        x = _BACKENDS.index(row["backend"])
        y = _FRONTENDS.index(row["frontend"])
        colour = MODE_COLOURS[row["storage mode"]]
        ax.add_patch(Rectangle((x, y), 1, 1, facecolor=colour, edgecolor="white", linewidth=4))
        ax.text(
            x + 0.5,
            y + 0.5,
            _cell_text(row),
            ha="center",
            va="center",
            color="white",
            fontsize=10,
            linespacing=1.6,
        )
    ax.set_xlim(0, 2)
    ax.set_ylim(2, 0)
    ax.set_xticks([0.5, 1.5], [f"backend: {b}" for b in _BACKENDS])
    ax.set_yticks([0.5, 1.5], [f"frontend: {f}" for f in _FRONTENDS])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    modes = list(dict.fromkeys(frame["storage mode"]))
    handles = [Patch(facecolor=MODE_COLOURS[m], label=m) for m in modes]
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.08),
        ncol=len(modes),
        frameon=False,
    )
    ax.set_title("Storage mode by frontend type and backend location")
    fig.tight_layout()
    return fig


def plot_cache_reads(demo: CacheDemo) -> Any:
    """S3 requests per read at each step of the cache demo, stacked by request kind."""
    reads = demo.reads
    fig, (ax,) = _new_figure(9, 3.8)
    labels = list(reads.index)
    left = [0.0] * len(labels)
    for kind, colour in (("GET", "#4C72B0"), ("LIST", "#55A868"), ("other", "#8C8C8C")):
        values = [float(v) for v in reads[kind]]
        ax.barh(labels, values, left=left, color=colour, label=kind)
        left = [a + b for a, b in zip(left, values, strict=True)]
    for y, (total, found) in enumerate(zip(left, reads["found"], strict=True)):
        ax.text(total, y, f"  {total:g} (found {found})", va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, max(left) * 1.35 + 1)
    ax.set_xlabel("S3 requests per read (counted by the proxy)")
    ax.set_title(
        f"S3-primary reads through the local cache (staleness bound {demo.staleness_ms} ms)"
    )
    ax.legend(loc="lower right", frameon=False)
    fig.tight_layout()
    return fig


def plot_outage(demo: OutageDemo) -> Any:
    """Each step of the outage demo as a bar of its duration, coloured by outcome.

    Steps taken while the S3 path was cut sit on a grey band.
    """
    from matplotlib.patches import Patch

    panels = (
        ("local primary (sync mode)", demo.local_primary),
        ("S3 primary (local cache)", demo.s3_primary),
    )
    height = 1.4 + 0.32 * sum(len(frame) for _, frame in panels)
    fig, axes = _new_figure(10, height, rows=2)
    for ax, (title, frame) in zip(axes, panels, strict=True):
        labels = list(frame.index)
        for y, cut in enumerate(frame["S3 path"] == "cut"):
            if cut:
                ax.axhspan(y - 0.5, y + 0.5, color="#E5E5E5", zorder=0)
        colours = [OUTCOME_COLOURS[o] for o in frame["outcome"]]
        widths = [max(float(ms), _MIN_MS) for ms in frame["ms"]]
        ax.barh(labels, widths, color=colours, zorder=2)
        for y, (width, ms) in enumerate(zip(widths, frame["ms"], strict=True)):
            shown = f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}"
            ax.text(width, y, f" {shown} ms", va="center", fontsize=8, zorder=3)
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_title(title, loc="left")
    every = [max(float(ms), _MIN_MS) for _, frame in panels for ms in frame["ms"]]
    # Room on the right for the longest bar's label (a log axis: a factor, not a sum).
    axes[-1].set_xlim(min(every) / 1.5, max(every) * 6)
    axes[-1].set_xlabel("duration of the call, ms (log scale); grey band: S3 path cut")
    handles = [Patch(facecolor=OUTCOME_COLOURS[o], label=o) for o in OUTCOMES]
    fig.legend(handles=handles, loc="upper right", frameon=False, ncol=len(OUTCOMES))
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig
