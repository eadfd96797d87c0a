"""Loopback against emulated network profiles: the same operations, side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lancesync_bench.report.data import ReportData
from lancesync_bench.report.panels import (
    bottom_legend,
    finish_operation_panel,
    panel_title,
    profile_handles,
    scenario_grid,
    scenario_panels,
)
from lancesync_bench.report.style import (
    CAVEAT,
    MARKERS,
    TIMES,
    color_for,
    draw_targets,
    target_handles,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["profiles_figure"]


def profiles_figure(data: ReportData, *, size: int | None = None) -> Figure | None:
    """Median latency of the same operations on each network profile, joined per operation.

    The number right of each panel is the slowest profile's median over the fastest's: how
    much of an operation's time the network decides. None: fewer than two profiles.
    """
    from matplotlib.transforms import blended_transform_factory

    frame = data.timed()
    profiles = [p for p in data.profiles() if p in set(frame["profile"])]
    panels = list(scenario_panels(frame, size))
    if len(profiles) < 2 or not panels:
        return None
    targets = data.targets()
    fig, axes = scenario_grid(panels, row_in=0.36, panel_in=1.3, top_in=1.3)
    for ax, (scenario, chosen, f, labels) in zip(axes, panels, strict=True):
        draw_targets(ax, targets)
        side = blended_transform_factory(ax.transAxes, ax.transData)
        p50 = f.groupby(["label", "profile"])["latency_ms"].median()
        for y, lab in enumerate(labels):
            row = {p: float(p50[(lab, p)]) for p in profiles if (lab, p) in p50.index}
            if not row:
                continue
            ax.plot([min(row.values()), max(row.values())], [y, y], color="#AAAAAA", zorder=2)
            for i, (p, v) in enumerate(row.items()):
                ax.plot(
                    v,
                    y,
                    MARKERS[profiles.index(p) % len(MARKERS)],
                    color=color_for(p, profiles),
                    markersize=7,
                    zorder=3 + i,
                )
            first, last = row.get(profiles[0]), row.get(profiles[-1])
            if first and last:
                ax.text(
                    1.02, y, f"{TIMES}{last / first:.1f}", transform=side, va="center", fontsize=8
                )
        ax.text(
            1.02,
            -0.5 - 1.0,
            f"{profiles[-1]}\n÷ {profiles[0]}",
            transform=side,
            va="bottom",
            fontsize=7,
            color="#444444",
        )
        finish_operation_panel(
            ax,
            labels,
            headroom=1.2,  # one row of room for the target labels
            title=panel_title(scenario, chosen, f),
            xlabel="median latency (ms, log scale)",
        )
    fig.suptitle(
        f"Loopback vs emulated network profiles, service path, median (run {data.run_id})\n"
        f"{CAVEAT}",
        fontsize=11,
    )
    bottom_legend(fig, profile_handles(data, profiles, markers=True) + target_handles(targets))
    return fig
