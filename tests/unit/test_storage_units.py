"""Storage rules that need no S3: user ids, document checks, winners, naming, transfer records.

The last tests run the service in ``local_only`` mode (a local LanceDB folder, no network).
"""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from lancesync_bench.config import LanceDBSyncConfig, Secret
from lancesync_bench.errors import (
    ConfigError,
    DocumentError,
    IntegrityError,
    S3Error,
    S3Unavailable,
    UserIdError,
)
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.storage import stores
from lancesync_bench.storage.doctable import DocTable, MaintenancePolicy, winners_mask
from lancesync_bench.storage.schema import (
    MAX_TEXT_BYTES,
    records_table,
    schema,
    sql_string,
    tombstones_table,
    validate_user_id,
)
from lancesync_bench.storage.service import LanceDBStorageService
from lancesync_bench.storage.transfer import (
    FileInfo,
    TransferStats,
    _s3_failure,
    decode_files,
    encode_files,
    latest_version,
    local_files,
    manifest_version,
)

DIM = 4


def _doc(doc_id: Any = "a", **extra: Any) -> dict[str, Any]:
    return {"id": doc_id, "text": f"text {doc_id}", "vector": [0.5] * DIM, **extra}


# -- user ids ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "user_id", ["a", "A-Z_0.9", "x" * 128, "0", "user.name", "_x", "-x", "a..b"]
)
def test_user_id_allowed(user_id: str) -> None:
    assert validate_user_id(user_id) == user_id


@pytest.mark.parametrize(
    "user_id",
    [
        "../x",
        "..",
        ".",
        "a/b",
        "a\\b",
        "",
        "\x00",
        "a\x00",
        ".hidden",
        "x" * 129,
        "usér",
        "u\u0455er",  # Cyrillic dze looks like "s"
        "a b",
        "a\n",
        "\uff41",  # fullwidth a
        None,
        5,
        b"abc",
    ],
)
def test_user_id_rejected(user_id: Any) -> None:
    with pytest.raises(UserIdError):
        validate_user_id(user_id)


def test_user_id_error_shortens_long_values() -> None:
    with pytest.raises(UserIdError) as info:
        validate_user_id("y" * 500)
    assert len(str(info.value)) < 200


# -- documents -----------------------------------------------------------------------------


def test_records_table_builds_one_record_per_document() -> None:
    table = records_table(
        [_doc("a", metadata={"b": 1, "a": 2}), _doc("b")], dim=DIM, origin="dev", timestamps=[5, 6]
    )
    assert table.schema == schema(DIM)
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == ["a", "b"]
    assert rows[0]["metadata"] == '{"a": 2, "b": 1}'  # sorted keys: same doc, same bytes
    assert rows[1]["metadata"] == "{}"
    assert [r["updated_at"] for r in rows] == [5, 6]
    assert {r["origin"] for r in rows} == {"dev"}
    assert not any(r["deleted"] for r in rows)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_doc(vector=[0.0] * (DIM + 1)), "shape"),
        (_doc(vector=[0.0] * (DIM - 1)), "shape"),
        (_doc(vector=[[0.0] * DIM]), "shape"),
        (_doc(vector=[float("nan")] * DIM), "NaN"),
        (_doc(vector=[float("-inf")] + [0.0] * (DIM - 1)), "NaN or infinity"),
        (_doc(vector=["a"] * DIM), "numbers"),
        (_doc(vector=None), "shape"),
        ({"text": "t", "vector": [0.0] * DIM}, "id must be"),
        (_doc(""), "id must be"),
        (_doc(7), "id must be"),
        (_doc("a\x00b"), "id must be"),
        (_doc("x" * 257), "id must be"),
        (_doc(text=None), "text must be"),
        (_doc(text="x" * (MAX_TEXT_BYTES + 1)), "larger than"),
        (_doc(metadata={"x": object()}), "JSON"),
        (_doc(metadata={"x": float("nan")}), "JSON"),
        (_doc(metadata="{}"), "metadata must be a dict"),
        (_doc(metadata={"x": "y" * (70 << 10)}), "larger than"),
        (_doc(score=1.0), "unknown field"),
        ("not a dict", "expected a dict"),
    ],
)
def test_invalid_document_rejected(doc: Any, message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        # The bad document comes second: the whole batch is refused.
        records_table([_doc("ok"), doc], dim=DIM, origin="dev", timestamps=[1, 2])


def test_no_documents_is_an_error() -> None:
    with pytest.raises(DocumentError, match="no documents"):
        records_table([], dim=DIM, origin="dev", timestamps=[])


def test_tombstones_hide_and_reject_bad_ids() -> None:
    table = tombstones_table(["a", "b"], dim=DIM, origin="dev", timestamps=[3, 4])
    assert table.column("deleted").to_pylist() == [True, True]
    for bad in ["", 5, "a\x00"]:
        with pytest.raises(DocumentError):
            tombstones_table(["a", bad], dim=DIM, origin="dev", timestamps=[1, 2])  # type: ignore[list-item]


def test_sql_string_doubles_quotes() -> None:
    assert sql_string("it's") == "'it''s'"
    assert sql_string("") == "''"


# -- winners -------------------------------------------------------------------------------


def _keys(rows: list[tuple[str, int, str]]) -> pa.Table:
    return pa.table(
        {
            "id": [r[0] for r in rows],
            "updated_at": pa.array([r[1] for r in rows], pa.int64()),
            "origin": [r[2] for r in rows],
        }
    )


def test_winner_is_later_timestamp_then_greater_origin_in_any_order() -> None:
    rows = [
        ("x", 10, "B"),
        ("x", 11, "A"),  # later wins over a greater origin
        ("y", 7, "A"),
        ("y", 7, "B"),  # tie: the greater origin wins
        ("z", 1, "A"),
    ]
    expected = {("x", 11, "A"), ("y", 7, "B"), ("z", 1, "A")}
    rng = random.Random(3)
    for _ in range(10):
        shuffled = rows[:]
        rng.shuffle(shuffled)
        mask = winners_mask(_keys(shuffled))
        assert {r for r, keep in zip(shuffled, mask, strict=True) if keep} == expected


def test_winners_mask_of_nothing() -> None:
    assert winners_mask(_keys([])).shape == (0,)


# -- clock ---------------------------------------------------------------------------------


def test_clock_never_repeats_or_goes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = stores.Clock(floor=0)
    first = clock.take(3)
    assert first == sorted(set(first))
    # The wall clock jumps back an hour: timestamps still increase.
    now = first[-1]
    monkeypatch.setattr(stores.time, "time_ns", lambda: now - 3_600 * 10**9)
    second = clock.take(2)
    assert second[0] > first[-1]
    assert second == [second[0], second[0] + 1]
    assert stores.Clock(floor=10**20).take(1)[0] > 10**20


# -- transfer naming and records -----------------------------------------------------------


def test_manifest_version_both_namings() -> None:
    assert manifest_version("_versions/7.manifest") == 7
    assert manifest_version(f"_versions/{2**64 - 1 - 7}.manifest") == 7
    for rel in ["data/7.lance", "_versions/x.manifest", "_versions/7.txn", "7.manifest"]:
        assert manifest_version(rel) is None
    assert latest_version(["_versions/3.manifest", f"_versions/{2**64 - 1 - 9}.manifest"]) == 9
    assert latest_version(["data/a.lance"]) == 0


def test_file_record_round_trip_and_damage() -> None:
    files = [FileInfo("data/a.lance", 10, "ab" * 32), FileInfo("_indices/u/x.idx", 0, "cd" * 32)]
    record = encode_files(files)
    assert record.isascii()
    assert decode_files(record, "here") == files
    assert decode_files("", "here") == []
    with pytest.raises(IntegrityError, match="damaged"):
        decode_files("data/a.lance|ten|abc", "here")
    with pytest.raises(IntegrityError):
        decode_files("data/a.lance|10", "here")


def test_local_files_skips_hint_and_our_temporaries(tmp_path: Path) -> None:
    table = tmp_path / "t.lance"
    for rel, size in {
        "_versions/1.manifest": 3,
        "_versions/latest_version_hint.json": 2,
        "_versions/.lancesync-1.manifest.part": 1,
        "data/a.lance": 5,
        "_transactions/0-x.txn": 4,
    }.items():
        (table / rel).parent.mkdir(parents=True, exist_ok=True)
        (table / rel).write_bytes(b"x" * size)
    assert local_files(table) == {
        "_versions/1.manifest": 3,
        "data/a.lance": 5,
        "_transactions/0-x.txn": 4,
    }
    assert local_files(tmp_path / "missing") == {}


def test_transfer_stats_count_from_threads() -> None:
    stats = TransferStats()

    def work() -> None:
        for _ in range(1000):
            stats.count("PUT")
            stats.up(2)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.as_dict()["requests"] == {"PUT": 4000}
    assert (stats.files_up, stats.bytes_up) == (4000, 8000)


def test_s3_failures_are_classified() -> None:
    def client_error(status: int, code: str) -> ClientError:
        return ClientError(
            {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
            "PutObject",
        )

    assert isinstance(_s3_failure(client_error(503, "SlowDown"), "x"), S3Unavailable)
    refused = _s3_failure(client_error(403, "AccessDenied"), "x")
    assert isinstance(refused, S3Error)
    assert not isinstance(refused, S3Unavailable)
    assert "AccessDenied" in str(refused)
    offline = _s3_failure(EndpointConnectionError(endpoint_url="http://h"), "reading")
    assert isinstance(offline, S3Unavailable)
    assert "unreachable" in str(offline)


# -- DocTable on a local LanceDB table ------------------------------------------------------


def _records(rows: list[tuple[str, int, str, bool, float]]) -> pa.Table:
    n = len(rows)
    vectors = np.array([[r[4]] * DIM for r in rows], dtype=np.float32).ravel()
    return pa.table(
        [
            pa.array([r[0] for r in rows]),
            pa.array([f"{r[0]}@{r[1]}{r[2]}" for r in rows]),
            pa.FixedSizeListArray.from_arrays(pa.array(vectors), DIM),
            pa.array(["{}"] * n),
            pa.array([r[1] for r in rows], pa.int64()),
            pa.array([r[2] for r in rows]),
            pa.array([r[3] for r in rows]),
        ],
        schema=schema(DIM),
    )


def test_doctable_reads_only_winners(tmp_path: Path) -> None:
    import lancedb

    async def scenario() -> None:
        db = await lancedb.connect_async(str(tmp_path))
        table = await db.create_table("documents", schema=schema(DIM))
        docs = DocTable(lambda: table, dim=DIM)
        await docs.append(
            _records(
                [
                    ("a", 1, "A", False, 0.0),  # superseded by a far-away vector
                    ("a", 2, "A", False, 9.0),
                    ("b", 5, "A", False, 0.1),
                    ("b", 5, "B", False, 0.2),  # tie: B wins
                    ("c", 1, "A", False, 0.3),
                    ("c", 2, "B", True, 0.0),  # deleted
                    ("d", 3, "A", False, 0.4),
                ]
            )
        )
        await docs.append(_records([("q'uote", 1, "A", False, 0.5)]))
        a = await docs.get("a")
        assert a is not None
        assert (a["text"], a["vector"]) == ("a@2A", [9.0] * DIM)
        b = await docs.get("b")
        assert b is not None
        assert b["text"] == "b@5B"
        assert await docs.get("c") is None
        assert await docs.get("q'uote") is not None
        assert await docs.live_count() == 4
        found = await docs.search([0.0] * DIM, k=3)
        assert [r["id"] for r in found] == ["b", "d", "q'uote"]
        assert found[0]["distance"] == pytest.approx(DIM * 0.2**2, rel=1e-5)
        assert len(await docs.search([0.0] * DIM, k=50)) == 4
        # Dead records are the superseded ones (and the tombstone, unless kept).
        assert len(await docs.dead_row_ids(keep_tombstones=True)) == 3
        assert len(await docs.dead_row_ids(keep_tombstones=False)) == 4
        # The stamps above are tiny (1970), so a retention would collect the tombstone.
        report = await docs.maintain(
            MaintenancePolicy(keep_tombstones=True, tombstone_retention=None)
        )
        assert report.dead_records_removed == 3
        assert report.fragments_after == 1
        assert await docs.live_count() == 4
        assert await docs.get("c") is None

    asyncio.run(scenario())


class _Counted:
    """A LanceDB table whose calls to the ``counted`` methods are noted in ``calls``."""

    def __init__(self, inner: Any, calls: list[str], *counted: str) -> None:
        self._inner, self._calls, self._counted = inner, calls, counted

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self._counted:
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(name)
            return await attr(*args, **kwargs)

        return counted


def test_maintenance_is_asked_of_lancedb_only_when_the_fragments_could_reach_the_threshold(
    tmp_path: Path,
) -> None:
    import lancedb

    async def scenario() -> None:
        db = await lancedb.connect_async(str(tmp_path))
        table = await db.create_table("documents", schema=schema(DIM))
        asked: list[str] = []

        def Counted(inner: Any) -> _Counted:  # the table, its stats() counted
            return _Counted(inner, asked, "stats")

        current = [Counted(table)]
        docs = DocTable(lambda: current[0], dim=DIM)
        policy = MaintenancePolicy(max_fragments=4)
        assert not await docs.needs_maintenance(policy)  # nothing known yet: asked
        assert len(asked) == 1
        for i in range(3):  # 0 + 3 appends: still below 4, never asked
            await docs.append(_records([(f"d{i}", i, "A", False, 0.0)]))
            assert not await docs.needs_maintenance(policy)
        assert len(asked) == 1
        await docs.append(_records([("d3", 3, "A", False, 0.0)]))
        assert await docs.needs_maintenance(policy)  # could be 4: asked, and it is
        assert len(asked) == 2
        # Fragments added behind its back (another handle) are seen after invalidate().
        other = await (await lancedb.connect_async(str(tmp_path))).open_table("documents")
        await docs.maintain(MaintenancePolicy(keep_tombstones=True))
        assert not await docs.needs_maintenance(policy)
        asked.clear()
        for i in range(5):
            await other.add(_records([(f"o{i}", i, "B", False, 0.0)]))
        await table.checkout_latest()
        assert not await docs.needs_maintenance(policy)  # not told: the bound stands
        assert not asked
        docs.invalidate()
        assert await docs.needs_maintenance(policy)
        assert len(asked) == 1
        # A swapped table object is counted again too.
        current[0] = Counted(
            await (await lancedb.connect_async(str(tmp_path))).open_table("documents")
        )
        await docs.maintain(MaintenancePolicy(keep_tombstones=True))
        asked.clear()
        current[0] = Counted(other)
        await other.checkout_latest()
        await docs.needs_maintenance(policy)
        assert len(asked) == 1

    asyncio.run(scenario())


def test_the_version_a_doctable_reports_is_lancedbs_after_every_kind_of_change(
    tmp_path: Path,
) -> None:
    import lancedb

    async def scenario() -> None:
        db = await lancedb.connect_async(str(tmp_path))
        table = await db.create_table("documents", schema=schema(DIM))
        asked: list[str] = []
        counted = _Counted(table, asked, "version")
        docs = DocTable(lambda: counted, dim=DIM)

        async def same() -> None:
            assert await docs.version() == await table.version()

        await same()
        for i in range(3):
            await docs.append(_records([(f"d{i}", i, "A", False, float(i))]))
        asked.clear()
        await same()
        await same()
        assert not asked  # the last append's version, kept: LanceDB is not asked
        await docs.remove_rows([0])
        await same()
        await docs.ensure_indexes(MaintenancePolicy())
        await same()
        await docs.maintain(MaintenancePolicy(keep_tombstones=True))
        await same()
        # An append and a maintenance pass at once: neither's version is kept blindly.
        await asyncio.gather(
            docs.append(_records([("e", 9, "A", False, 0.5)])),
            docs.maintain(MaintenancePolicy(keep_tombstones=True)),
        )
        await table.checkout_latest()
        await same()
        # Written through another handle: seen once the DocTable is told.
        other = await (await lancedb.connect_async(str(tmp_path))).open_table("documents")
        await other.add(_records([("o", 1, "B", False, 0.0)]))
        await table.checkout_latest()
        docs.invalidate()
        await same()
        # A table that does not see every write asks LanceDB every time.
        shared = DocTable(lambda: counted, dim=DIM, sole_writer=False)
        await shared.append(_records([("s", 1, "A", False, 0.0)]))
        asked.clear()
        assert await shared.version() == await table.version()
        assert asked == ["version"]

    asyncio.run(scenario())


def test_search_hides_a_lone_tombstone_and_over_fetches_past_deleted_neighbours(
    tmp_path: Path,
) -> None:
    """The vector search carries no ``deleted`` filter. A tombstone for an id that never
    had a document is alone of its id, so the id count alone would call the table clean:
    the key directory also counts tombstones. And when the nearest records are all deleted
    or superseded, the search keeps asking for more until it has ``k`` live ones."""
    import lancedb

    async def scenario() -> None:
        db = await lancedb.connect_async(str(tmp_path))
        table = await db.create_table("documents", schema=schema(DIM))
        docs = DocTable(lambda: table, dim=DIM)
        await docs.append(_records([(f"live{i}", 1, "A", False, 1.0 + i) for i in range(5)]))
        assert await docs._clean()
        # A tombstone at distance 0 for an id the table never held.
        await docs.append(_records([("ghost", 2, "A", True, 0.0)]))
        assert not await docs._clean()
        assert [r["id"] for r in await docs.search([0.0] * DIM, k=2)] == ["live0", "live1"]
        # The directory rebuilt from the table agrees.
        docs.invalidate()
        assert not await docs._clean()
        # 40 deleted and superseded neighbours nearer than any live document: more than the
        # first over-fetch (k + 8) returns.
        near = [(f"n{i}", 1, "A", False, 0.01 * (i + 1)) for i in range(40)]
        await docs.append(_records(near))
        await docs.append(
            _records([(f"n{i}", 2, "A", i % 2 == 0, 0.5 + 0.01 * i) for i in range(40)])
        )
        found = await docs.search([0.0] * DIM, k=3)
        # Odd n-ids were replaced by records at 0.51..0.89; even ones were deleted.
        assert [r["id"] for r in found] == ["n1", "n3", "n5"]
        assert [r["text"] for r in found] == ["n1@2A", "n3@2A", "n5@2A"]
        assert all("deleted" not in r for r in found)

    asyncio.run(scenario())


# -- the service in local_only mode ---------------------------------------------------------


def _local_config(tmp_path: Path, **env: str) -> LanceDBSyncConfig:
    return LanceDBSyncConfig.from_env(
        {
            "FRONTEND_TYPE": "web",
            "BACKEND_LOCATION": "local",
            "S3_STORAGE_ENABLED": "false",
            "LOCAL_STORAGE_PATH": str(tmp_path),
            "EMBEDDING_DIM": str(DIM),
            "DEVICE_ID": "unit",
            **env,
        }
    )


def test_local_only_service_refuses_s3_calls_and_bad_arguments(tmp_path: Path) -> None:
    async def scenario() -> None:
        svc = LanceDBStorageService(_local_config(tmp_path))
        await svc.add_documents("u", [_doc("a")])
        for call in (svc.sync("u"), svc.backup("u"), svc.restore("u"), svc.refresh("u")):
            with pytest.raises(ConfigError, match="not available in storage mode local_only"):
                await call
        for k in (0, 10_001):
            with pytest.raises(ValueError, match="out of range"):
                await svc.search("u", [0.0] * DIM, k=k)
        status = await svc.status("u")
        assert (status.documents, status.remote_version, status.pending_changes) == (1, None, 0)
        await svc.close()
        with pytest.raises(RuntimeError, match="closed"):
            await svc.get_document("u", "a")

    asyncio.run(scenario())


def test_device_id_is_generated_once_and_kept(tmp_path: Path) -> None:
    config = LanceDBSyncConfig.from_env(
        {
            "FRONTEND_TYPE": "web",
            "BACKEND_LOCATION": "local",
            "S3_STORAGE_ENABLED": "false",
            "LOCAL_STORAGE_PATH": str(tmp_path),
        }
    )
    first = LanceDBStorageService(config).device_id
    assert first.startswith("dev-")
    assert LanceDBStorageService(config).device_id == first


def test_default_policy_keeps_tombstones_on_shared_tables(tmp_path: Path) -> None:
    endpoint = S3Endpoint(
        url="http://127.0.0.1:9", region="us-east-1", access_key_id="k",
        secret_access_key=Secret("s"), bucket="bucket",
    )  # fmt: skip
    policies = {}
    for fe, be in (("web", "local"), ("web", "cloud"), ("desktop", "local")):
        config = LanceDBSyncConfig.from_env(
            {
                "FRONTEND_TYPE": fe,
                "BACKEND_LOCATION": be,
                "S3_BUCKET": "bucket",
                "LOCAL_STORAGE_PATH": str(tmp_path),
                "DEVICE_ID": "x",
            }
        )
        svc = LanceDBStorageService(config, endpoint=endpoint)  # no I/O before the first call
        policies[svc.mode.value] = svc.policy.keep_tombstones
    assert policies == {
        "local_primary_s3_sync": True,
        "s3_primary_local_cache": True,
        "local_primary_s3_backup": False,
    }
    assert not (tmp_path / "users").exists()


def test_indexes_are_prewarmed_in_the_background_and_close_does_not_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a user's table starts loading its indexes into the cache without delaying
    the first read; closing drops a prewarm still running instead of waiting for it; the
    policy can turn it off."""
    import time

    calls: list[str] = []
    release = asyncio.Event()

    async def slow_prewarm(self: DocTable) -> None:
        calls.append("started")
        await release.wait()  # never set: stands for a prewarm that takes long
        calls.append("finished")

    monkeypatch.setattr(DocTable, "prewarm", slow_prewarm)

    async def scenario() -> None:
        doc = {"id": "a", "text": "t", "vector": [0.5] * DIM}
        svc = LanceDBStorageService(_local_config(tmp_path))
        await svc.add_documents("u", [doc])
        assert (await svc.get_document("u", "a")) is not None  # not held up by the prewarm
        assert calls == ["started"]
        start = time.perf_counter()
        await svc.close()
        assert time.perf_counter() - start < 5 and calls == ["started"]

        calls.clear()
        off = LanceDBStorageService(
            _local_config(tmp_path / "off"), policy=MaintenancePolicy(prewarm_indexes=False)
        )
        await off.add_documents("u", [doc])
        await off.close()
        assert calls == []

    asyncio.run(scenario())


def test_prewarm_loads_every_index_of_a_real_table(tmp_path: Path) -> None:
    """The real call: no error on a table with an id index and a vector index."""

    async def scenario() -> None:
        policy = MaintenancePolicy(vector_index_min_rows=256)
        async with LanceDBStorageService(_local_config(tmp_path), policy=policy) as svc:
            rng = np.random.default_rng(3)
            docs = [
                {"id": f"d{i}", "text": "t", "vector": rng.random(DIM).tolist()} for i in range(300)
            ]
            await svc.add_documents("u", docs)
            report = await svc.maintain("u")
            assert report.vector_index_built
            await svc.wait_idle("u")
            assert (await svc.status("u")).last_error is None
        async with LanceDBStorageService(_local_config(tmp_path), policy=policy) as again:
            assert len(await again.search("u", docs[0]["vector"], k=3)) == 3
            await again.wait_idle("u")
            assert (await again.status("u")).last_error is None

    asyncio.run(scenario())


def test_a_replica_finds_its_newest_version_among_new_names(tmp_path: Path) -> None:
    """The newest version follows each listing from the names it adds; when the listing
    lost the newest manifest, every name is read again."""
    from lancesync_bench.storage.replica import Replica

    def manifest(v: int) -> str:
        return f"_versions/{2**64 - 1 - v}.manifest"

    replica = Replica(None, tmp_path, dim=4, writer="A")  # type: ignore[arg-type]
    files = {manifest(v): 10 for v in (1, 2, 3)} | {"data/a.lance": 5}
    replica._adopt(files, whole=True)
    assert replica._local_latest() == 3
    replica._adopt(files | {manifest(4): 10, "data/b.lance": 5})
    assert replica._local_latest() == 4
    replica._adopt({k: s for k, s in replica._files.items() if k != manifest(1)})  # cleanup
    assert replica._local_latest() == 4
    replica._adopt({manifest(2): 10, "data/a.lance": 5})  # the newest went: read all
    assert replica._local_latest() == 2
