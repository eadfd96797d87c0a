"""``lancesync-bench compare``: runs B against runs A, per operation; exit 1 on a regression."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lancesync_bench.cli.options import add_command

__all__ = ["register", "run"]

_SEPARATOR = "vs"

_DESCRIPTION = """\
Compare benchmark runs key by key (scenario, profile, size, operation, path; warm and cold
samples). Each run is a round: per round and key the figure is the median latency, beside
the median of the reference job (fixed CPU work) timed in the same cell. B/A is the ratio
of the rounds' geometric means at equal reference speed: a fit scales each round by the
reference as far as the key follows it (dividing by it when there are fewer than 6
rounds), so a round on a slower machine is scaled back, but a reference job slowed alone
does not turn into a regression. raw B/A leaves the reference out.

The test weighs a key's shift against the spread BETWEEN rounds (a t-test on the log
figures), never against the samples of one run: on a shared machine a whole run drifts
(2x a minute apart for one commit), and samples within it share that drift. p-values are
corrected for the number of keys (Benjamini-Hochberg).

Verdicts: regression = B/A >= --threshold and p < --alpha; improvement = the mirror rule;
same = the 95% CI of B/A lies within 1/threshold..threshold; unsure = the noise between
rounds is too large to tell (never a regression); untested = fewer than 2 rounds a side
for this key; reference = the reference job's row (how fast B's machine ran against A's).

With one run a side the noise between runs cannot be estimated: no key is tested and
none is a regression (unsure = B/A past the threshold, untested = within it).

  compare RUN_A RUN_B               each a run folder, its results.json, or a folder of
                                    runs (every run in it is a round)
  compare A1 A2 A3 vs B1 B2 B3      several rounds a side, named one by one

`lancesync-bench gate` benchmarks two commits in alternating rounds and compares them.

Exit status: 0 no regression, 1 at least one regression, 2 bad input.
"""


def _ratio(text: str) -> float:
    value = float(text)
    if not value > 1.0:
        raise argparse.ArgumentTypeError(f"must be a ratio above 1 (1.3 = 30 % slower); got {text}")
    return value


def _alpha(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive); got {text}")
    return value


def add_rule_options(p: argparse.ArgumentParser) -> None:
    """--threshold, --alpha and --raw: the regression rule (shared with ``gate``)."""
    from lancesync_bench.bench.gate import DEFAULT_ALPHA, DEFAULT_THRESHOLD

    p.add_argument(
        "--threshold",
        type=_ratio,
        default=DEFAULT_THRESHOLD,
        help=f"B/A ratio that counts as a regression (default: {DEFAULT_THRESHOLD:g}: smaller"
        " shifts are within the rounds' drift on a shared 2-core machine)",
    )
    p.add_argument(
        "--alpha",
        type=_alpha,
        default=DEFAULT_ALPHA,
        help=f"false discovery rate over the keys (default: {DEFAULT_ALPHA:g})",
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="judge raw medians (leave the reference job out)",
    )


def add_key_filter_options(p: argparse.ArgumentParser, *, operations: str, sizes: str) -> None:
    """--operation and --size: which keys are judged (shared with ``gate``); ``operations``
    and ``sizes`` end each option's help, after "repeatable; "."""
    p.add_argument(
        "--operation",
        action="append",
        default=[],
        metavar="NAME",
        help=f"judge only this operation (repeatable; {operations})",
    )
    p.add_argument(
        "--size",
        action="append",
        type=int,
        default=[],
        metavar="ROWS",
        help=f"judge only this table size (repeatable; {sizes})",
    )


def register(subparsers: Any) -> None:
    """Add the ``compare`` subcommand to ``subparsers``."""
    p = add_command(
        subparsers,
        "compare",
        summary="compare runs per operation across rounds; exit 1 on a regression",
        description=_DESCRIPTION,
    )
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help=f"RUN_A RUN_B, or A1 [A2 ...] {_SEPARATOR} B1 [B2 ...]",
    )
    add_rule_options(p)
    add_key_filter_options(p, operations="default: every operation", sizes="default: every size")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def split_sides(runs: list[str]) -> tuple[list[str], list[str]]:
    """(A runs, B runs) from ``A B`` or ``A1 A2 ... vs B1 B2 ...``; ValueError otherwise."""
    if _SEPARATOR in runs:
        i = runs.index(_SEPARATOR)
        a, b = runs[:i], runs[i + 1 :]
        if a and b and _SEPARATOR not in b:
            return a, b
    elif len(runs) == 2:
        return [runs[0]], [runs[1]]
    raise ValueError(
        f"expected RUN_A RUN_B or A1 [A2 ...] {_SEPARATOR} B1 [B2 ...]; got {' '.join(runs)}"
    )


def run(args: argparse.Namespace) -> int:
    """Print the comparison; 1 when any key regressed, 2 when the input is unusable, else 0."""
    from lancesync_bench.bench.compare import CompareInputError, compare_runs, format_comparison
    from lancesync_bench.results import ResultsError

    try:
        side_a, side_b = split_sides(args.runs)
        result = compare_runs(
            side_a,
            side_b,
            threshold=args.threshold,
            alpha=args.alpha,
            normalise=not args.raw,
            operations=args.operation,
            sizes=args.size,
        )
    except (ValueError, CompareInputError, ResultsError) as exc:
        # One line, exit 2: a missing or unreadable run is a usage error, not a regression.
        print(f"lancesync-bench compare: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, allow_nan=False))
    else:
        print(format_comparison(result))
    return 1 if result.regressions else 0
