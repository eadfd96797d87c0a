"""Shared look of the report's figures: palette, target markings, log axes, PNG output.

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas, never through
``pyplot``: no global figure registry to leak or close, no backend switch under a notebook,
and the command line imports matplotlib only when it draws.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from lancesync_bench.stats import Targets

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "CAVEAT",
    "MARKERS",
    "OKABE_ITO",
    "STATUS_COLORS",
    "TIMES",
    "color_for",
    "draw_targets",
    "log_ms_axis",
    "new_figure",
    "target_handles",
    "to_png",
]

# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")
# Light fills for verdict cells; the status word is always printed too, so colour is a cue,
# never the only one.
STATUS_COLORS = {
    "PASS": "#C7EBD9",
    "FAIL": "#F6C6AD",
    "UNSURE": "#FBE7A6",
    "BELOW": "#CFE8F7",
    "N/A": "#E6E6E6",
}
MARKERS = ("o", "s", "D", "^", "v", "P", "X")  # a second cue beside colour, per series
TIMES = "\N{MULTIPLICATION SIGN}"  # spelled out: ruff rightly flags a literal one
CAVEAT = "loopback / emulated-RTT S3 on a local server, not cloud S3"
DPI = 110  # ~1300 px across a 12-inch figure: sharp on a laptop, small as base64
_TARGET_COLOR = "#333333"
# Labels at 1-2-5 fit on a panel spanning up to ~3.3 decades (1-2000 ms) at 10 pt.
_DENSE_DECADES = 3.3
_BAND_COLOR = "#BBBBBB"


def color_for(name: str, names: Sequence[str]) -> str:
    """A stable palette colour for ``name`` by its position in ``names``."""
    return OKABE_ITO[list(names).index(name) % len(OKABE_ITO)]


def new_figure(width: float, height: float) -> Figure:
    """An empty figure with constrained layout on an Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained", dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _ms_label(value: float, _pos: object = None) -> str:
    # No thousands separator: "1,000" and "2,000" run into each other on a narrow axis.
    return f"{value:.0f}" if value >= 1 else f"{value:g}"


def log_ms_axis(ax: Axes, which: Literal["x", "y"] = "x", *, dense: bool | None = None) -> None:
    """A log-scale millisecond axis labelled 1, 2, 5, 10, 20, 50 ... (not 10^k).

    The 1-2-5 steps put ticks on the S3 band's edges (50, 200 ms) and give a reader a
    number within a factor of 2.5 of any point. They fit up to ~3 decades on a panel;
    ``dense=None`` (call it after plotting) picks 1-2-5 or decades-only from the data's
    span, ``dense=False`` forces decades (2 and 5 stay as unlabelled minor grid lines).
    """
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    if dense is None:
        low, high = ax.get_xlim() if which == "x" else ax.get_ylim()
        dense = low > 0 and math.log10(high / low) <= _DENSE_DECADES
    steps = (1.0, 2.0, 5.0)
    axis.set_major_locator(LogLocator(base=10, subs=steps if dense else (1.0,)))
    axis.set_major_formatter(FuncFormatter(_ms_label))
    axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0) if not dense else (3.0,)))
    axis.set_minor_formatter(NullFormatter())
    ax.grid(axis=which, which="minor" if not dense else "major", alpha=0.15)


def draw_targets(
    ax: Axes, targets: Targets, *, which: Literal["x", "y"] = "x", label: bool = True
) -> None:
    """Shade the S3 band and draw the local target line on a millisecond axis.

    With ``label`` the two are named inside the panel, at its top (x) or right (y) edge.
    """
    from matplotlib.transforms import blended_transform_factory

    lo, hi, local = targets.s3_min_ms, targets.s3_max_ms, targets.local_read_ms
    band_mid = (lo * hi) ** 0.5  # the band's middle on a log axis
    text: dict[str, Any] = {"fontsize": 8, "color": _TARGET_COLOR}
    box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}
    if which == "x":
        ax.axvspan(lo, hi, color=_BAND_COLOR, alpha=0.35, zorder=0, linewidth=0)
        ax.axvline(local, color=_TARGET_COLOR, linestyle="--", linewidth=1.1, zorder=1)
        if label:
            tr = blended_transform_factory(ax.transData, ax.transAxes)
            ax.text(
                band_mid,
                0.995,
                f"S3 band\n{lo:g}-{hi:g} ms",
                transform=tr,
                ha="center",
                va="top",
                bbox=box,
                **text,
            )
            ax.text(
                local,
                0.995,
                f" local target\n < {local:g} ms",
                transform=tr,
                ha="right",
                va="top",
                bbox=box,
                **text,
            )
    else:
        ax.axhspan(lo, hi, color=_BAND_COLOR, alpha=0.35, zorder=0, linewidth=0)
        ax.axhline(local, color=_TARGET_COLOR, linestyle="--", linewidth=1.1, zorder=1)
        if label:
            tr = blended_transform_factory(ax.transAxes, ax.transData)
            ax.text(
                0.995,
                band_mid,
                f"S3 band {lo:g}-{hi:g} ms",
                transform=tr,
                ha="right",
                va="center",
                bbox=box,
                **text,
            )
            ax.text(
                0.995,
                local,
                f"local target < {local:g} ms",
                transform=tr,
                ha="right",
                va="bottom",
                bbox=box,
                **text,
            )


def target_handles(targets: Targets) -> list[Artist]:
    """Legend entries for :func:`draw_targets`' line and band."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [
        Line2D(
            [],
            [],
            color=_TARGET_COLOR,
            linestyle="--",
            label=f"local target < {targets.local_read_ms:g} ms",
        ),
        Patch(
            color=_BAND_COLOR,
            alpha=0.5,
            label=f"S3 band {targets.s3_min_ms:g}-{targets.s3_max_ms:g} ms (cloud)",
        ),
    ]


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes, without the software tag (it holds a web address)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()
