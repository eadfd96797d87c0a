"""Requests run in parallel: a few on the process's kept pool, many on a pool of their own."""

from __future__ import annotations

import multiprocessing
import threading

import pytest

from lancesync_bench.storage import transfer
from lancesync_bench.storage.transfer import RemoteTable


def _remote() -> RemoteTable:
    remote = RemoteTable.__new__(RemoteTable)  # only the parallel runner is exercised
    remote.workers = 8
    return remote


def test_a_few_jobs_share_one_kept_pool_and_many_get_their_own() -> None:
    seen: list[str] = []

    def jobs(n: int, fail_at: int | None = None) -> list[object]:
        def job(i: int) -> None:
            seen.append(threading.current_thread().name)
            if i == fail_at:
                raise OSError(f"job {i} failed")

        return [lambda i=i: job(i) for i in range(n)]

    remote = _remote()
    remote._run_parallel(jobs(3))
    pool = transfer._small_batch_pool()
    remote._run_parallel(jobs(4))
    assert transfer._small_batch_pool() is pool  # kept, not made per call
    assert len(seen) == 7 and all(name.startswith("lancesync-s3") for name in seen)

    seen.clear()
    remote._run_parallel(jobs(6))
    assert len(seen) == 6 and not any(name.startswith("lancesync-s3") for name in seen)

    seen.clear()
    with pytest.raises(OSError, match="job 1 failed"):
        remote._run_parallel(jobs(3, fail_at=1))
    assert len(seen) == 3  # every job ran; the failure is raised after them


def _child(out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    names: list[str] = []
    _remote()._run_parallel([lambda: names.append("a"), lambda: names.append("b")])
    out.put(sorted(names))


def test_a_forked_child_gets_a_pool_of_its_own() -> None:
    _remote()._run_parallel([lambda: None, lambda: None])  # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    child = ctx.Process(target=_child, args=(out,))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0  # it did not hang on the parent's threads
    assert out.get(timeout=5) == ["a", "b"]
