"""``lancesync-bench chaos``: the reliability and security suite, ending with its checks."""

from __future__ import annotations

import argparse
from typing import Any

from lancesync_bench.cli.options import add_command, add_out_option, add_s3_option

__all__ = ["register"]

_DESCRIPTION = """\
Inject faults into the real storage service on a real S3 server and check what must hold:
SIGKILL during sync, backup and S3-primary writes (the remote table stays complete, no
acknowledged write is lost); an S3 outage made by cutting the network path mid-workload;
a proxy failing 5% of requests; two devices racing; a corrupted object on S3; an S3 that
ignores conditional puts; a catalogue of bad inputs; user isolation and secret scans.

Results go to OUT/<run-id>/reliability.json (figures and a pass/fail per check); the
summary table is printed at the end. Exit 1 when any check fails. Full mode (>= 50 kill
trials, 1,000-operation workloads, 100 device rounds) takes several minutes on 2 cores;
--quick runs every check at a tenth of the size for CI.
"""


def register(subparsers: Any) -> None:
    """Add the ``chaos`` subcommand."""
    from lancesync_bench.chaos.suite import SECTIONS

    p = add_command(
        subparsers,
        "chaos",
        summary="run the fault-injection, bad-input and security suite",
        description=_DESCRIPTION,
    )
    p.add_argument("--quick", action="store_true", help="a tenth of the size (CI)")
    add_out_option(p)
    add_s3_option(p)
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        choices=SECTIONS,
        metavar="SECTION",
        help=f"run only this section (repeatable): {', '.join(SECTIONS)}",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from lancesync_bench.chaos.suite import SuiteOptions, run_suite
    from lancesync_bench.cli.outputs import check_output_folder

    check_output_folder(args.out)  # before the suite: a bad --out costs nothing
    outcome = run_suite(
        SuiteOptions(
            quick=args.quick,
            out=args.out,
            s3=args.s3,
            seed=args.seed,
            only=args.only,
            progress=not args.no_progress,
        )
    )
    checks = [c for s in outcome.sections for c in s.checks]
    failed = sum(not c.passed for c in checks)
    print(outcome.summary)
    print()
    print(f"reliability: {outcome.path} ({outcome.duration_s:.0f} s)")
    print(
        f"{failed} of {len(checks)} checks failed" if failed else f"all {len(checks)} checks passed"
    )
    return 0 if outcome.passed else 1
