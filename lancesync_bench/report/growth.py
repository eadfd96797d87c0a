"""How latency grows: with table size, and with concurrent users (a concurrency sweep).

Both figures are small multiples, one panel per operation, on log-log axes: a straight
line's slope is the growth exponent (slope 1: ten times the rows, ten times the time).
p50 is a solid line, p95 a dashed one, drawn only where n supports it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from lancesync_bench.report.data import ReportData, operation_sort_key, quantile, sweep_samples
from lancesync_bench.report.panels import bottom_legend
from lancesync_bench.report.style import (
    CAVEAT,
    MARKERS,
    OKABE_ITO,
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

__all__ = ["size_growth_figure", "users_growth_figure"]

_PANEL_COLUMNS = 4  # four 3.4-inch panels fill a 14-inch figure and keep labels legible
# Latency labels at 1-2-5 fit a 2.9-inch panel up to ~2.5 decades; wider spans get 1-3.
_DENSE_DECADES = 2.5


def _count_label(value: float, _pos: object = None) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


def _draw_lines(
    ax: Axes, frame: pd.DataFrame, x: str, series: list[str], column: str
) -> tuple[int, bool]:
    """p50 and p95 of each series against ``x``; returns (points drawn, any p95 drawn)."""
    points, any_p95 = 0, False
    for i, name in enumerate(series):
        g = frame[frame[column] == name]
        if g.empty:
            continue
        xs = sorted(int(v) for v in g[x].unique())
        at = {v: g.loc[g[x] == v, "latency_ms"].to_numpy() for v in xs}
        color, marker = OKABE_ITO[i % len(OKABE_ITO)], MARKERS[i % len(MARKERS)]
        # p50 of one sample is the sample itself (quantile refuses n < 2).
        p50 = [quantile(at[v], 50) or float(at[v][0]) for v in xs]
        ax.plot(xs, p50, color=color, marker=marker, markersize=5, linewidth=1.6)
        p95 = [(v, quantile(at[v], 95)) for v in xs]
        shown = [(v, q) for v, q in p95 if q is not None]
        if shown:
            any_p95 = True
            ax.plot(
                *zip(*shown, strict=True),
                color=color,
                linestyle="--",
                linewidth=1.1,
                marker=marker,
                markersize=5,
                markerfacecolor="none",
            )  # hollow: p95
        points += len(xs)
    return points, any_p95


def _facets(
    frame: pd.DataFrame, x: str, series_column: str, xlabel: str, *, base: int
) -> tuple[Figure, list[Axes], list[str]]:
    """One log-log panel per operation label; returns the figure, its axes and the series."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    labels = sorted(frame["label"].unique(), key=operation_sort_key)
    series = sorted(str(s) for s in frame[series_column].unique())
    ncols = min(_PANEL_COLUMNS, len(labels))
    nrows = math.ceil(len(labels) / ncols)
    # At least 10 in wide: the two-line title and the legend need it even for one panel.
    fig = new_figure(max(3.5 * ncols + 0.4, 10.0), 2.9 * nrows + 1.5)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    for ax in axes[len(labels) :]:
        ax.remove()
    ticks = sorted(frame[x].unique())
    for ax, label in zip(axes, labels, strict=False):
        ax.set_xscale("log", base=base)
        ax.xaxis.set_major_locator(FixedLocator(ticks))  # ticks at the measured values only
        ax.xaxis.set_major_formatter(FuncFormatter(_count_label))
        ax.xaxis.set_minor_locator(NullLocator())
        log_ms_axis(ax, "y", dense=False)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel("latency (ms, log)", fontsize=9)
        ax.grid(which="major", alpha=0.3)
        if len(ticks) == 1:  # a single value: widen the axis so the point sits mid-panel
            ax.set_xlim(ticks[0] / 2, ticks[0] * 2)
    return fig, axes[: len(labels)], series


def _readable_ms_ticks(ax: Axes) -> None:
    """Label the latency axis at 1-2-5 steps, or 1-3 over a wide span: never decades only.

    A 2.9-inch panel holds ~8 labels at 9 pt. Decades alone (1, 10, 100) leave a reader to
    guess a line at "somewhere between 10 and 100".
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    low, high = ax.get_ylim()
    decades = math.log10(high / low) if low > 0 else 3.0
    subs = (1.0, 2.0, 5.0) if decades <= _DENSE_DECADES else (1.0, 3.0)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.0f}" if v >= 1 else f"{v:g}"))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0) if len(subs) == 2 else ()))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="y", labelsize=8)
    ax.set_ylim(low, high)


def _handles(series: list[str], any_p95: bool, data: ReportData) -> list[Artist]:
    from matplotlib.lines import Line2D

    out: list[Artist] = [
        Line2D(
            [],
            [],
            color=OKABE_ITO[i % len(OKABE_ITO)],
            marker=MARKERS[i % len(MARKERS)],
            label=name,
        )
        for i, name in enumerate(series)
    ]
    out.append(Line2D([], [], color="#555555", marker="o", label="p50"))
    if any_p95:
        out.append(
            Line2D(
                [],
                [],
                color="#555555",
                linestyle="--",
                marker="o",
                markerfacecolor="none",
                label="p95 (n >= 20)",
            )
        )
    return out + target_handles(data.targets())


def _drawn_facets(
    data: ReportData,
    frame: pd.DataFrame,
    x: str,
    series_column: str,
    xlabel: str,
    *,
    base: int,
) -> tuple[Figure, list[Artist]]:
    """The panels of a growth figure (see :func:`_facets`), each with the targets, p50 and
    p95 lines per series and readable latency ticks; returns the figure and its legend."""
    fig, axes, series = _facets(frame, x, series_column, xlabel, base=base)
    any_p95 = False
    for ax, label in zip(
        axes, sorted(frame["label"].unique(), key=operation_sort_key), strict=True
    ):
        draw_targets(ax, data.targets(), which="y", label=False)
        any_p95 |= _draw_lines(ax, frame[frame["label"] == label], x, series, series_column)[1]
        _readable_ms_ticks(ax)
    return fig, _handles(series, any_p95, data)


def size_growth_figure(data: ReportData, *, profile: str | None = None) -> Figure | None:
    """p50 and p95 against table size (log-log), one panel per operation, one line per scenario.

    ``profile`` defaults to the fastest profile measured (loopback in a default run). With a
    single size in the run the points are drawn and the title says growth needs two.
    None: no service samples.
    """
    frame = data.timed()
    if frame.empty:
        return None
    profile = profile or next(p for p in data.profiles() if p in set(frame["profile"]))
    frame = frame[frame["profile"] == profile]
    if frame.empty:
        return None
    fig, handles = _drawn_facets(data, frame, "size", "scenario", "table size (rows)", base=10)
    sizes = sorted(frame["size"].unique())
    note = (
        f"only one table size ({sizes[0]:,} rows) in this run (a --quick run?): "
        "growth needs two or more"
        if len(sizes) == 1
        else f"sizes {', '.join(f'{s:,}' for s in sizes)} rows"
    )
    fig.suptitle(
        f"Latency vs table size on {profile}, service path (run {data.run_id})\n{note}; {CAVEAT}",
        fontsize=11,
    )
    bottom_legend(fig, handles, max_columns=6)
    return fig


def users_growth_figure(data: ReportData) -> Figure | None:
    """p50 and p95 against concurrent users (log-log) from ``sweep_*`` operations.

    One panel per swept operation, one line per scenario, profile and table size. None: the
    run holds no sweep (see :func:`~lancesync_bench.report.data.sweep_samples` for the encoding).
    """
    sweep = sweep_samples(data.samples)
    sweep = sweep[sweep["path"] == "service"]
    if sweep.empty:
        return None
    # One line per table size: a sweep runs each size at every user count, and pooling
    # the sizes would draw a median neither table had.
    sweep = sweep.assign(
        series=sweep["scenario"]
        + " / "
        + sweep["profile"]
        + " / "
        + sweep["size"].map(lambda n: f"{int(n):,} rows")
    )
    fig, handles = _drawn_facets(data, sweep, "users", "series", "concurrent users", base=2)
    fig.suptitle(
        f"Latency vs concurrent users, service path (run {data.run_id})\n"
        # bench/sweep.py runs open loop: a late start is charged to the operation.
        f"latency from each operation's intended start; {CAVEAT}",
        fontsize=11,
    )
    bottom_legend(fig, handles)
    return fig
