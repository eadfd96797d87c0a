"""``lancesync-bench tier``: the write tier's targets, measured beside raw LanceDB."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from lancesync_bench.cli.options import add_command, add_fail_on_miss_option, add_out_option

__all__ = ["register"]

_DESCRIPTION = """\
Measure the storage service's local write tier (a write log and an in-memory table in
front of Lance) beside raw LanceDB, interleaved in one loop so that machine drift cancels:
sustained single-document writes (flush, compaction and index upkeep running) against raw
`table.add`; point reads during those writes (two per write) against raw LanceDB on a
static compacted table; 100-document batches, each beside raw `table.add` and a fixed
pure-Python reference job that shows the machine's own tail; durable writes per second
with 1 and 4 writers for each WRITE_DURABILITY setting; and reads after a writer process
was killed with SIGKILL again and again (no acknowledged write may be lost).

Each percentile carries its n and a 95 % order-statistic interval; a ratio is PASS only
when both intervals clear the target, FAIL only when both miss it, otherwise UNSURE.
Results go to OUT/<run-id>/write_tier.json. About 3 minutes on 2 cores; --quick about 35 s.
Exit 0 whatever the verdicts (use --fail-on-miss to exit 1 on a FAIL).
"""


def register(subparsers: Any) -> None:
    """Add the ``tier`` subcommand."""
    p = add_command(
        subparsers,
        "tier",
        summary="measure the write tier against raw LanceDB",
        description=_DESCRIPTION,
    )
    p.add_argument("--rows", type=int, default=10_000, help="table size (default 10000)")
    p.add_argument("--writes", type=int, default=2_000, help="sustained writes (default 2000)")
    p.add_argument("--kills", type=int, default=12, help="SIGKILL restarts (default 12)")
    p.add_argument("--quick", action="store_true", help="2k rows, 400 writes, 3 kills")
    add_out_option(p)
    add_fail_on_miss_option(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from lancesync_bench.bench.tier import (
        TierBenchOptions,
        judge_write_tier,
        measure_write_tier,
    )
    from lancesync_bench.cli.outputs import check_output_folder, elapsed_progress, write_checks
    from lancesync_bench.errors import ConfigError
    from lancesync_bench.results import new_run_id

    for name in ("rows", "writes", "kills"):
        if getattr(args, name) < (1 if name != "kills" else 0):
            raise ConfigError(f"--{name}={getattr(args, name)} is out of range; allowed: >= 1")
    check_output_folder(args.out)
    if args.quick:
        opts = TierBenchOptions(rows=2_000, writes=400, batches=80, throughput_writes=500, kills=3)
    else:
        # Batches: a fifth of the writes (400 by default, enough for a p99 interval).
        opts = TierBenchOptions(
            rows=args.rows,
            writes=args.writes,
            kills=args.kills,
            batches=max(20, args.writes // 5),
            throughput_writes=args.writes,
        )
    run_dir = args.out / f"{new_run_id()}-tier"
    run_dir.mkdir(parents=True)
    work = Path(tempfile.mkdtemp(prefix="lancesync-tier-"))
    start = time.perf_counter()
    try:
        result = asyncio.run(measure_write_tier(work, opts, progress=elapsed_progress()))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    return write_checks(
        run_dir / "write_tier.json",
        result,
        judge_write_tier(result),
        label="write tier",
        fail_on_miss=args.fail_on_miss,
    )
