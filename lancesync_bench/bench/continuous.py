"""Benchmark two commits in alternating rounds and judge them (like ``asv continuous``).

Each revision is checked out once (``git worktree add --detach`` into a temporary
folder). Each round is one ``python -m lancesync_bench run --quick`` process with
``PYTHONPATH`` set to that checkout, so the code measured is the revision's own; the
round's ``results.json`` must then name the revision's commit, or the gate stops. Rounds
go A B B A A B ...: each side runs first as often as the other, so a machine that speeds
up or slows down over the job (a cold disk cache at the start, a neighbour arriving) tilts
neither side. One warm-up round runs first and is thrown away: the first benchmark process
after a checkout pays for cold file caches (measured here: its point reads 3x, its batch
writes 2x the later rounds', with the reference job unmoved). The rounds are judged by
:func:`lancesync_bench.bench.compare.compare_runs`.

A key judged slower is confirmed before the gate fails: as many new rounds again, in the
same alternating order, must judge it slower on their own. A real slowdown shows in both
sets; a false alarm of the first (each key's test is wrong at the rate its p-value allows,
and the rounds drift 1.5-2x within minutes here) rarely repeats on independent rounds. The
extra rounds run only when a key was flagged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from lancesync_bench import results
from lancesync_bench.bench.compare import CompareRow, RunComparison, compare_runs
from lancesync_bench.bench.gate import DEFAULT_ALPHA, DEFAULT_THRESHOLD, MIN_ROUNDS
from lancesync_bench.bench.slowdown import ENV_VAR as SLOWDOWN_ENV
from lancesync_bench.errors import LanceSyncError

__all__ = [
    "DEFAULT_PROFILES",
    "DEFAULT_ROUNDS",
    "DEFAULT_SCENARIOS",
    "GateError",
    "GateInputError",
    "GateOptions",
    "GateOutcome",
    "confirmed",
    "resolve_revision",
    "round_order",
    "run_gate",
]

# 5 rounds a side: with 2-3 a side the t-test has 2-4 degrees of freedom, and a 1.5x
# slowdown of a key whose rounds move by ~15 % (FACTS.md) rarely survives the correction
# for ~8 keys; 5 a side (8 degrees of freedom) catches it. Each quick round of the default
# subset takes ~12 s on 2 busy cores, so 10 rounds stay near 2-3 minutes.
DEFAULT_ROUNDS = 5
# The default subset: the local-first scenario on loopback, whose operations (point read,
# vector search, one and 100 document writes, backup, restore, cold open) are the service's
# own code paths with no emulated network to blur them; about 12 s a quick round.
DEFAULT_SCENARIOS = ("desktop-local",)
DEFAULT_PROFILES = ("loopback",)
# A quick round takes ~12 s; one that runs 15 minutes has hung (a stuck S3 server).
_ROUND_TIMEOUT_S = 900
_LOG_TAIL = 20  # lines of a failed round's output shown


class GateInputError(LanceSyncError, ValueError):
    """Not a git repository, or a revision git does not know."""


class GateError(LanceSyncError):
    """A round could not run, or ran other code than its revision's."""


@dataclass(frozen=True)
class GateOptions:
    """What to benchmark and how to judge it."""

    base: str = "HEAD~1"
    head: str = "HEAD"
    repo: Path = Path(".")
    rounds: int = DEFAULT_ROUNDS
    scenarios: Sequence[str] = DEFAULT_SCENARIOS
    profiles: Sequence[str] = DEFAULT_PROFILES
    operations: Sequence[str] = ()  # judge only these (empty: every operation)
    sizes: Sequence[int] = ()  # judge only these table sizes (rounds run the quick sizes)
    baselines: bool = False  # the service's own figures are what a commit changes
    s3: str = "auto"
    out: Path | None = None  # keep the rounds in OUT/A and OUT/B (default: removed)
    threshold: float = DEFAULT_THRESHOLD
    alpha: float = DEFAULT_ALPHA
    normalise: bool = True
    warmup_rounds: int = 1  # run first on side A, never judged (see the module docstring)
    # New rounds a side that must judge a flagged key slower again (0: fail on the first
    # judgement; see the module docstring).
    confirm_rounds: int = DEFAULT_ROUNDS
    # Extra environment of the candidate's rounds only. For the gate's own tests (the
    # test-only slowdown switch); the inherited environment never carries that switch.
    candidate_env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GateOutcome:
    """The judged comparison, the commits behind each side, and how long it took."""

    comparison: RunComparison
    base_commit: str
    head_commit: str
    duration_s: float
    # The rounds that judged the flagged keys again (None: nothing was flagged, or
    # confirmation is off). A key stays a regression in ``comparison`` only when it is
    # one here too.
    confirmation: RunComparison | None = None


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=False, capture_output=True, text=True, timeout=60
    )


def resolve_revision(repo: Path, rev: str) -> str:
    """The full commit id ``rev`` names in ``repo``; GateInputError when there is none."""
    if _git(repo, "rev-parse", "--git-dir").returncode != 0:
        raise GateInputError(f"{repo}: not a git repository (the gate checks out revisions)")
    done = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if done.returncode != 0 or not done.stdout.strip():
        raise GateInputError(f"{rev!r}: no such revision in {repo}")
    return done.stdout.strip()


@contextmanager
def _checkout(repo: Path, commit: str, where: Path) -> Iterator[Path]:
    """A detached worktree of ``commit`` at ``where``, removed (and pruned) afterwards."""
    done = _git(repo, "worktree", "add", "--detach", "--quiet", str(where), commit)
    if done.returncode != 0:
        raise GateError(f"cannot check out {commit[:12]}: {done.stderr.strip()}")
    try:
        yield where
    finally:
        _git(repo, "worktree", "remove", "--force", str(where))
        shutil.rmtree(where, ignore_errors=True)
        _git(repo, "worktree", "prune")


def _compile(tree: Path) -> None:
    """Byte-compile a fresh checkout, so no round pays for it."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(tree / "lancesync_bench")],
        check=False,
        capture_output=True,
        timeout=300,
    )


def round_order(rounds: int) -> list[str]:
    """Sides in running order: A B, then B A, then A B ... (``rounds`` of each)."""
    return [side for i in range(rounds) for side in (("A", "B") if i % 2 == 0 else ("B", "A"))]


def _round_command(opts: GateOptions, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "lancesync_bench", "run", "--quick", "--no-progress"]
    cmd += ["--out", str(out), "--s3", opts.s3]
    cmd += [arg for s in opts.scenarios for arg in ("--scenario", s)]
    cmd += [arg for p in opts.profiles for arg in ("--profile", p)]
    return cmd if opts.baselines else [*cmd, "--no-baselines"]


def _run_round(checkout: Path, commit: str, out: Path, opts: GateOptions, side: str) -> Path:
    """One benchmark process on ``checkout``; the run folder it wrote."""
    env = {k: v for k, v in os.environ.items() if k != SLOWDOWN_ENV}
    env["PYTHONPATH"] = str(checkout)  # this revision's package, not the installed one
    if side == "B":
        env.update(opts.candidate_env)
    before = {p.name for p in out.iterdir()} if out.is_dir() else set()
    try:
        done = subprocess.run(
            _round_command(opts, out),
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=_ROUND_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise GateError(f"a round of {commit[:12]} ran over {_ROUND_TIMEOUT_S} s") from None
    new = (
        [out / n for n in sorted({p.name for p in out.iterdir()} - before)] if out.is_dir() else []
    )
    runs = [p for p in new if (p / results.RESULTS_FILE).is_file()]
    if done.returncode != 0 or len(runs) != 1:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-_LOG_TAIL:])
        raise GateError(
            f"the benchmark of {commit[:12]} (side {side}) exited {done.returncode}"
            f" with {len(runs)} run(s) written; its last lines:\n{tail}"
        )
    ran = results.load_run(runs[0]).get("metadata", {}).get("git_commit")
    if ran != commit:
        raise GateError(
            f"a round meant for {commit[:12]} ran code from {ran or 'outside git'}: "
            "PYTHONPATH did not select the checkout"
        )
    return runs[0]


def run_gate(opts: GateOptions, progress: Callable[[str], None] | None = None) -> GateOutcome:
    """Check out both revisions, run the rounds alternately, and judge B against A.

    ``progress`` receives one line per step. Raises GateInputError (bad repository or
    revision, bad options) before anything runs, GateError when a round fails.
    """
    say = progress or (lambda _line: None)
    if opts.rounds < 1 or opts.warmup_rounds < 0:
        raise GateInputError(
            f"rounds must be >= 1 and warm-up rounds >= 0; got {opts.rounds}, {opts.warmup_rounds}"
        )
    if opts.confirm_rounds != 0 and opts.confirm_rounds < MIN_ROUNDS:
        raise GateInputError(
            f"confirmation rounds must be 0 (off) or >= {MIN_ROUNDS} (fewer can judge "
            f"nothing); got {opts.confirm_rounds}"
        )
    repo = opts.repo.resolve()
    base = resolve_revision(repo, opts.base)
    head = resolve_revision(repo, opts.head)
    start = time.perf_counter()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lancesync-gate-")))
        out = opts.out if opts.out is not None else tmp / "rounds"
        trees = {"A": stack.enter_context(_checkout(repo, base, tmp / "a"))}
        trees["B"] = (
            trees["A"] if head == base else stack.enter_context(_checkout(repo, head, tmp / "b"))
        )
        commits = {"A": base, "B": head}
        say(f"A = {opts.base} ({base[:12]}), B = {opts.head} ({head[:12]})")
        for tree in dict.fromkeys(trees.values()):
            _compile(tree)
        for i in range(opts.warmup_rounds):
            t0 = time.perf_counter()
            _run_round(trees["A"], base, tmp / "warmup", opts, "A")
            say(
                f"warm-up round {i + 1}/{opts.warmup_rounds} (not judged): "
                f"{time.perf_counter() - t0:.0f} s"
            )
        runs = _alternate(trees, commits, out, opts, rounds=opts.rounds, label="round", say=say)
        comparison = _judge(runs, opts, opts.operations)
        confirmation = None
        flagged = sorted({r.operation for r in comparison.regressions})
        if flagged and opts.confirm_rounds >= MIN_ROUNDS:
            say(
                f"slower: {', '.join(flagged)}; confirming on {opts.confirm_rounds} new "
                "rounds a side"
            )
            again = _alternate(
                trees,
                commits,
                out / "confirm",
                opts,
                rounds=opts.confirm_rounds,
                label="confirm round",
                say=say,
            )
            confirmation = _judge(again, opts, flagged)
            comparison = confirmed(comparison, confirmation)
    return GateOutcome(comparison, base, head, time.perf_counter() - start, confirmation)


def _alternate(
    trees: dict[str, Path],
    commits: dict[str, str],
    out: Path,
    opts: GateOptions,
    *,
    rounds: int,
    label: str,
    say: Callable[[str], None],
) -> dict[str, list[Path]]:
    """``rounds`` rounds of each side in :func:`round_order`; each side's run folders."""
    order = round_order(rounds)
    runs: dict[str, list[Path]] = {"A": [], "B": []}
    for i, side in enumerate(order, 1):
        t0 = time.perf_counter()
        run = _run_round(trees[side], commits[side], out / side, opts, side)
        runs[side].append(run)
        say(
            f"{label} {i}/{len(order)}: {side} ({commits[side][:12]}) "
            f"{time.perf_counter() - t0:.0f} s -> {run.name}"
        )
    return runs


def _judge(
    runs: dict[str, list[Path]], opts: GateOptions, operations: Sequence[str]
) -> RunComparison:
    return compare_runs(
        runs["A"],
        runs["B"],
        threshold=opts.threshold,
        alpha=opts.alpha,
        normalise=opts.normalise,
        operations=operations,
        sizes=opts.sizes,
    )


def _key(row: CompareRow) -> tuple[str, str, int, str, str, str]:
    return (row.scenario, row.profile, row.size, row.operation, row.path, row.phase)


def confirmed(first: RunComparison, again: RunComparison) -> RunComparison:
    """``first`` with each regression kept only where ``again`` (independent rounds) judged
    the same key a regression too; the others become "unsure" (slower once, not twice)."""
    repeated = {_key(r) for r in again.regressions}
    rows = [
        r if r.verdict != "regression" or _key(r) in repeated else replace(r, verdict="unsure")
        for r in first.rows
    ]
    return RunComparison(first.runs_a, first.runs_b, first.threshold, first.alpha, rows)
