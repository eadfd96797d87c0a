"""Reports of a benchmark run: figures (matplotlib), tables (pandas), one HTML page.

Notebooks and the ``report`` command share these::

    from lancesync_bench import report
    data = report.load_report_data("results/<run-id>")
    fig = report.latency_figure(data)          # a matplotlib Figure, or None
    report.write_report("results/<run-id>")    # PNGs + report.html in results/<run-id>/report/

Every figure function takes a :class:`ReportData` and returns a Figure, or None when the
run holds nothing it could draw (no baselines, no sweep, ...). Figures are drawn on an Agg
canvas without pyplot; in a notebook, ``display(fig)`` shows one. matplotlib is imported
only when a figure is drawn.
"""

from __future__ import annotations

from lancesync_bench.report.baselines import baseline_figure
from lancesync_bench.report.build import FIGURES, FORMATS, build_images, write_report
from lancesync_bench.report.data import ReportData, load_report_data, sweep_samples
from lancesync_bench.report.figures import latency_figure, requests_figure
from lancesync_bench.report.growth import size_growth_figure, users_growth_figure
from lancesync_bench.report.html import render_html
from lancesync_bench.report.profiles import profiles_figure
from lancesync_bench.report.recall import recall_figure, sweep_points
from lancesync_bench.report.style import to_png
from lancesync_bench.report.tables import (
    baseline_ratios,
    machine_noise_text,
    stats_table,
    verdict_counts,
    verdict_figure,
    verdict_summary,
    verdict_table,
)

__all__ = [
    "FIGURES",
    "FORMATS",
    "ReportData",
    "baseline_figure",
    "baseline_ratios",
    "build_images",
    "latency_figure",
    "load_report_data",
    "machine_noise_text",
    "profiles_figure",
    "recall_figure",
    "render_html",
    "requests_figure",
    "size_growth_figure",
    "stats_table",
    "sweep_points",
    "sweep_samples",
    "to_png",
    "users_growth_figure",
    "verdict_counts",
    "verdict_figure",
    "verdict_summary",
    "verdict_table",
    "write_report",
]
