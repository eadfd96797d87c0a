"""The argparse pieces the subcommands share: a subcommand's parser, and the options that
several of them spell alike (one place to word them, so ``--help`` says the same everywhere)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lancesync_bench.s3.select import KINDS

__all__ = ["add_command", "add_fail_on_miss_option", "add_out_option", "add_s3_option"]


def add_command(
    subparsers: Any, name: str, *, summary: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` (``summary`` is its line in the top-level ``--help``).

    ``description`` and ``epilog`` are printed as written: their line breaks, columns and
    indented examples are kept rather than refilled.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def add_out_option(parser: argparse.ArgumentParser) -> None:
    """``--out``: the folder each run's own folder is made in (default ``results/``)."""
    parser.add_argument(
        "--out", type=Path, default=Path("results"), help="results folder (default: results/)"
    )


def add_s3_option(
    parser: argparse.ArgumentParser, help_text: str = "S3 server to use (default: auto)"
) -> None:
    """``--s3``: which S3 server to measure against (one of :data:`KINDS`, ``auto`` by default)."""
    parser.add_argument("--s3", choices=KINDS, default="auto", help=help_text)


def add_fail_on_miss_option(
    parser: argparse.ArgumentParser, help_text: str = "exit 1 when a check is FAIL"
) -> None:
    """``--fail-on-miss``: a FAIL verdict makes the exit status 1 (by default it stays 0)."""
    parser.add_argument("--fail-on-miss", action="store_true", help=help_text)
