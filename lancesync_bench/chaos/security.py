"""Security: users stay in their own folder and prefix, and secrets stay out of every output.

Isolation: in each storage mode, user ``alice`` runs every call the API has while user
``bob``'s data sits beside hers. Bob's folder and S3 listing must not change, and every
S3 request alice's calls send (recorded at the proxy, Lance's and boto3's alike) must
address a key or listing prefix inside her own ``users/alice/`` (or the service's one-off
conditional-put probe folder).

Secrets: the S3 secret key must not appear in reprs, ``str()`` or ``to_dict()`` of the
objects that hold it, in error messages, in log records (captured at DEBUG while the
service works), or in anything ``lancesync-bench run`` prints or writes. The suite scans
its own reliability.json and summary the same way before writing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from lancesync_bench.chaos.common import (
    BACKUP,
    DIM,
    LOCAL,
    PRIMARY,
    S3_MODES,
    SYNC,
    document,
    folder_snapshot,
    make_config,
    mode_env,
    open_service,
    s3_listing,
)
from lancesync_bench.chaos.context import SuiteContext
from lancesync_bench.chaos.report import Section, find_secrets
from lancesync_bench.config import LanceDBSyncConfig, Secret
from lancesync_bench.netem import ConditionalStripper, NetworkProfile, S3Proxy
from lancesync_bench.netem.http import RequestHead
from lancesync_bench.s3.probe import PROBE_FOLDER
from lancesync_bench.storage.service import LanceDBStorageService

__all__ = ["BenchmarkRun", "RequestLog", "captured_logs", "run_security", "scan_outputs"]

NAME = "security"
TITLE = "Isolation between users; secrets in outputs"

# `lancesync-bench run --quick` for one scenario takes well under a minute on two idle
# cores; ten minutes means it hangs.
_RUN_TIMEOUT_S = 600.0


MULTI_DELETE = "<multi-object delete>"


class RequestLog:
    """A proxy ``rewrite`` that changes nothing and remembers each request's S3 keys."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self._lock = threading.Lock()
        self.keys: list[str] = []

    def __call__(self, head: RequestHead, raw: bytes) -> bytes:
        parts = urlsplit(head.target)
        path = unquote(parts.path).lstrip("/")
        bucket, _, key = path.partition("/")
        query = parse_qs(parts.query, keep_blank_values=True)
        prefix = query.get("prefix", [""])[0]
        addressed = (key or prefix) if bucket == self.bucket else f"<bucket {bucket!r}>"
        if bucket == self.bucket and not key and "delete" in query:
            # A multi-object delete names its keys in the body, which the proxy does not
            # read: it can only remove objects, so the check below compares bob's listing.
            addressed = MULTI_DELETE
        with self._lock:
            self.keys.append(addressed)
        return raw

    def take(self) -> list[str]:
        """The keys recorded since the last call, and forget them."""
        with self._lock:
            keys, self.keys = self.keys, []
        return keys


async def _alice_calls(svc: LanceDBStorageService, mode: str) -> list[str]:
    """Every API call for alice; returns problems seen in what her reads returned."""
    problems = []
    await svc.add_documents("alice", [document(f"a{i}", i, writer="alice") for i in range(3)])
    if await svc.get_document("alice", "b0") is not None:
        problems.append("alice's get returned bob's document b0")
    hits = await svc.search("alice", [0.1] * DIM, k=10)
    if any(not h["id"].startswith("a") for h in hits):
        problems.append(f"alice's search returned {[h['id'] for h in hits]}")
    await svc.delete_documents("alice", ["a2"])
    await svc.status("alice")
    await svc.maintain("alice")
    await svc.get_user_connection("alice")
    if mode == SYNC:
        await svc.sync("alice")
    elif mode == BACKUP:
        await svc.backup("alice")
        await svc.restore("alice")
    elif mode == PRIMARY:
        await svc.refresh("alice")
    return problems


async def _isolation(ctx: SuiteContext, mode: str, log_text: io.StringIO) -> dict[str, Any]:
    ep = ctx.endpoint_below(f"isolation-{mode}")
    root = ctx.folder("security", mode)
    recorder = RequestLog(ep.bucket)
    with S3Proxy(str(ep.url), NetworkProfile(name="loopback"), rewrite=recorder) as proxy:
        pep = proxy.endpoint_for(ep)
        async with open_service(mode, root, pep, device="iso") as svc:
            await svc.add_documents("bob", [document(f"b{i}", i, writer="bob") for i in range(3)])
            if mode == SYNC:
                await svc.sync("bob")
            elif mode == BACKUP:
                await svc.backup("bob")
            await svc.wait_idle("bob")  # bob's write log flushed, background work done
            bob_folder = folder_snapshot(root / "users" / "bob")
            bob_keys = s3_listing(ep, "users", "bob") if mode != LOCAL else {}
            recorder.take()
            with captured_logs(log_text):
                problems = await _alice_calls(svc, mode)
        sent = recorder.take()
    mine = (ep.key("users", "alice") + "/", ep.key(PROBE_FOLDER) + "/")
    # A listing of exactly alice's table folder (no trailing slash) is hers as well.
    strays = sorted(
        {
            k
            for k in sent
            if not k.startswith(mine) and k not in (ep.key("users", "alice"), MULTI_DELETE)
        }
    )
    return {
        "mode": mode,
        "requests_by_alice": len(sent),
        # Checked by bob_prefix_unchanged: a multi-object delete can only remove keys.
        "multi_object_deletes": sent.count(MULTI_DELETE),
        "requests_outside_her_prefix": strays[:10],
        "bob_folder_unchanged": folder_snapshot(root / "users" / "bob") == bob_folder,
        "bob_prefix_unchanged": (s3_listing(ep, "users", "bob") if mode != LOCAL else {})
        == bob_keys,
        "wrong_results": problems,
    }


@contextlib.contextmanager
def captured_logs(sink: io.StringIO) -> Iterator[None]:
    """Every log record (DEBUG and up, botocore's included) goes to ``sink`` while inside."""
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _object_texts(ctx: SuiteContext) -> dict[str, str]:
    """repr, str and to_dict of everything that holds the secret."""
    ep = ctx.endpoint
    secret = ep.secret_access_key.reveal()
    env = {**mode_env(SYNC, ctx.workdir / "repr", ep, device="r"), **ep.env()}
    config = LanceDBSyncConfig.from_env(env)
    service = LanceDBStorageService(config, endpoint=ep)
    stripper = ConditionalStripper(ep.secret_access_key)
    proxy = S3Proxy(str(ep.url), rewrite=stripper)
    texts = {
        "Secret": f"{ep.secret_access_key!r} {ep.secret_access_key} {ep.secret_access_key:>10}",
        "S3Endpoint": f"{ep!r} {ep} {ep.to_dict()}",
        "LanceDBSyncConfig": f"{config!r} {config} {config.to_dict()}",
        "LanceDBStorageService": f"{service!r} {service}",
        "ConditionalStripper": repr(stripper),
        "S3Proxy": repr(proxy),
        "endpoint with another secret": repr(replace(ep, secret_access_key=Secret(secret[::-1]))),
    }
    return texts


async def _error_texts(ctx: SuiteContext) -> dict[str, str]:
    """Messages of errors raised while the real secret was in use: S3 gone mid-call."""
    ep = ctx.endpoint_below("security-errors")
    texts: dict[str, str] = {}
    with S3Proxy(str(ep.url), NetworkProfile(name="loopback")) as proxy:
        pep = proxy.endpoint_for(ep)
        for mode in S3_MODES:
            root = ctx.folder("security", f"errors-{mode}")
            config = make_config(mode, root, pep, device="e", S3_MAX_RETRIES="0")
            async with LanceDBStorageService(config, endpoint=pep) as svc:
                await svc.add_documents("erin", [document("e1", 1)])
                proxy.cut("reset")
                try:
                    for call in ("add", "sync", "backup", "refresh", "status"):
                        try:
                            if call == "add":
                                await svc.add_documents("erin", [document("e2", 2)])
                            elif call == "status":
                                texts[f"{mode} status"] = repr(await svc.status("erin"))
                            else:
                                report = await getattr(svc, call)("erin")
                                texts[f"{mode} {call} report"] = repr(report)
                        except Exception as exc:
                            texts[f"{mode} {call} error"] = f"{type(exc).__name__}: {exc!s} {exc!r}"
                finally:
                    proxy.restore()
    return texts


class BenchmarkRun:
    """``lancesync-bench run --quick`` against this suite's S3 server, in the background.

    The suite starts it while the kill trials run (they wait on their worker more than they
    compute, and this run's latency figures are not what is checked here); the security
    section collects it and scans everything it printed and wrote. Used as a context
    manager, it never outlives the suite.
    """

    def __init__(self, ctx: SuiteContext) -> None:
        self.ctx = ctx
        self.out = ctx.folder("security", "run-output")
        self._logs = ctx.folder("security", "run-logs")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BenchmarkRun:
        """Launch the command (settings through the environment, as a user would)."""
        if self._proc is not None:
            return self
        ep = self.ctx.endpoint_below("security-run")
        env = {**os.environ, **ep.env(), "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "lancesync_bench", "run", "--quick"]
        cmd += ["--scenario", "desktop-local", "--profile", "loopback", "--out", str(self.out)]
        cmd += ["--s3", "external", "--no-progress"]
        with (
            open(self._logs / "stdout.txt", "wb") as stdout,
            open(self._logs / "stderr.txt", "wb") as stderr,
        ):
            self._proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr)
        return self

    def __enter__(self) -> BenchmarkRun:
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)

    def collect(self) -> dict[str, Any]:
        """Wait for the run; record its output for the scan; figures about it."""
        self.start()
        assert self._proc is not None
        try:
            code: int | None = self._proc.wait(timeout=_RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=30)
            code = None
        self._proc = None
        stdout = (self._logs / "stdout.txt").read_text(errors="replace")
        stderr = (self._logs / "stderr.txt").read_text(errors="replace")
        self.ctx.texts["run --quick stdout"] = stdout
        self.ctx.texts["run --quick stderr"] = stderr
        files = sorted(p for p in self.out.rglob("*") if p.is_file())
        self.ctx.outputs += files
        return {
            "command": "lancesync-bench run --quick --scenario desktop-local --profile loopback "
            "--s3 external (this suite's server, through the environment)",
            "exit_code": code,
            "files_written": [str(p.relative_to(self.out)) for p in files],
            "results_written": any(p.name == "results.json" for p in files),
            "stderr_tail": stderr[-300:] if code != 0 else "",
        }


def scan_outputs(ctx: SuiteContext, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Scan every recorded output file and text for every known secret value."""
    leaks: list[str] = []
    scanned_bytes = 0
    for path in ctx.outputs:
        try:
            text = Path(path).read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        scanned_bytes += len(text)
        if find_secrets(text, ctx.secrets):
            leaks.append(f"file {path}")
    for name, text in {**ctx.texts, **(extra or {})}.items():
        scanned_bytes += len(text)
        if find_secrets(text, ctx.secrets):
            leaks.append(name)
    return {
        "files": len(ctx.outputs),
        "texts": len(ctx.texts) + len(extra or {}),
        "bytes": scanned_bytes,
        "values_searched": len([s for s in ctx.secrets if s]),
        "leaks": leaks,
    }


async def run_security(ctx: SuiteContext, section: Section) -> None:
    """Isolation in every mode, then secret scans of objects, errors, logs and run output."""
    log_text = io.StringIO()
    results = [await _isolation(ctx, mode, log_text) for mode in (LOCAL, *S3_MODES)]
    section.figure(isolation=results)
    leaky = [r for r in results if r["requests_outside_her_prefix"]]
    touched = [r for r in results if not (r["bob_folder_unchanged"] and r["bob_prefix_unchanged"])]
    wrong = [r for r in results if r["wrong_results"]]
    section.check(
        "one user's calls never touch another user's folder or S3 prefix",
        not leaky and not touched,
        f"{sum(r['requests_by_alice'] for r in results)} S3 requests checked; "
        + (
            f"outside: {leaky[0]['mode']} {leaky[0]['requests_outside_her_prefix'][:3]}"
            if leaky
            else "all inside users/alice/"
        )
        + (f"; bob's data changed in {[r['mode'] for r in touched]}" if touched else ""),
    )
    section.check(
        "one user's reads never return another user's documents",
        not wrong,
        "; ".join(p for r in wrong for p in r["wrong_results"])[:300] or "none",
    )
    ctx.texts["captured log records"] = log_text.getvalue()
    ctx.texts.update({f"repr: {k}": v for k, v in _object_texts(ctx).items()})
    ctx.texts.update({f"error: {k}": v for k, v in (await _error_texts(ctx)).items()})
    background = ctx.benchmark_run
    if background is None:
        with BenchmarkRun(ctx) as own:
            run = await asyncio.to_thread(own.collect)
    else:
        run = await asyncio.to_thread(background.collect)
    section.figure(benchmark_run=run, log_records_bytes=len(log_text.getvalue()))
    section.check(
        "lancesync-bench run --quick completed against the same server",
        run["exit_code"] == 0 and run["results_written"],
        f"exit {run['exit_code']}, files {run['files_written']}"
        + (f"; {run['stderr_tail']}" if run["stderr_tail"] else ""),
    )
    scan = scan_outputs(ctx)
    section.figure(leak_scan=scan)
    section.check(
        "no secret in reprs, error messages, logs, run output or files",
        not scan["leaks"],
        f"{scan['files']} files and {scan['texts']} texts ({scan['bytes']} bytes) scanned for "
        f"{scan['values_searched']} secret values"
        + (f"; found in {scan['leaks'][:3]}" if scan["leaks"] else ""),
    )
