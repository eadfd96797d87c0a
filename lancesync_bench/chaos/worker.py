"""The process that kill trials SIGKILL: ``python -m lancesync_bench.chaos.worker``.

Importing LanceDB takes seconds (far longer on a busy machine), which would dominate 50
trials. So this module runs as a small fork server: it imports everything once, prints
``hello``, then reads one JSON trial request per line on stdin and forks a child process
per trial. The child opens its own storage service and writes until it is killed; it
prints, flushed, one line per event, each tagged with its trial number:

``T<n> ready`` (service open, remote table level), ``T<n> begin <op> <monotonic ns>`` /
``T<n> done <op> <ms>`` around each sync, backup or S3-primary write, and
``T<n> ack <id>:<seq> ...`` once a write is acknowledged (``add_documents`` returned).
The server adds ``T<n> pid <pid>`` after forking and ``T<n> exit <code>`` once the child
is gone. Settings, the S3 secret included, come on stdin only, never on a command line.

Forking is safe here because the server never runs a LanceDB operation itself: nothing is
mid-operation when it forks, and LanceDB resets its async runtime in the child.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import traceback
import warnings
from typing import Any

__all__ = ["main"]

# A child that was never killed stops on its own after this long, so an abandoned trial
# cannot outlive the suite by more than a couple of minutes.
_CHILD_LIMIT_S = 120.0


def _emit(trial: int, text: str) -> None:
    # One write per line, well under PIPE_BUF: lines from the server and a child never mix.
    os.write(1, f"T{trial} {text}\n".encode())


async def _trial(req: dict[str, Any]) -> None:
    from lancesync_bench.chaos.common import document
    from lancesync_bench.config import LanceDBSyncConfig, Secret
    from lancesync_bench.s3.endpoint import S3Endpoint
    from lancesync_bench.storage.doctable import MaintenancePolicy
    from lancesync_bench.storage.service import LanceDBStorageService
    from lancesync_bench.storage.tier import TierPolicy

    trial, kind, user = int(req["trial"]), str(req["kind"]), str(req["user"])
    e = req["endpoint"]
    ep = S3Endpoint(
        url=e["url"],
        region=e["region"],
        access_key_id=e["access_key_id"],
        secret_access_key=Secret(e["secret_access_key"]),
        bucket=e["bucket"],
        prefix=e["prefix"],
    )
    config = LanceDBSyncConfig.from_env(req["env"])
    # Compaction every 8 appends (4 log flushes of up to 16 rows): kills then also land
    # inside flushes, maintenance and cleanup.
    policy = MaintenancePolicy(max_fragments=8, max_flushes=4, keep_tombstones=kind == "sync")
    tier = TierPolicy(flush_rows=16)
    rng = random.Random(int(req["seed"]))
    seq = int(req["seq_base"])
    deadline = time.monotonic() + _CHILD_LIMIT_S
    timed_writes = kind in ("primary", "writes")
    async with LanceDBStorageService(config, endpoint=ep, policy=policy, tier=tier) as svc:

        async def transfer() -> None:
            _emit(trial, f"begin {kind} {time.monotonic_ns()}")
            start = time.perf_counter()
            report = await (svc.sync(user) if kind == "sync" else svc.backup(user))
            if not report.reachable:
                raise RuntimeError(f"{kind} found S3 unreachable: {report.error}")
            _emit(trial, f"done {kind} {(time.perf_counter() - start) * 1000:.1f}")

        if kind == "primary":
            await svc.status(user)  # opens the cache: the S3 table exists from here on
        elif kind == "writes":
            await svc.get_document(user, "w0")  # opens (and replays) the local table
        else:
            await transfer()
        _emit(trial, "ready")
        for _round in range(int(req["max_rounds"])):
            if time.monotonic() > deadline:
                break
            docs = []
            for doc_id in dict.fromkeys(f"w{rng.randrange(int(req['pool']))}" for _ in range(3)):
                seq += 1
                docs.append(document(doc_id, seq, seed=trial, writer=kind))
            if kind == "writes":
                docs = docs[:1]  # sustained single-document writes
            if timed_writes:
                _emit(trial, f"begin write {time.monotonic_ns()}")
            start = time.perf_counter()
            await svc.add_documents(user, docs)
            if timed_writes:
                _emit(trial, f"done write {(time.perf_counter() - start) * 1000:.1f}")
            _emit(trial, "ack " + " ".join(f"{d['id']}:{d['metadata']['seq']}" for d in docs))
            if not timed_writes:
                await transfer()
    _emit(trial, "end")


def _child(req: dict[str, Any]) -> int:
    """Run one trial in the forked child; the exit code the server will report."""
    try:
        asyncio.run(_trial(req))
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    return 0


def serve() -> None:
    """Import once, then fork one child per trial request read from stdin, in turn."""
    import lancedb  # noqa: F401 - the import this server exists to pay once

    import lancesync_bench.chaos.common
    import lancesync_bench.storage.remote_stores
    import lancesync_bench.storage.service  # noqa: F401

    os.write(1, b"hello\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        trial = int(req["trial"])
        sys.stdout.flush()
        sys.stderr.flush()
        with warnings.catch_warnings():
            # LanceDB warns that a fork during one of its operations could deadlock; this
            # process never runs one (see the module docstring).
            warnings.simplefilter("ignore", RuntimeWarning)
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(req)
            finally:
                os._exit(code)  # never return into the server's loop or flush its buffers
        _emit(trial, f"pid {pid}")
        _pid, status = os.waitpid(pid, 0)
        _emit(trial, f"exit {os.waitstatus_to_exitcode(status)}")  # -9: SIGKILL


def main() -> None:
    """Entry point of ``python -m lancesync_bench.chaos.worker``."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread: nothing to fork
    serve()


if __name__ == "__main__":
    main()
