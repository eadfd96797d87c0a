"""The reliability suite: every fault section against one real S3 server, one results file.

:func:`run_suite` starts (or finds) the S3 server, gives the run a key prefix of its own,
runs the chosen sections in order, and writes ``<out>/<run-id>/reliability.json``. A
section that raises is recorded as a failed check with the error (secrets masked), and
the next section still runs. The kill-trial worker starts first so that its LanceDB
import overlaps the other sections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lancesync_bench.chaos.context import FULL, QUICK, SuiteContext
from lancesync_bench.chaos.report import (
    RELIABILITY_FILE,
    Section,
    envelope,
    find_secrets,
    leak_paths,
    render_summary,
    serialise,
    write_reliability,
)
from lancesync_bench.errors import ConfigError

__all__ = ["SECTIONS", "SuiteOptions", "SuiteOutcome", "run_suite"]

SectionRun = Callable[[SuiteContext, Section], Awaitable[None]]


def _sections() -> dict[str, tuple[str, SectionRun | None]]:
    """Name -> (title, runner), each from its section module, in :data:`SECTIONS` order.

    The kill trials (None) also need the worker server, which :func:`_run_all` starts.
    The modules load here, not at import: they bring in the storage service (pyarrow,
    botocore), and the command line imports this module for :data:`SECTIONS` alone.
    """
    from lancesync_bench.chaos import (
        background,
        bad_input,
        clock_skew,
        devices,
        flaky,
        integrity,
        kill,
        lost_answers,
        outage,
        security,
    )

    return {
        integrity.NAME: (integrity.TITLE, integrity.run_integrity),
        bad_input.NAME: (bad_input.TITLE, bad_input.run_bad_input),
        devices.NAME: (devices.TITLE, devices.run_devices),
        flaky.NAME: (flaky.TITLE, flaky.run_flaky),
        outage.NAME: (outage.TITLE, outage.run_outage),
        clock_skew.NAME: (clock_skew.TITLE, clock_skew.run_clock_skew),
        lost_answers.NAME: (lost_answers.TITLE, lost_answers.run_lost_answers),
        background.NAME: (background.TITLE, background.run_background_failures),
        kill.NAME: (kill.TITLE, None),
        # Last: its secret scan reads what every other section wrote and said.
        security.NAME: (security.TITLE, security.run_security),
    }


# The sections' NAMEs in run order, spelled out so that the command line gets them without
# importing the section modules (a unit test checks they match _sections()).
SECTIONS: tuple[str, ...] = (
    "integrity",
    "bad_input",
    "devices",
    "flaky",
    "outage",
    "clock_skew",
    "lost_answers",
    "background",
    "kill",
    "security",
)


@dataclass(frozen=True, kw_only=True)
class SuiteOptions:
    """What ``lancesync-bench chaos`` was asked to do."""

    quick: bool = False
    out: Path = Path("results")
    s3: str = "auto"
    seed: int = 0
    only: Sequence[str] = ()
    progress: bool = True  # one line on stderr as each section starts and ends

    def sections(self) -> list[str]:
        """The sections to run, in the suite's order."""
        unknown = sorted(set(self.only) - set(SECTIONS))
        if unknown:
            raise ConfigError(
                f"chaos section {unknown[0]!r} is not known; allowed: {', '.join(SECTIONS)}"
            )
        return [s for s in SECTIONS if not self.only or s in self.only]


@dataclass
class SuiteOutcome:
    """What a run did: its sections, file, summary table and verdict."""

    run_dir: Path
    path: Path
    sections: list[Section]
    summary: str
    passed: bool
    duration_s: float
    document: dict[str, Any] = field(default_factory=dict)


def _mask(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


async def _run_section(ctx: SuiteContext, section: Section, run: Awaitable[None]) -> None:
    try:
        await run
    except Exception as exc:
        tail = traceback.format_exc().strip().splitlines()[-6:]
        section.figure(error=_mask(f"{type(exc).__name__}: {exc}", ctx.secrets))
        section.figure(traceback_tail=[_mask(line, ctx.secrets) for line in tail])
        section.check(
            "section ran to completion",
            False,
            _mask(f"{type(exc).__name__}: {exc}", ctx.secrets),
        )
    section.finish()


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(f"chaos: {message}", file=sys.stderr, flush=True)


async def _run_all(ctx: SuiteContext, names: list[str], *, progress: bool) -> list[Section]:
    from lancesync_bench.chaos.kill import ForkServer, run_kill_trials
    from lancesync_bench.chaos.security import BenchmarkRun
    from lancesync_bench.chaos.summaries import summarise

    table = _sections()
    sections: list[Section] = []
    log = ctx.workdir / "kill-worker.log"
    ctx.outputs.append(log)
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(ForkServer(log)) if "kill" in names else None
        if "security" in names:
            ctx.benchmark_run = stack.enter_context(BenchmarkRun(ctx))
        for i, name in enumerate(names, 1):
            title, run = table[name]
            section = Section(name, title)
            sections.append(section)
            _say(progress, f"[{i}/{len(names)}] {name}: {title} ...")
            started = time.perf_counter()
            if name in ("kill", "security") and ctx.benchmark_run is not None:
                # Overlaps the kill trials, which mostly wait on their worker.
                ctx.benchmark_run.start()
            if run is None:
                assert server is not None
                await _run_section(ctx, section, run_kill_trials(ctx, section, server))
            else:
                await _run_section(ctx, section, run(ctx, section))
            summarise(section)
            passed = sum(c.passed for c in section.checks)
            took = time.perf_counter() - started
            _say(
                progress,
                f"[{i}/{len(names)}] {name}: {passed} of {len(section.checks)} checks passed "
                f"({took:.0f} s)",
            )
    return sections


def _cleanup_prefix(ctx: SuiteContext) -> None:
    """Delete what the run left under its prefix on a server this run did not start."""
    client = ctx.endpoint.client()
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=ctx.endpoint.bucket, Prefix=ctx.endpoint.key() + "/"):
        contents = page.get("Contents", [])
        if contents:
            client.delete_objects(
                Bucket=ctx.endpoint.bucket,
                Delete={"Objects": [{"Key": o["Key"]} for o in contents], "Quiet": True},
            )


def run_suite(options: SuiteOptions) -> SuiteOutcome:
    """Run the suite and write its reliability.json; never raises for a failed check."""
    from lancesync_bench.results import collect_metadata, new_run_id
    from lancesync_bench.s3.select import open_s3

    names = options.sections()
    start = time.perf_counter()
    run_id = new_run_id()
    scale = QUICK if options.quick else FULL
    run_dir = options.out / run_id
    if (run_dir / RELIABILITY_FILE).exists():
        raise ConfigError(
            f"{run_dir / RELIABILITY_FILE} already exists; results are never replaced"
        )
    with (
        open_s3(options.s3) as selection,
        tempfile.TemporaryDirectory(prefix="lancesync-chaos-") as work,
    ):
        _say(options.progress, f"S3: {selection.kind} ({selection.reason})")
        endpoint = selection.endpoint.with_prefix(selection.endpoint.key(f"chaos-{run_id}"))
        ctx = SuiteContext(
            endpoint=endpoint,
            workdir=Path(work),
            quick=options.quick,
            seed=options.seed,
            scale=scale,
            secrets=[endpoint.secret_access_key.reveal()],
        )
        try:
            sections = asyncio.run(_run_all(ctx, names, progress=options.progress))
        finally:
            if selection.kind == "external":
                with contextlib.suppress(Exception):  # best effort: never hide the results
                    _cleanup_prefix(ctx)
        metadata = collect_metadata(s3_info=selection.to_dict())
        metadata["scale"] = asdict(scale)
        metadata["sections"] = names
        _final_scan(ctx, sections, run_id=run_id, options=options, metadata=metadata)
        document = envelope(
            run_id=run_id,
            quick=options.quick,
            seed=options.seed,
            metadata=metadata,
            sections=sections,
        )
        text = serialise(document, ctx.secrets)  # masks any secret (the scan reported it)
        path = write_reliability(run_dir, text)
    summary = render_summary(sections)
    return SuiteOutcome(
        run_dir=run_dir,
        path=path,
        sections=sections,
        summary=summary,
        passed=bool(document["passed"]),
        duration_s=time.perf_counter() - start,
        document=document,
    )


def _final_scan(
    ctx: SuiteContext,
    sections: list[Section],
    *,
    run_id: str,
    options: SuiteOptions,
    metadata: dict[str, Any],
) -> None:
    """Scan the results document and the summary table (as they will be written and
    printed) and the worker's log, and record the outcome in the security section."""
    from lancesync_bench.chaos.security import scan_outputs

    draft = envelope(
        run_id=run_id, quick=options.quick, seed=options.seed, metadata=metadata, sections=sections
    )
    raw = json.dumps(draft, default=str)  # before redaction: what the sections produced
    scan = scan_outputs(ctx, {"summary": render_summary(sections)})
    if find_secrets(raw, ctx.secrets):
        scan["leaks"] += [f"reliability.json at {p}" for p in leak_paths(draft, ctx.secrets)[:5]]
    planted = bool(find_secrets(f"x{ctx.secrets[0]}x", ctx.secrets))  # the scanner works
    target = next((s for s in sections if s.name == "security"), None)
    if target is None:
        target = Section("security", "Secrets in outputs")
        sections.append(target)
    target.figure(final_scan=scan)
    target.check(
        "no secret in reliability.json, the summary or worker logs",
        planted and not scan["leaks"],
        f"{scan['files']} files and {scan['texts']} texts scanned; scanner finds a planted "
        f"secret: {planted}" + (f"; found in {scan['leaks'][:3]}" if scan["leaks"] else ""),
    )
