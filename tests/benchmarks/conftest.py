"""Regression benchmarks' shared parts: one event loop, an S3 prefix, and reference ratios.

A shared CI machine's absolute timings drift from run to run by more than any regression
worth catching, so each benchmark names a *reference*: a plain operation (LanceDB on a local
folder, or one raw S3 PUT) measured in the same session on the same machine. When pytest
writes its JSON (``--benchmark-json``), :func:`pytest_benchmark_update_json` adds
``ratio_to_reference`` (median over the reference's median) to every benchmark's
``extra_info``. Nothing asserts on wall-clock time: the figures are a report.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from lancesync_bench.s3.embedded import EmbeddedSeaweedFS
from lancesync_bench.s3.endpoint import S3Endpoint

# extra_info keys: a reference benchmark names itself, a measured one names its reference.
REFERENCE_ID = "reference_id"
REFERENCE = "reference"

Setup = Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]


@pytest.fixture(scope="session")
def loop() -> Iterator[asyncio.Runner]:
    """One event loop for the whole session: services opened on it are used and closed on it.

    The benchmark fixture times plain callables, so each timed call is ``loop.run(coro)``;
    references pay the same per-call loop overhead, which cancels in the ratios.
    """
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture(scope="session")
def bench_s3(s3_server: EmbeddedSeaweedFS) -> S3Endpoint:
    """The session S3 server with a prefix of this session's own."""
    if not s3_server.running:
        s3_server.start()
    return s3_server.endpoint().with_prefix(f"bench-{uuid.uuid4().hex[:12]}")


class Measure:
    """Times one operation with the ``benchmark`` fixture; see :meth:`__call__`."""

    def __init__(self, benchmark: Any, loop: asyncio.Runner) -> None:
        self.benchmark = benchmark
        self.loop = loop

    def __call__(
        self,
        operation: Callable[..., Awaitable[Any] | Any],
        *,
        rounds: int,
        warmup_rounds: int,
        setup: Setup | None = None,
        reference_id: str | None = None,
        relative_to: str | None = None,
    ) -> Any:
        """Time ``operation`` once per round and return its last result.

        Pedantic mode, one iteration per round: each sample is one operation, as in the
        runner, and ``setup`` (untimed) can hand each round fresh arguments. A coroutine
        function runs on the session loop. Exactly one of ``reference_id`` (this is a
        reference) and ``relative_to`` (the reference this benchmark is a ratio of) is given.
        With benchmarks disabled (the normal test run) the operation runs once, so the
        test's checks still run.
        """
        if (reference_id is None) == (relative_to is None):
            raise ValueError("give exactly one of reference_id and relative_to")
        if reference_id is not None:
            self.benchmark.extra_info[REFERENCE_ID] = reference_id
        else:
            self.benchmark.extra_info[REFERENCE] = relative_to

        def once(*args: Any, **kwargs: Any) -> Any:
            result = operation(*args, **kwargs)
            return self.loop.run(result) if asyncio.iscoroutine(result) else result

        return self.benchmark.pedantic(
            once, setup=setup, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1
        )


@pytest.fixture
def measure(benchmark: Any, loop: asyncio.Runner) -> Measure:
    """A :class:`Measure` bound to this test's ``benchmark`` fixture and the session loop."""
    return Measure(benchmark, loop)


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]
) -> None:
    """Add ``ratio_to_reference`` to each benchmark whose reference ran in this session.

    Done when the JSON is written, after every benchmark has finished, so the ratio does not
    depend on test order; a benchmark whose reference did not run (deselected, failed) gets
    ``None``.
    """
    entries = output_json.get("benchmarks", [])
    medians = {
        e["extra_info"][REFERENCE_ID]: e["stats"]["median"]
        for e in entries
        if REFERENCE_ID in e.get("extra_info", {})
    }
    for entry in entries:
        info = entry.get("extra_info", {})
        if REFERENCE not in info:
            continue
        ref = medians.get(info[REFERENCE])
        ratio = entry["stats"]["median"] / ref if ref else None
        info["ratio_to_reference"] = None if ratio is None else round(ratio, 3)
