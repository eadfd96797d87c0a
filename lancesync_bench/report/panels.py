"""Shared scaffolding of the per-scenario figures: panels, titles, grids, legends."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from lancesync_bench.report.data import ReportData, operation_sort_key, pick_size
from lancesync_bench.report.style import MARKERS, color_for, log_ms_axis, new_figure

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "MS_LOG",
    "bottom_legend",
    "finish_operation_panel",
    "grid",
    "panel_title",
    "profile_handles",
    "profile_label",
    "scenario_grid",
    "scenario_panels",
]

MS_LOG = "latency (ms, log scale)"


def scenario_panels(
    frame: pd.DataFrame, size: int | None
) -> Iterator[tuple[str, int, pd.DataFrame, list[str]]]:
    """(scenario, size, samples, operation labels in reading order) per scenario."""
    for scenario in sorted(frame["scenario"].unique()):
        f = frame[frame["scenario"] == scenario]
        chosen = size if size is not None else pick_size(f)
        f = f[f["size"] == chosen]
        if not f.empty:
            yield str(scenario), chosen, f, sorted(f["label"].unique(), key=operation_sort_key)


def panel_title(scenario: str, size: int, f: pd.DataFrame) -> str:
    """The panel title: scenario, storage mode and table size."""
    return f"{scenario}  ({f['storage_mode'].iloc[0]}, {size:,} rows)"


def profile_label(data: ReportData, profile: str) -> str:
    """A profile with its round-trip time, for legends and titles."""
    rtt = data.profile_rtts().get(profile)
    return profile if rtt is None else f"{profile} (RTT {rtt:g} ms)"


def grid(fig: Figure, count: int, ncols: int, *, sharex: bool = False) -> list[Axes]:
    """``count`` axes in rows of ``ncols``; unused cells are removed."""
    nrows = math.ceil(count / ncols)
    axes = list(fig.subplots(nrows, ncols, squeeze=False, sharex=sharex).flat)
    for ax in axes[count:]:
        ax.remove()
    return axes[:count]


def scenario_grid(
    panels: list[tuple[str, int, pd.DataFrame, list[str]]],
    *,
    row_in: float,
    panel_in: float,
    top_in: float,
) -> tuple[Figure, list[Axes]]:
    """A figure with one panel per scenario (from :func:`scenario_panels`), sharing x.

    Two columns when there are several panels; 10 in wide at least, since the two-line
    title and the legend clip on a narrower single panel. Each row of panels is ``row_in``
    per operation of the longest panel plus ``panel_in``; ``top_in`` is for title and legend.
    """
    most = max(len(p[3]) for p in panels)
    ncols = 2 if len(panels) > 1 else 1
    nrows = math.ceil(len(panels) / ncols)
    fig = new_figure(max(7.0 * ncols, 10.0), nrows * (most * row_in + panel_in) + top_in)
    return fig, grid(fig, len(panels), ncols, sharex=True)


def finish_operation_panel(
    ax: Axes, labels: list[str], *, headroom: float, title: str, xlabel: str
) -> None:
    """One operation per row, the first at the top under ``headroom`` free rows (room for
    the target labels); a log-ms x axis whose numbers every panel keeps, though shared."""
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5 - headroom)
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(axis="x", which="major", alpha=0.3)
    log_ms_axis(ax)
    ax.tick_params(labelbottom=True)
    ax.set_xlabel(xlabel)


def bottom_legend(fig: Figure, handles: list[Artist], *, max_columns: int = 5) -> None:
    """A frameless legend under the panels (above them it would collide with the title),
    in one row of up to ``max_columns`` entries, wrapping after that."""
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), max_columns),
        frameon=False,
        fontsize=9,
    )


def profile_handles(data: ReportData, profiles: list[str], *, markers: bool) -> list[Artist]:
    """Legend entries for profiles: coloured markers (dot plots) or patches (box plots)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    out: list[Artist] = []
    for i, p in enumerate(profiles):
        color, label = color_for(p, profiles), profile_label(data, p)
        if markers:
            marker = MARKERS[i % len(MARKERS)]
            out.append(Line2D([], [], color=color, marker=marker, linestyle="", label=label))
        else:
            out.append(Patch(facecolor=color, alpha=0.75, label=label))
    return out
