"""``lancesync-bench sync-cost``: what sync and S3-primary writes cost, beside raw S3 requests."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from lancesync_bench.cli.options import (
    add_command,
    add_fail_on_miss_option,
    add_out_option,
    add_s3_option,
)

__all__ = ["register"]

_DESCRIPTION = """\
Measure what the S3 side of the storage service costs, through the delay proxy under the
loopback and same-region (20 ms RTT) profiles, each figure interleaved in one loop with
raw boto3 requests through the same proxy:

  sync with nothing new          beside one raw one-key LIST (its floor)
  sync after one new document    beside a raw LIST + PUT + PUT, one after another (the
                                 requests a push makes; it overlaps the LIST with the data),
                                 sent by boto3 and by the lean client the sync uses for them
  S3-primary single write        beside LanceDB adding one row straight to the bucket
  sustained S3-primary writes    median per window against the first (also net of a raw
                                 PUT timed beside each write), p99, longest stall
  reopening a cache              requests against the files of the latest version

Targets: a no-change sync is 1 request and <= 5 ms on loopback; a one-document sync
<= 25 ms on loopback and <= 3 round trips + 10 ms same-region; an S3-primary write no
slower than LanceDB's own add and, same-region, <= 4 round trips + 10 ms and (being one
PUT of a log object) within 1.2x of one raw PUT; sustained writes keep the last window's
median within 1.2x of the first, p99 <= 3x p50, no stall over 500 ms; a reopen reads one
listing (and one per index folder the newest push did not add) and the latest version's
files.

Results go to OUT/<run-id>-sync-cost/sync_cost.json. About 2 minutes by default; the
issue's 10-minute sustained check is --sustained-s 600. Exit 0 whatever the verdicts
(--fail-on-miss exits 1 on a FAIL).
"""


def register(subparsers: Any) -> None:
    """Add the ``sync-cost`` subcommand."""
    p = add_command(
        subparsers,
        "sync-cost",
        summary="measure sync and S3-primary write costs against raw S3 requests",
        description=_DESCRIPTION,
    )
    p.add_argument("--rounds", type=int, default=120, help="loopback rounds (default 120)")
    p.add_argument(
        "--sustained-s",
        type=float,
        default=60.0,
        help="seconds of sustained S3-primary writes (default 60)",
    )
    p.add_argument("--quick", action="store_true", help="30 rounds, 15 s sustained")
    add_s3_option(p)
    add_out_option(p)
    add_fail_on_miss_option(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from lancesync_bench.bench.sync_cost import (
        SyncCostOptions,
        judge_sync_cost,
        measure_sync_cost,
    )
    from lancesync_bench.cli.outputs import check_output_folder, elapsed_progress, write_checks
    from lancesync_bench.errors import ConfigError
    from lancesync_bench.results import new_run_id
    from lancesync_bench.s3.select import open_s3

    if args.rounds < 30:
        raise ConfigError(f"--rounds={args.rounds} is out of range; allowed: >= 30")
    if not 10 <= args.sustained_s <= 3_600:
        raise ConfigError(
            f"--sustained-s={args.sustained_s:g} is out of range; allowed: 10 to 3600"
        )
    check_output_folder(args.out)
    opts = (
        SyncCostOptions(rounds=30, sustained_s=15.0, window_s=5.0)
        if args.quick
        else SyncCostOptions(
            rounds=args.rounds,
            sustained_s=args.sustained_s,
            window_s=max(10.0, args.sustained_s / 10),
        )
    )
    start = time.perf_counter()
    progress = elapsed_progress()
    with open_s3(args.s3) as selection:
        endpoint = selection.endpoint
        if endpoint.url is None or not endpoint.url.startswith("http://"):
            raise ConfigError(
                f"sync-cost measures through the delay proxy, which needs a plain-HTTP "
                f"endpoint; {endpoint.describe()} is not one"
            )
        progress(f"S3: {selection.kind} ({selection.reason})")
        result = asyncio.run(measure_sync_cost(endpoint, opts, progress=progress))
        result["s3"] = selection.to_dict()
    result["wall_s"] = round(time.perf_counter() - start, 1)
    path = args.out / f"{new_run_id()}-sync-cost" / "sync_cost.json"
    return write_checks(
        path, result, judge_sync_cost(result), label="sync-cost", fail_on_miss=args.fail_on_miss
    )
