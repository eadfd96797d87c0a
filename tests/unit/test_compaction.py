"""A compaction prepared on a shadow: the table is untouched until the commit, appends
made meanwhile survive it, and a rewrite that no longer fits is refused (the caller then
compacts in place, as DocTable.maintain does)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import lance
import lancedb
import lancedb.index
import pyarrow as pa
import pytest

from lancesync_bench.storage.compaction import prepare_compaction
from lancesync_bench.storage.doctable import DocTable, MaintenancePolicy
from lancesync_bench.storage.schema import schema
from lancesync_bench.storage.transfer import local_files


def _small_fragments(uri: str, n: int) -> None:
    for i in range(n):
        lance.write_dataset(
            pa.table({"id": [f"d{i}"], "n": [i]}), uri, mode="append" if i else "create"
        )


def test_prepared_compaction_leaves_the_table_alone_and_keeps_later_appends(
    tmp_path: Path,
) -> None:
    uri = str(tmp_path / "t.lance")
    _small_fragments(uri, 12)
    lance.dataset(uri).delete("id = 'd3'")
    files = local_files(Path(uri))

    prepared = prepare_compaction(Path(uri), files, tmp_path / "shadow")

    assert prepared is not None and prepared.files
    assert local_files(Path(uri)) == files  # nothing written into the table itself
    assert all(rel.startswith("data/") for rel in prepared.files)
    for i in (100, 101):  # other writers go on meanwhile
        lance.write_dataset(pa.table({"id": [f"d{i}"], "n": [i]}), uri, mode="append")
    prepared.commit(Path(uri))
    prepared.discard()

    table = lance.dataset(uri)
    ids = sorted(table.to_table(columns=["id"]).column("id").to_pylist())
    assert ids == sorted([f"d{i}" for i in range(12) if i != 3] + ["d100", "d101"])
    assert len(table.get_fragments()) == 3  # the 11 live small ones became one
    assert not (tmp_path / "shadow").exists()


def test_nothing_to_compact_prepares_nothing(tmp_path: Path) -> None:
    uri = str(tmp_path / "t.lance")
    _small_fragments(uri, 1)
    assert prepare_compaction(Path(uri), local_files(Path(uri)), tmp_path / "s") is None
    assert not (tmp_path / "s").exists()


def test_a_rewrite_preempted_by_a_delete_is_refused(tmp_path: Path) -> None:
    uri = str(tmp_path / "t.lance")
    _small_fragments(uri, 10)
    prepared = prepare_compaction(Path(uri), local_files(Path(uri)), tmp_path / "shadow")
    assert prepared is not None
    lance.dataset(uri).delete("id = 'd3'")
    with pytest.raises(OSError, match="conflict"):
        prepared.commit(Path(uri))
    assert lance.dataset(uri).count_rows() == 9


def test_maintain_falls_back_to_compacting_in_place_when_the_rewrite_is_stale(
    tmp_path: Path,
) -> None:
    dim = 4

    async def scenario() -> None:
        db = await lancedb.connect_async(str(tmp_path))
        table = await db.create_table("documents", schema=schema(dim))
        docs = DocTable(lambda: table, dim=dim)
        rows = [
            {
                "id": f"d{i}",
                "text": "t",
                "vector": [float(i)] * dim,
                "metadata": "{}",
                "updated_at": i + 1,
                "origin": "A",
                "deleted": False,
            }
            for i in range(10)
        ]
        for row in rows:
            await docs.append(pa.Table.from_pylist([row], schema=schema(dim)))
        folder = Path(str(await table.uri()))
        prepared = prepare_compaction(folder, local_files(folder), tmp_path / "shadow")
        assert prepared is not None
        await table.delete("id = 'd3'")  # the rewrite no longer fits
        docs.invalidate()
        report = await docs.maintain(MaintenancePolicy(), prepared)
        assert report.fragments_after == 1
        assert await docs.live_count() == 9 and await docs.get("d4") is not None

    asyncio.run(scenario())


def test_index_deltas_gather_until_the_policy_merges_them(tmp_path: Path) -> None:
    dim = 4

    async def scenario() -> list[int]:
        db = await lancedb.connect_async(str(tmp_path))
        table = await db.create_table("documents", schema=schema(dim))
        await table.create_index("id", config=lancedb.index.BTree())
        docs = DocTable(lambda: table, dim=dim)
        policy = MaintenancePolicy(index_delta_segments=3, prewarm_indexes=False)
        counts = []
        for p in range(6):
            rows = [
                {
                    "id": f"d{p}-{i}",
                    "text": "t",
                    "vector": [float(i)] * dim,
                    "metadata": "{}",
                    "updated_at": 100 * p + i + 1,
                    "origin": "A",
                    "deleted": False,
                }
                for i in range(3)
            ]
            for row in rows:
                await docs.append(pa.Table.from_pylist([row], schema=schema(dim)))
            await docs.maintain(policy)
            uri = str(await table.uri())
            [ix] = lance.dataset(uri).describe_indices()
            counts.append(len(ix.segments))
        assert await docs.get("d5-2") is not None and await docs.live_count() == 18
        return counts

    # A new segment per pass until 3 deltas wait; the pass after merges them with its rows.
    assert asyncio.run(scenario()) == [2, 3, 4, 2, 3, 4]
