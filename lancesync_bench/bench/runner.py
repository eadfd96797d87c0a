"""The benchmark run: scenarios x sizes x network profiles, then results and verdicts."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lancesync_bench.bench.cell import CellPlan, measure_cell
from lancesync_bench.bench.env_scenario import env_scenario
from lancesync_bench.bench.mode_summary import format_summary
from lancesync_bench.bench.recorder import FailedOperation, failure_text
from lancesync_bench.bench.summary import format_baselines, format_missing_tools
from lancesync_bench.bench.sweep import SweepError, run_sweep
from lancesync_bench.bench.verdicts import (
    comparison_rows,
    format_machine_noise,
    format_verdicts,
    machine_noise,
    recall_rows,
    stats_rows,
    verdict_rows,
)
from lancesync_bench.errors import ConfigError
from lancesync_bench.results import SampleRow, collect_metadata, new_run_id, write_run
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.s3.select import open_s3
from lancesync_bench.scenarios import Scenario, load_scenarios
from lancesync_bench.workload import available_memory, table_memory

__all__ = ["RunOptions", "RunOutcome", "default_scenarios_dir", "run_benchmark", "tool_cells"]


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
    sweep: bool = True  # run the scenarios' [sweep] tables (never in quick mode)
    from_env: bool = False  # measure the mode this shell's environment resolves to (--env)
    # Every profile of each scenario, not only its default ones (--long: cross-region).
    long: bool = False


@dataclass
class RunOutcome:
    """Where the results went and what they say."""

    run_dir: Path
    verdict_table: str  # summary per storage mode, the table, the machine-noise line
    comparison_table: str
    failures: int  # verdicts that missed their target
    s3_reason: str
    duration_s: float
    machine_noise: dict[str, Any] = field(default_factory=dict)  # see verdicts.machine_noise
    # Operations that raised or reported failure (S3 unreachable, say): never samples.
    failed_operations: list[FailedOperation] = field(default_factory=list)
    sweep: list[dict[str, Any]] = field(default_factory=list)  # the sweep's summary rows
    # Folder-copy tools skipped as not installed: how to install each, what it would add.
    missing_tools: str = ""
    # Cells not measured because another cell of the run measures exactly the same thing.
    measured_once: str = ""


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="cell", disable=not enabled, file=sys.stderr, leave=True)


def _cells_of(sc: Scenario, opts: RunOptions) -> list[tuple[Any, int]]:
    return sc.cells(quick=opts.quick, profiles=opts.profiles or None, every_profile=opts.long)


def _plan_cells(scenarios: list[Scenario], opts: RunOptions) -> list[tuple[Scenario, Any, int]]:
    cells = []
    for sc in scenarios:
        for profile, size in _cells_of(sc, opts):
            cells.append((sc, profile, size))
    if not cells:
        raise ConfigError(
            "nothing to run: the chosen scenarios and --profile values select no cell"
        )
    _check_memory(cells, quick=opts.quick)
    return cells


# The variables that only choose the storage mode: two scenarios that differ in nothing else
# run the same code on the same data.
_MODE_CHOOSERS = frozenset({"FRONTEND_TYPE", "BACKEND_LOCATION"})


def _same_work(sc: Scenario, profile: Any, size: int, opts: RunOptions) -> tuple[Any, ...]:
    """What a cell measures and how it is judged, without the scenario's name."""
    w = sc.workload
    plan = CellPlan.for_scenario(
        sc, quick=opts.quick, baselines=opts.baselines, profile=profile.name, size=size
    )
    env = sorted((k, v) for k, v in sc.env.items() if k not in _MODE_CHOOSERS)
    data = (w.dim, w.seed, w.batch_size, w.queries, w.n_clusters, w.data)
    steps = repr(sorted(vars(plan).items()))
    return (sc.storage_mode, tuple(env), profile, size, steps, data, sc.targets)


def measured_once(
    cells: list[tuple[Scenario, Any, int]], opts: RunOptions
) -> tuple[list[tuple[Scenario, Any, int]], list[dict[str, Any]]]:
    """Drop a cell that would repeat an earlier one exactly: same storage mode, settings,
    data, table size, profile, plan and targets, the scenarios differing only in the
    variables that chose the mode (both desktop scenarios resolve to the same backup mode
    and would time the same code twice: ~35 s of a default run). Returns the cells to
    measure and one ``skipped`` row per dropped cell, naming the cell that measures it."""
    per_scenario = Counter(sc.name for sc, _, _ in cells)
    # The scenario with the most cells keeps a shared one (desktop-local over desktop-cloud).
    order = sorted(range(len(cells)), key=lambda i: -per_scenario[cells[i][0].name])
    first: dict[tuple[Any, ...], str] = {}
    dropped: dict[int, dict[str, Any]] = {}
    for i in order:
        sc, profile, size = cells[i]
        key = _same_work(sc, profile, size, opts)
        where = f"{sc.name}/{profile.name}/{size}"
        if key in first:
            reason = (
                f"the same storage mode ({sc.storage_mode.value}), settings, data, plan and "
                f"targets as {first[key]}, which measures it"
            )
            dropped[i] = {"what": "cell", "reason": reason, "cells": [where]}
        else:
            first[key] = where
    kept = [cell for i, cell in enumerate(cells) if i not in dropped]
    return kept, [dropped[i] for i in sorted(dropped)]


def _check_memory(cells: list[tuple[Scenario, Any, int]], *, quick: bool) -> None:
    """Refuse, before anything starts, a table size this machine's memory cannot hold."""
    available = available_memory()
    if available is None:
        return
    for sc, _, size in cells:
        need = table_memory(size, sc.workload.dim)
        if need > available:
            key = "quick_sizes" if quick else "sizes"
            raise ConfigError(
                f"{sc.path}: workload.{key}: a {size:,}-row table of {sc.workload.dim} "
                f"dimensions needs about {need / 2**30:.1f} GiB of memory, more than the "
                f"{available / 2**30:.1f} GiB available; use smaller sizes"
            )


def _load(opts: RunOptions) -> list[Scenario]:
    """The scenarios to run: named ones, all in the folder, or the environment's (--env)."""
    folder = opts.scenarios_dir
    if not folder.is_dir():
        what = "not a folder" if folder.exists() else "no such folder"
        raise ConfigError(f"--scenarios-dir {folder}: {what}")
    if not any(folder.glob("*.toml")):
        raise ConfigError(f"--scenarios-dir {folder}: no scenario files (*.toml) in it")
    if opts.from_env:
        if opts.scenarios:
            raise ConfigError("--env runs the environment's configuration: drop --scenario")
        return [env_scenario(load_scenarios(folder))]
    return load_scenarios(folder, list(opts.scenarios) or None)


def _sweeps(scenarios: list[Scenario], opts: RunOptions) -> tuple[list[Scenario], list[Any]]:
    """Scenarios whose sweep runs, and skip records for the ones that do not."""
    having = [sc for sc in scenarios if sc.sweep is not None]
    if not having:
        return [], []
    if opts.quick or not opts.sweep:
        # Quick mode skips the sweep: it starts up to max(users) processes that each import
        # LanceDB and seed a table, which alone would take a third of a smoke run's budget.
        why = "quick mode" if opts.quick else "--no-sweep"
        reason = f"{why}: the concurrency sweep was not run"
        return [], [{"what": "sweep", "reason": reason, "cells": [sc.name for sc in having]}]
    if opts.profiles:
        chosen = [sc for sc in having if sc.sweep and sc.sweep.profile in opts.profiles]
        left = [sc.name for sc in having if sc not in chosen]
        skips = []
        if left:
            reason = "its sweep profile was not among the --profile values"
            skips.append({"what": "sweep", "reason": reason, "cells": left})
        return chosen, skips
    return having, []


def _skip_rows(extras: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each cell's ``skipped`` mapping, gathered as (what, reason) with the cells affected."""
    found: dict[tuple[str, str], list[str]] = {}
    for cell in extras:
        for what, reason in cell.pop("skipped", {}).items():
            where = f"{cell['scenario']}/{cell['profile']}/{cell['size']}"
            found.setdefault((what, reason), []).append(where)
    return [{"what": w, "reason": r, "cells": cells} for (w, r), cells in found.items()]


def tool_cells(
    cells: Sequence[tuple[Scenario, Any, int]], *, quick: bool
) -> set[tuple[str, str, int]]:
    """The (scenario, profile, size) cells that run the folder-copy tools.

    Per storage mode and profile, the first scenario's smallest table only: a one-document
    change copies the same few files at any size and in every scenario of one mode (both
    desktop scenarios back up the same way), and every run of a tool costs a process
    start-up (0.4-2 s for the aws CLI on 2 busy cores). Quick mode keeps only each mode's
    first profile, which is enough to exercise the code path.
    """
    chosen: dict[tuple[str, str], tuple[str, int]] = {}
    first_profile: dict[str, str] = {}
    for sc, profile, size in cells:
        mode = sc.storage_mode.value
        key = (mode, profile.name)
        name, smallest = chosen.get(key, (sc.name, size))
        if name == sc.name:
            chosen[key] = (name, min(size, smallest))
        first_profile.setdefault(mode, profile.name)
    return {
        (name, profile, size)
        for (mode, profile), (name, size) in chosen.items()
        if not quick or first_profile[mode] == profile
    }


@dataclass
class _Collected:
    """What the cells and sweeps of one run measured."""

    samples: list[SampleRow] = field(default_factory=list)
    cells: list[dict[str, Any]] = field(default_factory=list)
    sweep: list[dict[str, Any]] = field(default_factory=list)
    sweep_duration_s: dict[str, float] = field(default_factory=dict)
    failed: list[FailedOperation] = field(default_factory=list)


def _measure_all(
    cells: list[tuple[Scenario, Any, int]],
    sweeps: list[Scenario],
    opts: RunOptions,
    *,
    endpoint: S3Endpoint,
    workdir: Path,
    run_id: str,
    bar: Any,
) -> _Collected:
    """Measure every cell, then run every sweep, advancing the progress bar."""
    out = _Collected()
    with_tools = tool_cells(cells, quick=opts.quick)
    for sc, profile, size in cells:
        bar.set_description(f"{sc.name} {profile.name} {size}")
        started = time.perf_counter()
        plan = CellPlan.for_scenario(
            sc,
            quick=opts.quick,
            baselines=opts.baselines,
            tools=(sc.name, profile.name, size) in with_tools,
            profile=profile.name,
            size=size,
        )
        rec = asyncio.run(
            measure_cell(
                sc, profile, size, endpoint=endpoint, workdir=workdir, plan=plan, run_id=run_id
            )
        )
        out.samples += rec.samples
        out.failed += rec.failures
        took = round(time.perf_counter() - started, 1)
        where = {"scenario": sc.name, "profile": profile.name, "size": size}
        out.cells.append({**where, "duration_s": took, **rec.extras})
        bar.update(1)
    for sc in sweeps:
        bar.set_description(f"{sc.name} concurrency sweep")
        started = time.perf_counter()
        try:
            swept = run_sweep(sc, endpoint, workdir=workdir, run_id=run_id)
        except SweepError as exc:
            profile = sc.sweep.profile if sc.sweep is not None else "-"
            out.failed.append(
                FailedOperation(
                    sc.name,
                    sc.storage_mode.value,
                    profile,
                    0,
                    "sweep",
                    "service",
                    "warm",
                    None,
                    failure_text(exc),
                )
            )
            bar.update(1)
            continue
        out.sweep_duration_s[sc.name] = round(time.perf_counter() - started, 1)
        out.samples += swept.samples
        out.sweep += swept.summary
        bar.update(1)
    return out


def run_benchmark(
    opts: RunOptions, *, progress: bool = True, say: Callable[[str], None] | None = None
) -> RunOutcome:
    """Run the benchmark and write ``<out>/<run-id>/results.json`` with samples and verdicts."""
    say = say or (lambda msg: print(msg, file=sys.stderr))
    started = time.perf_counter()
    scenarios = _load(opts)
    if opts.from_env:
        say(f"--env: {scenarios[0].description}")
    cells, same_skips = measured_once(_plan_cells(scenarios, opts), opts)
    sweeps, sweep_skips = _sweeps(scenarios, opts)
    run_id = new_run_id()
    workdir = Path(tempfile.mkdtemp(prefix="lancesync-bench-"))
    try:
        with open_s3(opts.s3) as selection:
            say(f"S3: {selection.kind} ({selection.reason})")
            if selection.endpoint.url is None or not selection.endpoint.url.startswith("http://"):
                raise ConfigError(
                    "the benchmark measures S3 through a local delay proxy, which needs a plain "
                    f"http:// endpoint; got {selection.endpoint.url or 'AWS S3 (https)'}"
                )
            with _progress(len(cells) + len(sweeps), progress) as bar:
                got = _measure_all(
                    cells,
                    sweeps,
                    opts,
                    endpoint=selection.endpoint,
                    workdir=workdir,
                    run_id=run_id,
                    bar=bar,
                )
            s3_info = {
                **selection.endpoint.to_dict(),
                "kind": selection.kind,
                "reason": selection.reason,
            }
            secret = selection.endpoint.secret_access_key.reveal()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    samples = got.samples
    by_name = {sc.name: sc for sc in scenarios}
    stats = stats_rows(samples)
    verdicts = verdict_rows(stats, by_name) + recall_rows(got.cells, by_name)
    comparisons = comparison_rows(samples)
    noise = machine_noise(samples)
    skipped = same_skips + _skip_rows(got.cells) + sweep_skips
    profiles = {p.name: p for sc in scenarios for p, _ in _cells_of(sc, opts)}
    metadata = collect_metadata(s3_info, profiles.values())
    metadata["quick"] = opts.quick
    json_path = write_run(
        opts.out / run_id,
        metadata=metadata,
        scenarios=[sc.to_dict() for sc in scenarios],
        stats_rows=stats,
        samples_rows=samples,
        verdict_rows=verdicts,
        extra={
            "cells": got.cells,
            "comparisons": comparisons,
            "sweep": got.sweep,
            "sweep_duration_s": got.sweep_duration_s,
            "skipped": skipped,
            "machine_noise": noise,
            "failed_operations": [f.as_dict() for f in got.failed],
        },
        secrets=[secret],
        run_id=run_id,
    )
    return RunOutcome(
        run_dir=json_path.parent,
        # The answer leads (one line per storage mode), then the details; the noise line
        # rides with the table, so it is printed once wherever the table is.
        verdict_table=(
            f"{format_summary(verdicts)}\n\n{format_verdicts(verdicts)}\n"
            f"{format_machine_noise(noise)}"
        ),
        comparison_table=format_baselines(comparisons),
        missing_tools=format_missing_tools(skipped, samples),
        measured_once="\n".join(
            f"{row['cells'][0]}: not measured again: {row['reason']}" for row in same_skips
        ),
        failures=sum(v["status"] == "FAIL" for v in verdicts),
        s3_reason=f"{selection.kind} ({selection.reason})",
        duration_s=time.perf_counter() - started,
        machine_noise=noise,
        failed_operations=got.failed,
        sweep=got.sweep,
    )
