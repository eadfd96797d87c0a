"""Kill trials: SIGKILL a writer at a seeded random moment of a sync, a backup, an
S3-primary write or a local write (``writes``: single documents through the write log,
with flushes and compaction running), then prove the remote table is whole and nothing
acknowledged was lost.

Each kind has one device folder that is killed again and again (as a laptop that keeps
crashing would be), so every trial also starts from the wreck of the one before. After a
kill: plain LanceDB opens the user's S3 table and reads every row (a complete version), a
rerun in this process (the same folder and device id) completes its sync, backup or write,
and the live rows, remote and local, include every acknowledged write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lancesync_bench.chaos.common import (
    BACKUP,
    PRIMARY,
    SYNC,
    Acked,
    content_hash,
    document,
    missing_acked,
    mode_env,
    open_service,
    remote_live,
    service_live,
    torn_uploads,
)
from lancesync_bench.chaos.context import SuiteContext
from lancesync_bench.chaos.report import Section

__all__ = ["ForkServer", "run_kill_trials"]

NAME = "kill"
TITLE = "Kill -9 during sync, backup and S3-primary writes"

KINDS = {"sync": SYNC, "backup": BACKUP, "primary": PRIMARY, "writes": BACKUP}
# Importing LanceDB can take tens of seconds on a loaded machine; the server says hello
# after that. Once it runs, a trial's events come every ~0.1-0.5 s: a minute of silence
# means it is stuck, not slow.
_HELLO_TIMEOUT_S = 300.0
_STALL_S = 60.0
# Without a measured duration yet, a kill lands within the first 100 ms of the operation.
_DEFAULT_OP_S = 0.1
# Operations shorter than this (local writes through the write log) are over before the
# kill could be timed inside them.
_SHORT_OP_S = 0.005
_POOL = 30  # document ids per kind: batches of up to 3 overwrite earlier writes often


class ForkServer:
    """The worker fork server as a context manager; reads its output line by line."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._buf = b""
        self._lines: list[str] = []
        self.live_pid: int | None = None

    def __enter__(self) -> ForkServer:
        self._log = open(self.log_path, "ab")  # closed in close()
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "lancesync_bench.chaos.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill a trial still running, end the server, reap both."""
        if self.live_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.live_pid, signal.SIGKILL)
            self.live_pid = None
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
            assert proc.stdout is not None
            proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def line(self, timeout_s: float) -> str | None:
        """The next output line, or None when nothing came within ``timeout_s``."""
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        fd = self._proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while not self._lines:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(timeout=left):
                    return None
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"the kill-trial worker exited; see {self.log_path}")
                self._buf += chunk
                *done, self._buf = self._buf.split(b"\n")
                self._lines += [d.decode() for d in done]
        return self._lines.pop(0)

    def hello(self) -> None:
        """Wait until the server has imported everything."""
        line = self.line(_HELLO_TIMEOUT_S)
        if line != "hello":
            raise RuntimeError(f"the kill-trial worker did not start (got {line!r})")

    def send(self, request: dict[str, Any]) -> None:
        """Ask for one trial (the settings travel on stdin, never on a command line)."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write((json.dumps(request) + "\n").encode())
        self._proc.stdin.flush()


@dataclass
class TrialRun:
    """What the driver saw of one trial."""

    acked: list[tuple[str, int]] = field(default_factory=list)
    exit_code: int | None = None
    killed: bool = False
    killed_mid_op: bool = False
    kill_delay_ms: float = 0.0
    op_ms: list[float] = field(default_factory=list)
    problem: str | None = None


class _Killer:
    """Reacts to one trial's events: counts acknowledgements, picks the moment, kills."""

    def __init__(self, server: ForkServer, *, acks: int, fraction: float) -> None:
        self.server = server
        self.acks = acks
        self.fraction = fraction
        self.run = TrialRun()
        self.pid: int | None = None
        self.target: str | None = None
        self.seen_acks = 0

    def on_event(self, word: str, rest: str) -> bool:
        """Handle one event; True once the child is gone."""
        run = self.run
        if word == "pid":
            self.pid = self.server.live_pid = int(rest)
        elif word == "ack":
            self.seen_acks += 1
            for item in rest.split():
                doc_id, _, seq = item.partition(":")
                run.acked.append((doc_id, int(seq)))
        elif word == "done":
            op, _, ms = rest.partition(" ")
            if self.seen_acks:  # the first transfer creates the table: not typical
                run.op_ms.append(float(ms))
            if run.killed and op == self.target:
                run.killed_mid_op = False  # the operation finished before the signal landed
        elif word == "begin":
            self._maybe_kill(rest)
        elif word == "exit":
            run.exit_code = int(rest)
            self.server.live_pid = None
            return True
        elif word == "end":
            run.problem = "the worker ran out of rounds before the kill"
        return False

    def _maybe_kill(self, rest: str) -> None:
        run = self.run
        if run.killed or self.pid is None or self.seen_acks < self.acks:
            return
        op, _, stamp = rest.partition(" ")
        recent = sorted(run.op_ms[-7:])
        typical = (recent[len(recent) // 2] if recent else _DEFAULT_OP_S * 1000) / 1000
        delay = self.fraction * typical
        wait = int(stamp) / 1e9 + delay - time.monotonic()
        if wait < 0 and typical >= _SHORT_OP_S:
            return  # read too late for this operation: take the next one
        # A sub-millisecond write ends before its line is read: the kill lands now, at a
        # moment the random count of acknowledged writes already made random.
        time.sleep(max(0.0, wait))
        os.kill(self.pid, signal.SIGKILL)
        run.killed, run.killed_mid_op, self.target = True, True, op
        run.kill_delay_ms = round(delay * 1000, 1)


def drive_trial(
    server: ForkServer, request: dict[str, Any], *, acks: int, fraction: float
) -> TrialRun:
    """Run one trial: after ``acks`` acknowledged writes, SIGKILL the child ``fraction`` of
    a typical operation's duration after the start of a sync, backup or write.

    The child stamps each ``begin`` with the system-wide monotonic clock, so the kill time
    is exact even when its line is read late; an operation whose kill moment has already
    passed is skipped and the next one is taken.
    """
    tag = f"T{int(request['trial'])} "
    killer = _Killer(server, acks=acks, fraction=fraction)
    server.send(request)
    while True:
        line = server.line(_STALL_S)
        if line is None:
            killer.run.problem = f"no word from the trial for {_STALL_S:.0f} s"
            return killer.run
        if line.startswith(tag):
            word, _, rest = line[len(tag) :].partition(" ")
            if killer.on_event(word, rest):
                return killer.run


async def _rerun(
    ctx: SuiteContext, kind: str, path: Path, user: str, *, acked: Acked, seq: int
) -> tuple[list[str], str]:
    """Reopen the killed device in this process and complete its operation (S3-primary:
    one more write, acknowledged); then the acknowledged ids the device itself has lost,
    and its content hash (local-primary) or ``""`` (S3-primary, read through the cache)."""
    ep = ctx.endpoint_below("kill")
    async with open_service(KINDS[kind], path, ep, device=f"k-{kind}") as svc:
        if kind == "writes":  # reopening replayed the log: every acknowledged write is back
            return _lost_seqs(await _seqs(svc, user, acked), acked), ""
        if kind == "primary":
            await svc.add_documents(user, [document("w-rerun", seq, writer="rerun")])
            acked.add("w-rerun", seq)
            lost = []
            for doc_id, want in acked.seqs.items():
                doc = await svc.get_document(user, doc_id)
                if doc is None or int(doc["metadata"]["seq"]) < want:
                    lost.append(doc_id)
            return lost, ""
        report = await (svc.sync(user) if kind == "sync" else svc.backup(user))
        if not report.reachable:
            raise RuntimeError(f"rerun {kind}: S3 unreachable: {report.error}")
        live = await service_live(svc, user)
        return missing_acked(live, acked), content_hash(live)


async def _seqs(svc: Any, user: str, acked: Acked) -> dict[str, int]:
    """The ``seq`` each acknowledged id holds now (-1 when absent)."""
    out = {}
    for doc_id in acked.seqs:
        doc = await svc.get_document(user, doc_id)
        out[doc_id] = -1 if doc is None else int(doc["metadata"]["seq"])
    return out


def _lost_seqs(seqs: dict[str, int], acked: Acked) -> list[str]:
    """Ids whose newest acknowledged write is not what they hold."""
    return [d for d, want in acked.seqs.items() if seqs.get(d, -1) < want]


async def _one_kind(
    ctx: SuiteContext, server: ForkServer, kind: str, trials: int
) -> list[dict[str, Any]]:
    """``trials`` kill trials of one kind on one device folder; one row per trial."""
    rng = ctx.rng(f"kill-{kind}")
    ep = ctx.endpoint_below("kill")
    user = f"k-{kind}"
    path = ctx.folder("kill", kind)
    acked = Acked.empty()
    rows = []
    secret = ep.secret_access_key.reveal()
    for t in range(trials):
        trial_no = {"sync": 0, "backup": 1, "primary": 2, "writes": 3}[kind] * 1000 + t
        request = {
            "trial": trial_no,
            "kind": kind,
            "user": user,
            "endpoint": {
                "url": ep.url,
                "region": ep.region,
                "access_key_id": ep.access_key_id,
                "secret_access_key": secret,
                "bucket": ep.bucket,
                "prefix": ep.prefix,
            },
            "env": mode_env(KINDS[kind], path, ep, device=f"k-{kind}"),
            "seq_base": (t + 1) * 1_000_000,
            "seed": rng.randrange(2**31),
            "pool": _POOL,
            "max_rounds": 5000,
        }
        # Sustained writes: the kill lands after 5-300 acknowledged writes, anywhere in the
        # log's flush and compaction cycle; transfers: after 1-4 writes, inside a transfer.
        acks = rng.randint(5, 300) if kind == "writes" else rng.randint(1, 4)
        run = await asyncio.to_thread(
            drive_trial, server, request, acks=acks, fraction=rng.random()
        )
        for doc_id, seq in run.acked:
            acked.add(doc_id, seq)
        row: dict[str, Any] = {
            "kind": kind,
            "trial": t,
            "acknowledged_writes": len(run.acked),
            "killed": run.killed and run.exit_code == -signal.SIGKILL,
            "killed_mid_operation": run.killed_mid_op,
            "kill_delay_ms": run.kill_delay_ms,
            "problem": run.problem,
        }
        rerun_seq = (t + 1) * 1_000_000 + 999_999  # above every write of this trial
        row.update(await _check_after_kill(ctx, kind, path, user, acked=acked, rerun_seq=rerun_seq))
        # Writes stay local. S3 holding an upload the server kept cut short is the server's
        # doing: the trial still needs the rerun to repair it and S3 to open after it.
        remote_ok = (
            row["remote_opened"]
            or kind == "writes"
            or bool(row.get("server_torn_uploads") and row["rerun_ok"])
        )
        row["complete"] = bool(
            row["killed"] and remote_ok and row["rerun_ok"] and not row["problem"]
        )
        if not row["killed"] or row["problem"]:
            # The child's traceback (if any) is in the worker's log: keep its end.
            tail = server.log_path.read_text(errors="replace")[-600:]
            row["worker_log_tail"] = tail.replace(secret, "***")
        rows.append(row)
    return rows


async def _check_after_kill(
    ctx: SuiteContext, kind: str, path: Path, user: str, *, acked: Acked, rerun_seq: int
) -> dict[str, Any]:
    ep = ctx.endpoint_below("kill")
    out: dict[str, Any] = {"remote_opened": False, "rerun_ok": False, "lost": []}
    lost: set[str] = set()
    if kind == "writes":  # nothing of this kind is sent to S3: check the device alone
        try:
            local_lost, _ = await _rerun(ctx, kind, path, user, acked=acked, seq=rerun_seq)
            out["rerun_ok"] = True
            out["lost"] = sorted(local_lost)
        except Exception as exc:
            out["rerun_error"] = f"{type(exc).__name__}: {exc}"[:300]
            out["lost"] = ["<unverified>"]
        return out
    try:
        before = await remote_live(ep, user)
        out["remote_opened"] = True
        out["remote_rows_before_rerun"] = len(before)
        if kind == "primary":  # an acknowledged S3-primary write is on S3 at once
            lost |= set(missing_acked(before, acked))
    except Exception as exc:
        out["remote_error"] = f"{type(exc).__name__}: {exc}"[:300]
        # An empty object the S3 server kept of an upload the kill cut short (SeaweedFS
        # does; S3 does not) makes the table unreadable until the rerun removes it.
        out["server_torn_uploads"] = await asyncio.to_thread(torn_uploads, ep, user)
    start = time.perf_counter()
    try:
        local_lost, local_hash = await _rerun(ctx, kind, path, user, acked=acked, seq=rerun_seq)
        out["rerun_ok"] = True
        out["rerun_s"] = round(time.perf_counter() - start, 3)
        after = await remote_live(ep, user)
        lost |= set(local_lost) | set(missing_acked(after, acked))
        if local_hash:
            out["remote_equals_local"] = local_hash == content_hash(after)
    except Exception as exc:
        out["rerun_error"] = f"{type(exc).__name__}: {exc}"[:300]
        lost.add("<unverified>")
    out["lost"] = sorted(lost)
    return out


async def run_kill_trials(ctx: SuiteContext, section: Section, server: ForkServer) -> None:
    """The kill-trial section (``server`` was started early so its import overlaps)."""
    await asyncio.to_thread(server.hello)
    rows: list[dict[str, Any]] = []
    for kind in KINDS:
        trials = ctx.scale.write_kill_trials if kind == "writes" else ctx.scale.kill_trials_per_kind
        rows += await _one_kind(ctx, server, kind, trials)
    lost = sum(len(r["lost"]) for r in rows)
    complete = sum(r["complete"] for r in rows)
    section.figure(
        trials=len(rows),
        complete=complete,
        rows_lost=lost,
        killed_mid_operation=sum(r["killed_mid_operation"] for r in rows),
        server_torn_uploads=sum(len(r.get("server_torn_uploads", [])) for r in rows),
        acknowledged_writes=sum(r["acknowledged_writes"] for r in rows),
        by_kind={
            k: {
                "trials": sum(r["kind"] == k for r in rows),
                "complete": sum(r["complete"] for r in rows if r["kind"] == k),
                "rows_lost": sum(len(r["lost"]) for r in rows if r["kind"] == k),
            }
            for k in KINDS
        },
    )
    section.cases = rows
    bad = [r for r in rows if not r["complete"]]
    section.check(
        "every trial killed mid-run, remote opened (transfers; or repaired by the rerun when "
        "the server kept an upload cut short), rerun completed",
        not bad,
        f"{complete}/{len(rows)} complete"
        + (f"; first failure: {_describe(bad[0])}" if bad else ""),
    )
    section.check(
        "no acknowledged write lost",
        lost == 0,
        f"{lost} lost of {sum(r['acknowledged_writes'] for r in rows)} acknowledged"
        + (f"; e.g. {next(r for r in rows if r['lost'])['lost'][:5]}" if lost else ""),
    )
    mismatched = [r for r in rows if r.get("remote_equals_local") is False]
    section.check(
        "after the rerun S3 holds exactly the device's live documents",
        not mismatched,
        f"{len(mismatched)} trial(s) differ" if mismatched else "content hashes equal",
    )


def _describe(row: dict[str, Any]) -> str:
    keys = ("kind", "trial", "killed", "problem", "remote_error", "rerun_error", "check_error")
    return ", ".join(f"{k}={row.get(k)}" for k in keys if row.get(k) not in (None, False, []))
