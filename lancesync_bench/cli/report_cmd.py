"""``lancesync-bench report``: PNG figures and one self-contained HTML page for a run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lancesync_bench.cli.options import add_command
from lancesync_bench.cli.outputs import check_output_folder
from lancesync_bench.errors import ConfigError

__all__ = ["register", "run"]

_DESCRIPTION = """\
Draw the figures of a benchmark run and write them, with the verdict and statistics
tables, into RUN_DIR/report/ (or --out): one PNG per figure and report.html, a single page
that embeds everything and opens offline.

Figures: the verdict table; latency per scenario and operation against the local target
and the S3 band; S3 requests per operation with a requests x RTT model; loopback vs
emulated profiles; latency vs table size; and, when the run holds them, latency vs
concurrent users and the service against baselines.

Exit status: 0 written, 2 when RUN_DIR is not a run (no results.json) or a format is unknown.
"""


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand to ``subparsers``."""
    p = add_command(
        subparsers,
        "report",
        summary="write PNG figures and an HTML page for a run",
        description=_DESCRIPTION,
    )
    p.add_argument(
        "run_dir", metavar="RUN_DIR", nargs="?", type=Path, help="a run folder (results/<run-id>)"
    )
    p.add_argument(
        "--latest",
        metavar="RESULTS_DIR",
        nargs="?",
        const=Path("results"),
        type=Path,
        help="report the newest run under RESULTS_DIR (default: results/) instead of RUN_DIR",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=None,
        help="where to write (default: RUN_DIR/report)",
    )
    p.add_argument(
        "--format",
        default="png,html",
        metavar="png,html",
        help="what to write, comma-separated (default: png,html)",
    )
    p.set_defaults(func=run)


def _run_dir(args: argparse.Namespace) -> Path:
    from lancesync_bench.results import RESULTS_FILE, latest_run

    if args.latest is not None:
        if args.run_dir is not None:
            raise ConfigError("give RUN_DIR or --latest [RESULTS_DIR], not both")
        found = latest_run(args.latest)
        if found is None:
            raise ConfigError(
                f"--latest: no complete run (a folder with {RESULTS_FILE}) under {args.latest}"
            )
        return found
    if args.run_dir is None:
        raise ConfigError("give a run folder (RUN_DIR) or --latest [RESULTS_DIR]")
    run_dir: Path = args.run_dir
    if run_dir.is_dir() and not (run_dir / RESULTS_FILE).exists() and latest_run(run_dir):
        raise ConfigError(
            f"{run_dir}: no {RESULTS_FILE} here, but it holds runs; "
            f"use --latest {run_dir} for the newest, or name one run folder"
        )
    return run_dir


def run(args: argparse.Namespace) -> int:
    """Write the report and print one path per file written; return 0."""
    from lancesync_bench.report.build import REPORT_DIR, parse_formats, write_report
    from lancesync_bench.results import RESULTS_FILE, ResultsError

    formats = parse_formats(args.format)  # before any drawing: a typo costs nothing
    run_dir = _run_dir(args)
    if args.out is not None:
        check_output_folder(args.out)
    elif (run_dir / RESULTS_FILE).is_file():  # not a run: load_report_data says so below
        check_output_folder(run_dir / REPORT_DIR, "report folder")
    try:
        written = write_report(run_dir, args.out, formats=formats)
    except ResultsError as exc:  # unreadable, foreign schema or a checksum mismatch: bad input
        raise ConfigError(str(exc)) from None
    for path in written:
        print(path)
    return 0
