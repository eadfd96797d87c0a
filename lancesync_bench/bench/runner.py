"""The benchmark run: scenarios x sizes x network profiles, then results and verdicts."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lancesync_bench.bench.cell import CellPlan, measure_cell
from lancesync_bench.bench.verdicts import format_verdicts, stats_rows, verdict_rows
from lancesync_bench.errors import ConfigError
from lancesync_bench.results import SampleRow, collect_metadata, new_run_id, write_run
from lancesync_bench.s3.select import open_s3
from lancesync_bench.scenarios import Scenario, load_scenarios

__all__ = ["RunOptions", "RunOutcome", "default_scenarios_dir", "run_benchmark"]


def default_scenarios_dir() -> Path:
    """``scenarios/`` of the checkout this package runs from, else of the current folder."""
    here = Path(__file__).resolve().parents[2] / "scenarios"
    return here if here.is_dir() else Path("scenarios")


@dataclass(frozen=True)
class RunOptions:
    """What ``lancesync-bench run`` was asked to do."""

    scenarios: Sequence[str] = ()
    s3: str = "auto"
    profiles: Sequence[str] = ()
    quick: bool = False
    out: Path = Path("results")
    scenarios_dir: Path = field(default_factory=default_scenarios_dir)
    baselines: bool = True


@dataclass
class RunOutcome:
    """Where the results went and what they say."""

    run_dir: Path
    verdict_table: str
    failures: int
    s3_reason: str
    duration_s: float


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="cell", disable=not enabled, file=sys.stderr, leave=True)


def _plan_cells(scenarios: list[Scenario], opts: RunOptions) -> list[tuple[Scenario, Any, int]]:
    cells = []
    for sc in scenarios:
        for profile, size in sc.cells(quick=opts.quick, profiles=opts.profiles or None):
            cells.append((sc, profile, size))
    if not cells:
        raise ConfigError(
            "nothing to run: the chosen scenarios and --profile values select no cell"
        )
    return cells


def run_benchmark(
    opts: RunOptions, *, progress: bool = True, say: Callable[[str], None] | None = None
) -> RunOutcome:
    """Run the benchmark and write ``<out>/<run-id>/results.json`` with samples and verdicts."""
    say = say or (lambda msg: print(msg, file=sys.stderr))
    started = time.perf_counter()
    scenarios = load_scenarios(opts.scenarios_dir, list(opts.scenarios) or None)
    cells = _plan_cells(scenarios, opts)
    run_id = new_run_id()
    samples: list[SampleRow] = []
    extras: list[dict[str, Any]] = []
    workdir = Path(tempfile.mkdtemp(prefix="lancesync-bench-"))
    try:
        with open_s3(opts.s3) as selection:
            say(f"S3: {selection.kind} ({selection.reason})")
            if selection.endpoint.url is None or not selection.endpoint.url.startswith("http://"):
                raise ConfigError(
                    "the benchmark measures S3 through a local delay proxy, which needs a plain "
                    f"http:// endpoint; got {selection.endpoint.url or 'AWS S3 (https)'}"
                )
            bar = _progress(len(cells), progress)
            with bar:
                for sc, profile, size in cells:
                    bar.set_description(f"{sc.name} {profile.name} {size}")
                    rec = asyncio.run(
                        measure_cell(
                            sc,
                            profile,
                            size,
                            endpoint=selection.endpoint,
                            workdir=workdir,
                            plan=CellPlan.for_scenario(sc, quick=opts.quick),
                            run_id=run_id,
                        )
                    )
                    samples += rec.samples
                    extras.append(
                        {"scenario": sc.name, "profile": profile.name, "size": size, **rec.extras}
                    )
                    bar.update(1)
            s3_info = {
                **selection.endpoint.to_dict(),
                "kind": selection.kind,
                "reason": selection.reason,
            }
            secret = selection.endpoint.secret_access_key.reveal()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    by_name = {sc.name: sc for sc in scenarios}
    stats = stats_rows(samples)
    verdicts = verdict_rows(stats, by_name)
    profiles = {
        p.name: p
        for sc in scenarios
        for p, _ in sc.cells(quick=opts.quick, profiles=opts.profiles or None)
    }
    metadata = collect_metadata(s3_info, profiles.values())
    metadata["quick"] = opts.quick
    json_path = write_run(
        opts.out / run_id,
        metadata=metadata,
        scenarios=[sc.to_dict() for sc in scenarios],
        stats_rows=stats,
        samples_rows=samples,
        verdict_rows=verdicts,
        extra={"cells": extras},
        secrets=[secret],
        run_id=run_id,
    )
    return RunOutcome(
        run_dir=json_path.parent,
        verdict_table=format_verdicts(verdicts),
        failures=sum(v["status"] == "FAIL" for v in verdicts),
        s3_reason=f"{selection.kind} ({selection.reason})",
        duration_s=time.perf_counter() - started,
    )
