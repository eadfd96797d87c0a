"""Write a run's report: the PNG figures and one self-contained HTML page."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from lancesync_bench.errors import ConfigError
from lancesync_bench.report.baselines import baseline_figure
from lancesync_bench.report.data import ReportData, load_report_data
from lancesync_bench.report.figures import latency_figure, requests_figure
from lancesync_bench.report.growth import size_growth_figure, users_growth_figure
from lancesync_bench.report.html import ReportImage, render_html
from lancesync_bench.report.profiles import profiles_figure
from lancesync_bench.report.recall import recall_figure
from lancesync_bench.report.style import to_png
from lancesync_bench.report.tables import verdict_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["FIGURES", "FORMATS", "HTML_FILE", "build_images", "write_report"]

FORMATS = ("png", "html")
HTML_FILE = "report.html"
REPORT_DIR = "report"
# (file stem, caption, builder), in the order the page shows them.
FIGURES: tuple[tuple[str, str, Callable[[ReportData], Figure | None]], ...] = (
    ("verdicts", "Verdicts against the documented targets", verdict_figure),
    ("latency", "Latency distribution per scenario and operation (service path)", latency_figure),
    (
        "requests",
        "S3 requests per operation, and a requests \N{MULTIPLICATION SIGN} RTT model",
        requests_figure,
    ),
    ("profiles", "Loopback vs emulated network profiles (median latency)", profiles_figure),
    (
        "latency_recall",
        "Latency vs recall@10 over nprobes x refine_factor (plain LanceDB, same data)",
        recall_figure,
    ),
    ("growth_size", "Latency vs table size", size_growth_figure),
    ("growth_users", "Latency vs concurrent users (concurrency sweep)", users_growth_figure),
    (
        "baselines",
        "Service against baselines, in words (2.2x slower, 1.3x faster)",
        baseline_figure,
    ),
)


def build_images(data: ReportData) -> list[ReportImage]:
    """Every figure the run supports, rendered to PNG; figures with nothing to draw are skipped."""
    images: list[ReportImage] = []
    for stem, caption, builder in FIGURES:
        fig = builder(data)
        if fig is not None:
            images.append((stem, caption, to_png(fig)))
    return images


def _write(path: Path, payload: bytes) -> None:
    """Write atomically: a reader (or a browser reload) never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a report from a web server or team
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_formats(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"png,html"`` (or an iterable of names) as a tuple; unknown names are a ConfigError."""
    names = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise ConfigError(
            f"report format {','.join(bad) or repr(text)} is not known; allowed: "
            f"{', '.join(FORMATS)} (comma-separated)"
        )
    return tuple(dict.fromkeys(names))


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    formats: str | Iterable[str] = FORMATS,
) -> list[Path]:
    """Write the report of the run in ``run_dir``; return the paths written.

    ``out_dir`` defaults to ``run_dir/report/``. PNG files are named after
    :data:`FIGURES`; the HTML page (``report.html``) embeds the same figures and needs no
    other file. A figure left out this time (say, no baselines) has its old PNG removed,
    so a folder never mixes two reports. Raises ConfigError when ``run_dir`` is no run.
    """
    chosen = parse_formats(formats)
    data = load_report_data(run_dir)
    assert data.run_dir is not None  # load_report_data always sets it
    out = Path(out_dir) if out_dir is not None else data.run_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    images = build_images(data)
    written: list[Path] = []
    if "png" in chosen:
        drawn = {stem for stem, _, _ in images}
        for stem, _, _ in FIGURES:
            if stem not in drawn:
                (out / f"{stem}.png").unlink(missing_ok=True)
        for stem, _, png in images:
            _write(out / f"{stem}.png", png)
            written.append(out / f"{stem}.png")
    if "html" in chosen:
        # The page has the verdict table as HTML; its PNG twin would only repeat it.
        page = render_html(data, [i for i in images if i[0] != "verdicts"])
        _write(out / HTML_FILE, page.encode("utf-8"))
        written.append(out / HTML_FILE)
    return written
