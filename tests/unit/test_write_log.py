"""The write log: framing, group commit, torn tails and corruption."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from lancesync_bench.storage.log import (
    LogCorruptError,
    TornLogTailWarning,
    WriteLog,
    decode_records,
    encode_records,
    read_segment,
)
from lancesync_bench.storage.memtable import MemTable
from lancesync_bench.storage.schema import records_table, tombstones_table

DIM = 4


def _records(ids: list[str], *, t0: int = 1, origin: str = "A") -> pa.Table:
    docs = [{"id": i, "text": f"text {i}", "vector": [float(n)] * DIM} for n, i in enumerate(ids)]
    return records_table(docs, dim=DIM, origin=origin, timestamps=range(t0, t0 + len(ids)))


def _write_frames(path: Path, tables: list[pa.Table]) -> list[int]:
    """Frames back to back; returns each frame's offset."""
    offsets, data = [], b""
    for t in tables:
        offsets.append(len(data))
        data += encode_records(t)
    path.write_bytes(data)
    return offsets


def test_frames_round_trip(tmp_path: Path) -> None:
    tables = [_records(["a", "b"]), _records(["c"], t0=5)]
    path = tmp_path / "000000000001.wal"
    offsets = _write_frames(path, tables)
    got = list(read_segment(path))
    assert [o for o, _ in got] == offsets
    assert [decode_records(p).to_pylist() for _, p in got] == [t.to_pylist() for t in tables]


@pytest.mark.parametrize("cut", [3, 20, -1])
def test_torn_tail_is_cut_with_a_warning(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "000000000001.wal"
    offsets = _write_frames(path, [_records(["a"]), _records(["b"], t0=2)])
    data = path.read_bytes()
    path.write_bytes(data[: offsets[1] + cut] if cut > 0 else data[:cut])
    with pytest.warns(TornLogTailWarning, match=f"offset {offsets[1]}"):
        got = list(read_segment(path))
    assert [decode_records(p).column("id").to_pylist() for _, p in got] == [["a"]]
    assert path.stat().st_size == offsets[1]  # cut, so later appends continue cleanly


def test_damaged_last_frame_is_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "000000000001.wal"
    offsets = _write_frames(path, [_records(["a"]), _records(["b"], t0=2)])
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # inside the last payload
    path.write_bytes(bytes(data))
    with pytest.warns(TornLogTailWarning, match="checksum"):
        assert len(list(read_segment(path))) == 1
    assert path.stat().st_size == offsets[1]


@pytest.mark.parametrize("where", ["payload", "header"])
def test_damage_inside_the_log_names_file_and_offset(tmp_path: Path, where: str) -> None:
    path = tmp_path / "000000000001.wal"
    offsets = _write_frames(path, [_records(["a"]), _records(["b"], t0=2), _records(["c"], t0=3)])
    data = bytearray(path.read_bytes())
    data[offsets[1] + (40 if where == "payload" else 0)] ^= 0xFF
    path.write_bytes(bytes(data))
    before = path.read_bytes()
    with pytest.raises(LogCorruptError) as err:
        list(read_segment(path))
    assert str(path) in str(err.value) and f"offset {offsets[1]}" in str(err.value)
    assert path.read_bytes() == before  # nothing cut or dropped


def test_concurrent_appends_share_flushes(tmp_path: Path) -> None:
    async def scenario(durability: str) -> WriteLog:
        log = WriteLog(tmp_path / durability, durability=durability)  # type: ignore[arg-type]
        seen: list[int] = []
        frames = [encode_records(_records([f"d{i}"], t0=i + 1)) for i in range(40)]
        await asyncio.gather(
            *(log.append(f, then=lambda i=i: seen.append(i)) for i, f in enumerate(frames))
        )
        assert sorted(seen) == list(range(40))  # every write visible once durable
        segment = log.current.path
        assert len(list(read_segment(segment))) == 40
        return log

    for durability in ("process", "fsync"):
        log = asyncio.run(scenario(durability))
        assert log.frames == 40 and 1 <= log.flushes < 40


def test_a_failed_append_is_never_visible(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = WriteLog(tmp_path)
        seen: list[str] = []
        first = log.append(encode_records(_records(["a"])), then=lambda: seen.append("a"))
        await first
        os.close(log.current.fd)  # the disk goes away under the log
        with pytest.raises(OSError, match="write log append failed"):
            await log.append(encode_records(_records(["b"])), then=lambda: seen.append("b"))
        assert seen == ["a"]
        with pytest.raises(OSError, match="failed earlier"):
            log.append(encode_records(_records(["c"])))

    asyncio.run(scenario())


def test_rotate_and_remove(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = WriteLog(tmp_path)
        await log.append(encode_records(_records(["a"])))
        old = log.rotate()
        await log.append(encode_records(_records(["b"])))
        assert [p.name for p in log.existing()] == ["000000000001.wal", "000000000002.wal"]
        log.remove(old)
        assert [p.name for p in log.existing()] == ["000000000002.wal"]
        log.close()

    asyncio.run(scenario())


def test_bad_durability_is_named() -> None:
    with pytest.raises(ValueError, match="durability='sometimes'; allowed: process, fsync"):
        WriteLog(Path("/nonexistent"), durability="sometimes")  # type: ignore[arg-type]


def test_memtable_keeps_the_newest_record_per_id_and_scans_exactly() -> None:
    mem = MemTable(DIM)
    mem.insert(_records(["a", "b", "c"], t0=10))
    mem.insert(_records(["a"], t0=20))  # replaces a (vector [0]*4 again, new text)
    mem.insert(tombstones_table(["b"], dim=DIM, origin="A", timestamps=[30]))
    mem.insert(_records(["c"], t0=5))  # older than the c it has: loses
    key, deleted = mem.key_of("b") or ((0, ""), False)
    assert deleted and key == (30, "A")
    assert mem.record("c")["updated_at"] == 12  # type: ignore[index]
    query = np.array([2.0] * DIM, dtype=np.float32)
    hits = mem.nearest(query, 10)
    assert [i for _, i in hits] == ["c", "a"]  # b is deleted
    assert hits[0][0] == pytest.approx(0.0) and hits[1][0] == pytest.approx(16.0)
    assert mem.rows == 6 and mem.max_updated_at == 30


def test_memtable_gives_one_origins_records_newer_than_a_floor() -> None:
    mem = MemTable(DIM)
    assert mem.records_after(0, "A") is None
    mem.insert(_records(["a", "b"], t0=10))
    mem.insert(_records(["x"], t0=40, origin="B"))  # another origin's, newer
    mem.insert(_records(["c", "d"], t0=20))  # c (20) is not above the floor, d (21) is
    mem.insert(_records(["e"], t0=30))
    got = mem.records_after(20, "A")
    assert got is not None
    assert (got.column("id").to_pylist(), got.column("updated_at").to_pylist()) == (
        ["d", "e"],
        [21, 30],
    )
    newer_b = mem.records_after(20, "B")
    assert newer_b is not None and newer_b.column("id").to_pylist() == ["x"]
    assert mem.records_after(40, "A") is None  # no batch holds anything newer
    assert mem.records_after(11, "A").column("id").to_pylist() == ["c", "d", "e"]  # type: ignore[union-attr]
