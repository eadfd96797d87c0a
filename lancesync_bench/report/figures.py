"""Per-operation figures of the service path: latency, and S3 requests with a model.

Each function takes a :class:`~lancesync_bench.report.data.ReportData` and returns a
matplotlib Figure, or None when the run holds nothing it could draw. One table size per
scenario is shown (:func:`~lancesync_bench.report.data.pick_size`, or ``size``); the size
figure in :mod:`lancesync_bench.report.growth` shows how figures change with size, and
:mod:`lancesync_bench.report.profiles` sets the network profiles side by side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lancesync_bench.report.data import ReportData
from lancesync_bench.report.panels import (
    MS_LOG,
    bottom_legend,
    finish_operation_panel,
    panel_title,
    profile_handles,
    profile_label,
    scenario_grid,
    scenario_panels,
)
from lancesync_bench.report.rtt_model import MAX_DEVIATION, model_rows
from lancesync_bench.report.style import (
    CAVEAT,
    TIMES,
    color_for,
    draw_targets,
    log_ms_axis,
    new_figure,
    target_handles,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["latency_figure", "requests_figure"]


def latency_figure(data: ReportData, *, size: int | None = None) -> Figure | None:
    """Latency distribution per scenario and operation (service path), one panel each.

    Horizontal box plots on a log millisecond axis, one box per network profile; the local
    target is a dashed line and the S3 band is shaded, both labelled. None: no samples.
    """
    frame = data.timed()
    panels = list(scenario_panels(frame, size))
    if not panels:
        return None
    profiles = [p for p in data.profiles() if p in set(frame["profile"])]
    targets = data.targets()
    slot = 0.2 * len(profiles) + 0.18  # inches per operation row: each box ~0.2 in tall
    headroom = 0.45 / slot  # room above the first row for the target labels, in rows
    fig, axes = scenario_grid(panels, row_in=slot, panel_in=headroom * slot + 0.9, top_in=1.4)
    width = 0.8 / len(profiles)
    for ax, (scenario, chosen, f, labels) in zip(axes, panels, strict=True):
        draw_targets(ax, targets)
        for j, profile in enumerate(profiles):
            color = color_for(profile, profiles)
            values, positions = [], []
            for i, label in enumerate(labels):
                v = f.loc[(f["label"] == label) & (f["profile"] == profile), "latency_ms"]
                if len(v):
                    values.append(v.to_numpy())
                    positions.append(i - 0.4 + width * (j + 0.5))
            if not values:
                continue
            ax.boxplot(
                values,
                positions=positions,
                widths=width * 0.8,
                orientation="horizontal",
                whis=(5, 95),  # latency tails matter: whiskers at p5/p95, beyond as dots
                patch_artist=True,
                manage_ticks=False,
                boxprops={"facecolor": color, "edgecolor": "#222222", "alpha": 0.8},
                medianprops={"color": "black", "linewidth": 1.5},
                whiskerprops={"color": "#444444"},
                capprops={"color": "#444444"},
                flierprops={
                    "marker": ".",
                    "markersize": 3,
                    "markerfacecolor": color,
                    "markeredgecolor": color,
                },
            )
        finish_operation_panel(
            ax, labels, headroom=headroom, title=panel_title(scenario, chosen, f), xlabel=MS_LOG
        )
    fig.suptitle(
        f"Latency per operation, service path (run {data.run_id})\n{CAVEAT}; box p25-p75, "
        "black line median, whiskers p5-p95, dots beyond",
        fontsize=11,
    )
    bottom_legend(fig, profile_handles(data, profiles, markers=False) + target_handles(targets))
    return fig


def _model_points(ax: Axes, rows: pd.DataFrame, labels: list[str], color: str) -> None:
    """Measured median and modelled latency of each operation in ``rows`` (one scenario
    panel and profile, see :func:`model_rows`); a deviation past the limit is written
    beside its pair in red."""
    for row in rows.to_dict("records"):
        y = labels.index(str(row["operation"]))
        measured, model = float(row["measured_p50_ms"]), float(row["model_ms"])
        ax.plot([measured, model], [y, y], color="#999999", linewidth=1, zorder=2)
        ax.plot(measured, y, "o", color=color, markersize=7, zorder=4)
        ax.plot(
            model,
            y,
            "D",
            markerfacecolor="none",  # hollow: a measured dot on the same spot stays visible
            markeredgecolor=color,
            markersize=7,
            markeredgewidth=1.5,
            zorder=3,
        )
        if row["flagged"]:
            ax.annotate(
                f"{100 * float(row['deviation']):+.0f}% vs model",
                (max(measured, model), y),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
                color="#B00020",
            )


def requests_figure(data: ReportData, *, size: int | None = None) -> Figure | None:
    """Median S3 requests per operation, and measured p50 next to a requests x RTT model.

    One row per scenario: requests as bars, then per emulated profile the measured median
    beside ``loopback p50 + median requests x RTT`` (the model's assumptions are in the
    title). None: no request counts were recorded.
    """
    from matplotlib.lines import Line2D

    frame = data.timed()
    frame = frame[frame["requests"].notna()]
    panels = list(scenario_panels(frame, size))
    if not panels:
        return None
    emulated = [p for p in data.emulated_profiles() if p in set(frame["profile"])]
    checked = model_rows(data, size=size)
    profiles = data.profiles()
    most = max(len(p[3]) for p in panels)
    ncols = 1 + len(emulated)
    # At least 9 in wide: the three-line title must fit even with no model column.
    width = max(4.6 + 4.6 * len(emulated), 9.0)
    fig = new_figure(width, len(panels) * (most * 0.32 + 1.0) + 1.6)
    axes = fig.subplots(len(panels), ncols, squeeze=False, sharex="col")
    for row, (scenario, chosen, f, labels) in enumerate(panels):
        ys = range(len(labels))
        med = [float(f.loc[f["label"] == lab, "requests"].median()) for lab in labels]
        ax0 = axes[row][0]
        ax0.barh(ys, med, color="#777777", height=0.6)
        for y, m in zip(ys, med, strict=True):
            ax0.text(m, y, f" {m:g}", va="center", fontsize=8)
        ax0.set_yticks(list(ys), labels)
        ax0.set_ylim(len(labels) - 0.5, -0.5)
        ax0.set_title(f"{scenario}: S3 requests ({chosen:,} rows)", fontsize=10, loc="left")
        ax0.margins(x=0.15)  # room for the value printed after the longest bar
        for col, profile in enumerate(emulated, start=1):
            ax = axes[row][col]
            ax.sharey(ax0)
            ax.tick_params(labelleft=False)
            mine = checked[(checked["scenario"] == scenario) & (checked["profile"] == profile)]
            _model_points(ax, mine, labels, color_for(profile, profiles))
            draw_targets(ax, data.targets(), label=False)
            log_ms_axis(ax, dense=False)
            ax.grid(axis="x", which="major", alpha=0.3)
            ax.set_title(f"{scenario}: {profile_label(data, profile)}", fontsize=10, loc="left")
    for col in range(ncols):
        axes[-1][col].set_xlabel("S3 requests per operation (median)" if col == 0 else MS_LOG)
    note = (
        f"model = loopback p50 + median requests {TIMES} RTT (requests one after another, "
        "one round trip each;\nno TCP handshakes, no parallel requests). Operations without S3 "
        f"requests have no model point; a measured p50 more than {100 * MAX_DEVIATION:.0f}% "
        "off its model is marked in red."
        if emulated
        else f"no emulated profile in this run: no requests {TIMES} RTT model to show"
    )
    fig.suptitle(f"S3 requests per operation (run {data.run_id})\n{note}", fontsize=11)
    handles: list[Artist] = [
        Line2D([], [], marker="o", color="#555555", linestyle="", label="measured p50"),
        Line2D(
            [],
            [],
            marker="D",
            markerfacecolor="white",
            markeredgecolor="#555555",
            linestyle="",
            label=f"model: loopback p50 + requests {TIMES} RTT",
        ),
    ]
    if emulated:
        bottom_legend(fig, handles + target_handles(data.targets()))
    return fig
