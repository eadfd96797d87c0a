"""Regression benchmarks: the storage service's key operations at the quick table size.

Everything goes through the real :class:`LanceDBStorageService` on a real table (and, in
the S3 modes, the session's embedded SeaweedFS server). Each measured benchmark names a
reference measured in the same session (plain LanceDB on a local folder, or one raw S3 PUT)
and the JSON report carries the ratio of medians (see ``conftest.py``): that ratio, not the
absolute time, is what stays comparable across runs on a noisy shared machine.

Every benchmark checks what it measured (the document read back is the one written, the
top-10 is the exact one, the backup restores), so it fails for real when the code breaks.
In the normal suite benchmarks are disabled and each operation runs once, checks included.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lancesync_bench.config import LanceDBSyncConfig
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.storage.service import LanceDBStorageService
from lancesync_bench.workload import Workload, doc_id, exact_top_k

pytestmark = pytest.mark.integration

# The scenarios' quick figures: 1000 rows of 384-dim embeddings (all-MiniLM-L6-v2 class),
# seed 42, so these tables match the ones `lancesync-bench run --quick` measures.
SIZE = 1000
DIM = 384
SEED = 42
USER = "bench-user"
# Rounds keep the enabled run near 30-60 s on two shared cores (setup included). Reads take
# ~2-10 ms, so 100 rounds cost little and support p95 and p99; local writes ~5 ms, and 30
# rounds stay under the 64 appends that start background compaction, which would blur the
# figure; S3 writes and backups take 20-50 ms each, so 20 rounds (still enough for p95).
READ_ROUNDS = 100
WRITE_ROUNDS = 30
S3_ROUNDS = 20
# A few untimed rounds first: metadata caches, the HTTP pool and the index pages warm up.
WARMUP = 3

MODE_ENV: dict[str, dict[str, str]] = {
    # A desktop app with S3 switched off: the purely local path.
    "local_only": {
        "FRONTEND_TYPE": "desktop",
        "BACKEND_LOCATION": "local",
        "S3_STORAGE_ENABLED": "false",
        "S3_BACKUP_ENABLED": "false",
    },
    "local_primary_s3_backup": {"FRONTEND_TYPE": "desktop", "BACKEND_LOCATION": "local"},
    # A web app with a cloud backend. Ten minutes of allowed staleness: every timed read is a
    # cache hit, never a refresh (the runner measures refreshes and cache misses apart).
    "s3_primary_local_cache": {
        "FRONTEND_TYPE": "web",
        "BACKEND_LOCATION": "cloud",
        "CACHE_MAX_STALENESS_MS": "600000",
    },
}


def _service(
    mode: str, path: Path, ep: S3Endpoint, device: str = "bench-a"
) -> LanceDBStorageService:
    env = {
        **MODE_ENV[mode],
        "S3_BUCKET": ep.bucket,
        "LOCAL_STORAGE_PATH": str(path),
        "EMBEDDING_DIM": str(DIM),
        "DEVICE_ID": device,
    }
    config = LanceDBSyncConfig.from_env(env)
    assert config.storage_mode.value == mode
    return LanceDBStorageService(config, endpoint=ep if config.storage_mode.uses_s3 else None)


def _loaded(
    loop: asyncio.Runner, mode: str, path: Path, ep: S3Endpoint, wl: Workload
) -> LanceDBStorageService:
    """A service holding the ``SIZE`` seeded rows, compacted (and backed up in backup mode)."""
    svc = _service(mode, path, ep)
    loop.run(svc.import_documents(USER, wl.arrow_table(0, SIZE, metadata="json")))
    loop.run(svc.maintain(USER))
    if mode == "local_primary_s3_backup":
        assert loop.run(svc.backup(USER)).reachable
    return svc


def _assert_doc(got: dict[str, Any] | None, want: dict[str, Any]) -> None:
    assert got is not None, f"{want['id']} was not found"
    assert (got["id"], got["text"], got["metadata"]) == (want["id"], want["text"], want["metadata"])
    assert got["vector"] == pytest.approx(want["vector"], abs=1e-6)


def _row_of(doc: str) -> int:
    return int(doc.removeprefix("doc-"))


class Fresh:
    """Setup for pedantic mode: one new document per round, remembered for the checks."""

    def __init__(self, wl: Workload, start: int) -> None:
        self.wl = wl
        self.next = start
        self.made: list[dict[str, Any]] = []

    def doc(self) -> dict[str, Any]:
        """The next unused document."""
        (d,) = self.wl.documents(self.next, 1)
        self.next += 1
        self.made.append(d)
        return d


@pytest.fixture(scope="module")
def wl() -> Workload:
    """The seeded workload of the quick scenarios."""
    return Workload(SEED, DIM)


@pytest.fixture(scope="module")
def module_s3(bench_s3: S3Endpoint) -> Iterator[S3Endpoint]:
    """This module's own prefix in the session bucket."""
    yield bench_s3.with_prefix(f"{bench_s3.prefix}/storage")


@pytest.fixture(scope="module")
def plain_table(
    loop: asyncio.Runner, tmp_path_factory: pytest.TempPathFactory, wl: Workload
) -> Any:
    """The reference: the same rows in plain LanceDB on a local folder, id BTree-indexed."""
    import lancedb
    import lancedb.index

    async def build() -> Any:
        db = await lancedb.connect_async(str(tmp_path_factory.mktemp("plain")))
        table = await db.create_table("documents", data=wl.arrow_table(0, SIZE))
        await table.create_index("id", config=lancedb.index.BTree())
        return table

    return loop.run(build())


@pytest.fixture(scope="module")
def local_reader(
    loop: asyncio.Runner,
    tmp_path_factory: pytest.TempPathFactory,
    module_s3: S3Endpoint,
    wl: Workload,
) -> Iterator[LanceDBStorageService]:
    """A local-only service with the quick table, for the read benchmarks (never written)."""
    svc = _loaded(loop, "local_only", tmp_path_factory.mktemp("local"), module_s3, wl)
    yield svc
    loop.run(svc.close())


@pytest.fixture
def s3_primary(
    loop: asyncio.Runner, tmp_path: Path, module_s3: S3Endpoint, wl: Workload
) -> Iterator[tuple[LanceDBStorageService, S3Endpoint]]:
    """An S3-primary service (web + cloud) with the quick table on S3, and its endpoint.

    One per test: the write benchmark's appends would otherwise leave the read benchmark a
    table with unindexed fragments, and its figure would depend on test order.
    """
    ep = module_s3.with_prefix(f"{module_s3.prefix}/s3-primary-{tmp_path.name}")
    svc = _loaded(loop, "s3_primary_local_cache", tmp_path / "a", ep, wl)
    yield svc, ep
    loop.run(svc.close())


# -- references: plain LanceDB and raw S3, measured in the same session -----------------------


def test_reference_lancedb_point_read(measure: Any, plain_table: Any, wl: Workload) -> None:
    ids = itertools.cycle(wl.lookup_ids(READ_ROUNDS + WARMUP + 1, SIZE))

    async def read() -> tuple[str, list[dict[str, Any]]]:
        doc = next(ids)
        rows = await plain_table.query().where(f"id = '{doc}'").limit(1).to_arrow()
        return doc, rows.to_pylist()

    doc, rows = measure(read, rounds=READ_ROUNDS, warmup_rounds=WARMUP, reference_id="lancedb_read")
    assert [r["text"] for r in rows] == [wl.documents(_row_of(doc), 1)[0]["text"]]


def test_reference_lancedb_top10(measure: Any, plain_table: Any, wl: Workload) -> None:
    queries = wl.query_vectors(READ_ROUNDS + WARMUP + 1)
    turn = itertools.count()

    async def top10() -> tuple[int, list[str]]:
        i = next(turn) % len(queries)
        rows = await plain_table.query().nearest_to(queries[i]).limit(10).to_arrow()
        return i, rows.column("id").to_pylist()

    i, ids = measure(top10, rounds=READ_ROUNDS, warmup_rounds=WARMUP, reference_id="lancedb_top10")
    truth = exact_top_k(wl.arrays(0, SIZE).vectors, queries[i], 10)[0]
    assert ids == [doc_id(int(j)) for j in truth]


def test_reference_lancedb_add_1(
    measure: Any, loop: asyncio.Runner, tmp_path: Path, wl: Workload
) -> None:
    import lancedb

    db = loop.run(lancedb.connect_async(str(tmp_path)))
    table = loop.run(db.create_table("documents", data=wl.arrow_table(0, SIZE)))
    rows = itertools.count(SIZE)
    added = 0

    def one_row() -> tuple[tuple[Any, ...], dict[str, Any]]:
        nonlocal added
        added += 1
        return (wl.arrow_table(next(rows), 1),), {}

    measure(
        table.add,
        setup=one_row,
        rounds=WRITE_ROUNDS,
        warmup_rounds=WARMUP,
        reference_id="lancedb_add_1",
    )
    assert loop.run(table.count_rows()) == SIZE + added


def test_reference_s3_put(measure: Any, module_s3: S3Endpoint, wl: Workload) -> None:
    client = module_s3.client()
    body = json.dumps(wl.documents(0, 1)[0]).encode()  # ~8 KB: one document's worth
    keys = (module_s3.key("raw-put", f"{i:04d}") for i in itertools.count())

    def put() -> str:
        key = next(keys)
        client.put_object(Bucket=module_s3.bucket, Key=key, Body=body)
        return key

    key = measure(put, rounds=READ_ROUNDS, warmup_rounds=WARMUP, reference_id="s3_put")
    assert client.get_object(Bucket=module_s3.bucket, Key=key)["Body"].read() == body


# -- the storage service ------------------------------------------------------------------------


def test_local_point_read(measure: Any, local_reader: LanceDBStorageService, wl: Workload) -> None:
    ids = itertools.cycle(wl.lookup_ids(READ_ROUNDS + WARMUP + 1, SIZE))

    async def read() -> tuple[str, dict[str, Any] | None]:
        doc = next(ids)
        return doc, await local_reader.get_document(USER, doc)

    doc, got = measure(read, rounds=READ_ROUNDS, warmup_rounds=WARMUP, relative_to="lancedb_read")
    _assert_doc(got, wl.documents(_row_of(doc), 1)[0])


def test_local_vector_top10(
    measure: Any, local_reader: LanceDBStorageService, wl: Workload
) -> None:
    queries = wl.query_vectors(READ_ROUNDS + WARMUP + 1)
    turn = itertools.count()

    async def top10() -> tuple[int, list[dict[str, Any]]]:
        i = next(turn) % len(queries)
        return i, await local_reader.search(USER, queries[i].tolist(), k=10)

    i, found = measure(top10, rounds=READ_ROUNDS, warmup_rounds=WARMUP, relative_to="lancedb_top10")
    truth = exact_top_k(wl.arrays(0, SIZE).vectors, queries[i], 10)[0]
    assert [d["id"] for d in found] == [doc_id(int(j)) for j in truth]  # flat search: exact
    distances = [d["distance"] for d in found]
    assert distances == sorted(distances)


def test_local_add_1(
    measure: Any, loop: asyncio.Runner, tmp_path: Path, module_s3: S3Endpoint, wl: Workload
) -> None:
    svc = _loaded(loop, "local_only", tmp_path, module_s3, wl)
    fresh = Fresh(wl, SIZE)
    try:
        added = measure(
            lambda doc: svc.add_documents(USER, [doc]),
            setup=lambda: ((fresh.doc(),), {}),
            rounds=WRITE_ROUNDS,
            warmup_rounds=WARMUP,
            relative_to="lancedb_add_1",
        )
        assert added == 1
        for want in fresh.made:
            _assert_doc(loop.run(svc.get_document(USER, want["id"])), want)
        assert loop.run(svc.status(USER)).documents == SIZE + len(fresh.made)
    finally:
        loop.run(svc.close())


def test_s3_primary_add_1(
    measure: Any,
    loop: asyncio.Runner,
    tmp_path: Path,
    s3_primary: tuple[LanceDBStorageService, S3Endpoint],
    wl: Workload,
) -> None:
    svc, ep = s3_primary
    fresh = Fresh(wl, 2 * SIZE)  # rows no other benchmark writes
    added = measure(
        lambda doc: svc.add_documents(USER, [doc]),
        setup=lambda: ((fresh.doc(),), {}),
        rounds=S3_ROUNDS,
        warmup_rounds=WARMUP,
        relative_to="s3_put",
    )
    assert added == 1
    # Committed to S3, not only to the cache: a second backend with an empty cache sees them.
    other = _service("s3_primary_local_cache", tmp_path / "b", ep, device="bench-b")
    try:
        for want in (fresh.made[0], fresh.made[-1]):
            _assert_doc(loop.run(other.get_document(USER, want["id"])), want)
    finally:
        loop.run(other.close())


def test_s3_primary_cached_read(
    measure: Any, s3_primary: tuple[LanceDBStorageService, S3Endpoint], wl: Workload
) -> None:
    svc, _ = s3_primary
    ids = itertools.cycle(wl.lookup_ids(READ_ROUNDS + WARMUP + 1, SIZE))

    async def read() -> tuple[str, dict[str, Any] | None]:
        doc = next(ids)
        return doc, await svc.get_document(USER, doc)

    doc, got = measure(read, rounds=READ_ROUNDS, warmup_rounds=WARMUP, relative_to="lancedb_read")
    _assert_doc(got, wl.documents(_row_of(doc), 1)[0])


def test_backup_one_new_doc(
    measure: Any, loop: asyncio.Runner, tmp_path: Path, module_s3: S3Endpoint, wl: Workload
) -> None:
    ep = module_s3.with_prefix(f"{module_s3.prefix}/backup")
    svc = _loaded(loop, "local_primary_s3_backup", tmp_path / "a", ep, wl)
    fresh = Fresh(wl, SIZE)

    def one_new_doc() -> tuple[tuple[Any, ...], dict[str, Any]]:
        assert loop.run(svc.add_documents(USER, [fresh.doc()])) == 1  # untimed
        return (), {}

    try:
        report = measure(
            lambda: svc.backup(USER),
            setup=one_new_doc,
            rounds=S3_ROUNDS,
            warmup_rounds=WARMUP,
            relative_to="s3_put",
        )
        assert report.reachable, report.error
        assert report.files_up >= 1 and report.versions_created
        assert loop.run(svc.status(USER)).pending_changes == 0
    finally:
        loop.run(svc.close())
    # What was backed up restores on another device, newest document included.
    other = _service("local_primary_s3_backup", tmp_path / "b", ep, device="bench-b")
    try:
        assert loop.run(other.restore(USER)).records_down >= SIZE + len(fresh.made)
        for want in (fresh.made[0], fresh.made[-1]):
            _assert_doc(loop.run(other.get_document(USER, want["id"])), want)
    finally:
        loop.run(other.close())
