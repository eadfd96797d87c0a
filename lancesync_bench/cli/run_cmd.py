"""``lancesync-bench run``: the benchmark, ending with the verdict table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lancesync_bench.cli.options import (
    add_command,
    add_fail_on_miss_option,
    add_out_option,
    add_s3_option,
)
from lancesync_bench.cli.outputs import check_output_folder

__all__ = ["exit_code", "register"]

_DESCRIPTION = """\
Measure read and write latency of every scenario's storage mode, through the real storage
service, against a real S3 server: local reads and writes, S3 writes and cache misses,
sync/backup/restore/refresh. In the same cells, baselines a user could run instead: plain
LanceDB on local disk and on S3, and `aws s3 sync` / `rclone sync` of the table folder
(skipped, with the reason recorded, when not installed). Scenarios with a [sweep] table
also run a concurrency sweep (N processes, open-loop schedule). Network profiles add
round-trip time with a local delay proxy. Results go to OUT/<run-id>/results.json
(+ samples.csv); the verdict against the documented targets (local < 10 ms; S3 50-200 ms)
and the service/baseline ratios are printed at the end.

With no arguments: every scenario, the default profiles (loopback and same-region), on
the `auto` S3 server (MinIO in testcontainers where Docker runs, otherwise the embedded
SeaweedFS). About 6-7 minutes on 2 cores; --quick (no sweep, fewer repetitions)
under 2 minutes. The verdict leads with one line per storage mode, then the table: each
judged percentile with its 95% interval (PASS/FAIL only when the whole interval is on one
side of the target, else UNSURE), recall@10 beside every vector search, where each target
came from (default or a scenario's [targets]), samples taken while the CPU ran slow, and a
reference job's spread: see the README.

--env measures your own configuration instead: the storage mode FRONTEND_TYPE,
BACKEND_LOCATION and the other variables `config` reads resolve to (errors as `config`
reports them), with the workload of the scenario file of that mode.

Exit status: 0 measured; 1 some operations failed (never recorded as samples; listed at
the end and in results.json), or with --fail-on-miss a judged target is FAIL; 2 bad
arguments, scenario or configuration.
"""


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand."""
    p = add_command(
        subparsers,
        "run",
        summary="run the benchmark and print the verdict",
        description=_DESCRIPTION,
    )
    p.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME",
        help="scenario to run (repeatable; default: all files in scenarios/)",
    )
    add_s3_option(p)
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="NAME",
        help="network profile (repeatable; default: each scenario's default profiles)",
    )
    p.add_argument(
        "--quick", action="store_true", help="small tables and fewer repetitions (CI smoke)"
    )
    p.add_argument(
        "--long",
        action="store_true",
        help=(
            "every network profile of each scenario, not only its default ones: adds"
            " cross-region (80 ms RTT, 8 cells), about 6 minutes more than the default run"
        ),
    )
    add_out_option(p)
    p.add_argument("--scenarios-dir", type=Path, default=None, help="where scenario files live")
    p.add_argument(
        "--no-baselines",
        action="store_true",
        help="measure the service only (no plain LanceDB, aws s3 sync or rclone figures)",
    )
    p.add_argument(
        "--no-sweep",
        action="store_true",
        help="skip the concurrency sweep (quick mode always does)",
    )
    p.add_argument(
        "--env",
        action="store_true",
        help=(
            "benchmark the storage mode this shell's environment resolves to (FRONTEND_TYPE, "
            "BACKEND_LOCATION, ... as `config` shows it) instead of the scenario files"
        ),
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_fail_on_miss_option(
        p, "exit 1 when any judged target is FAIL (UNSURE does not fail; 2: bad input)"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from lancesync_bench.bench.env_scenario import mode_variables_set
    from lancesync_bench.bench.runner import RunOptions, default_scenarios_dir, run_benchmark
    from lancesync_bench.bench.summary import format_failures, format_sweep

    opts = RunOptions(
        scenarios=args.scenario,
        s3=args.s3,
        profiles=args.profile,
        quick=args.quick,
        long=args.long,
        out=args.out,
        scenarios_dir=args.scenarios_dir or default_scenarios_dir(),
        baselines=not args.no_baselines,
        sweep=not args.no_sweep,
        from_env=args.env,
    )
    check_output_folder(opts.out)  # before measuring: a bad --out costs nothing
    if not args.env and (names := mode_variables_set()):
        print(
            f"note: {', '.join(names)} set in the environment; the scenario files are "
            "measured, --env would measure the environment's configuration",
            file=sys.stderr,
        )
    outcome = run_benchmark(opts, progress=not args.no_progress)
    print(outcome.verdict_table)
    print()
    if opts.baselines:
        print("Service against baselines (median latency, service / baseline, in words)")
        print(outcome.comparison_table)
        if outcome.missing_tools:
            print(outcome.missing_tools)
        print()
    if outcome.measured_once:
        print(outcome.measured_once)
        print()
    if sweep := format_sweep(outcome.sweep):
        print("Concurrency sweep (latency from each operation's intended start)")
        print(sweep)
        print()
    print(f"S3 server: {outcome.s3_reason}")
    print(f"results: {outcome.run_dir / 'results.json'} ({outcome.duration_s:.0f} s)")
    if outcome.failures:
        print(f"{outcome.failures} target(s) missed")
    elif outcome.failed_operations:
        print("no judged target missed, but the run is incomplete: operations failed")
    else:
        print(
            "no judged target missed (BELOW = under the S3 band: loopback or emulated network;"
            " UNSURE = the interval straddles the target or n is too small)"
        )
    if outcome.failed_operations:
        print(format_failures(outcome.failed_operations))
    return exit_code(
        outcome.failures,
        fail_on_miss=args.fail_on_miss,
        failed_operations=bool(outcome.failed_operations),
    )


def exit_code(failures: int, *, fail_on_miss: bool, failed_operations: bool = False) -> int:
    """1 when operations failed, or with ``--fail-on-miss`` when a judged target is FAIL;
    else 0 (UNSURE never fails)."""
    return 1 if failed_operations or (fail_on_miss and failures) else 0
