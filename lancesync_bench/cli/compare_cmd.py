"""``lancesync-bench compare``: run B against run A, per operation; exit 1 on a regression."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register", "run"]

_DESCRIPTION = """\
Compare two benchmark runs key by key (scenario, profile, size, operation, path; warm
samples, and cold ones where both runs hold enough): the ratio of medians and of p95
(B/A, above 1 means B is slower; p95 only where both runs have n >= 20), the Mann-Whitney
p-value, and a bootstrap 95% CI of the median ratio.

A key is a regression when its p50 or p95 ratio reaches --threshold and p < --alpha; an
improvement by the mirror rule; otherwise same (untested: too few samples for the test).
Keys in one run only are listed and never fail the comparison.

RUN_A and RUN_B are run folders (results/<run-id>), their results.json, or a folder of
runs (its most recent run is used).

Exit status: 0 no regression, 1 at least one regression, 2 bad input.
"""


def _ratio(text: str) -> float:
    value = float(text)
    if not value > 1.0:
        raise argparse.ArgumentTypeError(
            f"must be a ratio above 1 (1.10 = 10 % slower); got {text}"
        )
    return value


def _alpha(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive); got {text}")
    return value


def register(subparsers: Any) -> None:
    """Add the ``compare`` subcommand to ``subparsers``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "compare",
        help="compare two runs per operation; exit 1 on a regression",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_a", metavar="RUN_A", help="the baseline run")
    p.add_argument("run_b", metavar="RUN_B", help="the candidate run")
    # The defaults are stats.is_regression's: 10 % is within the run-to-run noise of a
    # shared CI machine, and alpha 1 % keeps false alarms rare across a run's many keys.
    p.add_argument(
        "--threshold",
        type=_ratio,
        default=1.10,
        help="B/A ratio of p50 or p95 that counts as a regression (default: 1.10)",
    )
    p.add_argument(
        "--alpha",
        type=_alpha,
        default=0.01,
        help="significance level of the Mann-Whitney test (default: 0.01)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the comparison; 1 when any key regressed, 2 when the input is unusable, else 0."""
    from lancesync_bench.bench.compare import (
        CompareInputError,
        compare_runs,
        format_comparison,
    )
    from lancesync_bench.results import ResultsError

    try:
        result = compare_runs(args.run_a, args.run_b, threshold=args.threshold, alpha=args.alpha)
    except (CompareInputError, ResultsError) as exc:
        # One line, exit 2: a missing or unreadable run is a usage error, not a regression.
        print(f"lancesync-bench compare: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, allow_nan=False))
    else:
        print(format_comparison(result))
    return 1 if result.regressions else 0
