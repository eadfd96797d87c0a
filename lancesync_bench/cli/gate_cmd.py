"""``lancesync-bench gate``: benchmark two commits in alternating rounds; exit 1 on a regression."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lancesync_bench.cli.compare_cmd import add_key_filter_options, add_rule_options
from lancesync_bench.cli.options import add_command, add_s3_option

__all__ = ["register", "run"]

_DESCRIPTION = """\
The regression gate, like `asv continuous`: check out BASE and HEAD (git worktrees in a
temporary folder), run `lancesync-bench run --quick` on each in alternating rounds (A B B A
A B ...; each round its own process with PYTHONPATH on that checkout), then judge HEAD
against BASE with the rules of `lancesync-bench compare`: per round, each key's median,
scaled by its cell's reference-job median as far as the key follows it; a t-test across
rounds; Benjamini-Hochberg over the keys; regression only when B/A >= --threshold and the
corrected p < --alpha. A shift the rounds' noise can explain is "unsure", which never
fails the gate. One warm-up round runs first and is not judged (--warmup).

Default subset: scenario desktop-local on the loopback profile, quick sizes, service only
(no baselines), 5 rounds a side: about 2-3 minutes on 2 cores. Widen it with --scenario,
--profile, --baselines; narrow what is judged with --operation and --size.

Exit status: 0 no regression, 1 at least one regression, 2 bad input (not a git
repository, unknown revision, bad options) or a round that could not run.
"""


def _rounds(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {text}")
    return value


def register(subparsers: Any) -> None:
    """Add the ``gate`` subcommand."""
    from lancesync_bench.bench.continuous import (
        DEFAULT_PROFILES,
        DEFAULT_ROUNDS,
        DEFAULT_SCENARIOS,
    )

    p = add_command(
        subparsers,
        "gate",
        summary="benchmark two commits in alternating rounds; exit 1 on a regression",
        description=_DESCRIPTION,
    )
    p.add_argument("base", nargs="?", default="HEAD~1", metavar="BASE", help="default: HEAD~1")
    p.add_argument("head", nargs="?", default="HEAD", metavar="HEAD", help="default: HEAD")
    p.add_argument("--repo", type=Path, default=Path("."), help="git repository (default: .)")
    p.add_argument(
        "--rounds",
        type=_rounds,
        default=DEFAULT_ROUNDS,
        help=f"rounds per revision (default: {DEFAULT_ROUNDS}; 1 can never show a regression)",
    )
    p.add_argument(
        "--confirm-rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        metavar="N",
        help=(
            "new rounds a side that must find a slower key slower again before the gate "
            f"fails (default: {DEFAULT_ROUNDS}, run only when a key was flagged; 0: off)"
        ),
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=1,
        metavar="N",
        help="rounds run first and thrown away: cold caches after a checkout (default: 1)",
    )
    p.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help=f"scenario to run (repeatable; default: {', '.join(DEFAULT_SCENARIOS)})",
    )
    p.add_argument(
        "--profile",
        action="append",
        metavar="NAME",
        help=f"network profile (repeatable; default: {', '.join(DEFAULT_PROFILES)})",
    )
    add_key_filter_options(
        p,
        operations="default: every operation measured",
        sizes="rounds run each scenario's quick sizes",
    )
    p.add_argument("--baselines", action="store_true", help="measure the baselines too")
    add_s3_option(p, "S3 server (default: auto)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="keep the rounds in OUT/A and OUT/B (default: a temporary folder, removed)",
    )
    add_rule_options(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def _progress(line: str) -> None:
    print(f"gate: {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run the gate; 1 on a regression, 2 on bad input or a failed round, else 0."""
    from lancesync_bench.bench.compare import CompareInputError, format_comparison
    from lancesync_bench.bench.continuous import (
        DEFAULT_PROFILES,
        DEFAULT_SCENARIOS,
        GateError,
        GateInputError,
        GateOptions,
        run_gate,
    )
    from lancesync_bench.results import ResultsError

    opts = GateOptions(
        base=args.base,
        head=args.head,
        repo=args.repo,
        rounds=args.rounds,
        warmup_rounds=args.warmup,
        confirm_rounds=args.confirm_rounds,
        scenarios=tuple(args.scenario or DEFAULT_SCENARIOS),
        profiles=tuple(args.profile or DEFAULT_PROFILES),
        operations=tuple(args.operation),
        sizes=tuple(args.size),
        baselines=args.baselines,
        s3=args.s3,
        out=args.out,
        threshold=args.threshold,
        alpha=args.alpha,
        normalise=not args.raw,
    )
    try:
        outcome = run_gate(opts, progress=_progress)
    except (GateInputError, GateError, CompareInputError, ResultsError) as exc:
        print(f"lancesync-bench gate: error: {exc}", file=sys.stderr)
        return 2
    result = outcome.comparison
    if args.json:
        data = result.as_dict()
        data.update(
            base=args.base,
            head=args.head,
            base_commit=outcome.base_commit,
            head_commit=outcome.head_commit,
            duration_s=round(outcome.duration_s, 1),
            confirmation=None if outcome.confirmation is None else outcome.confirmation.as_dict(),
        )
        print(json.dumps(data, indent=2, allow_nan=False))
    else:
        print(
            f"A = {args.base} ({outcome.base_commit[:12]}), B = {args.head} "
            f"({outcome.head_commit[:12]}); {outcome.duration_s:.0f} s"
        )
        print(format_comparison(result))
        if outcome.confirmation is not None:
            print("\nConfirmation (new rounds, the keys judged slower above):")
            print(format_comparison(outcome.confirmation))
    if result.regressions:
        names = ", ".join(sorted({r.operation for r in result.regressions}))
        print(f"gate: FAIL: regression in {names}", file=sys.stderr)
        return 1
    print("gate: pass: no regression", file=sys.stderr)
    return 0
