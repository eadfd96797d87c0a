"""The write log: where a write becomes durable before it reaches a Lance version.

A write appends one *frame* to the current *segment* file of its table's log folder and is
acknowledged once the frame is written (and, with ``durability="fsync"``, fdatasync'd).
Writers that arrive while a flush is under way share the next one (group commit): with N
concurrent writes the log makes fewer than N writes and syncs.

Frame: ``b"LSW1"``, payload length (u32 LE), CRC-32 of the payload (u32 LE), payload (an
Arrow IPC stream of the record batch). Segments are named by a sequence number; a segment
whose records all reached one Lance commit is deleted (see
:mod:`lancesync_bench.storage.tier`).

What each durability setting guarantees (what an acknowledged write survives):

* ``process`` (default): the frame is in the operating system's page cache when the write
  returns. It survives the process being killed (``kill -9``, an OOM kill, a crash); it
  does not survive an OS crash or a power cut before the kernel writes the page back
  (typically within 30 s on Linux). Lance's own commits give the same (they do not fsync).
* ``fsync``: the segment is fdatasync'd before the write returns (and the log folder is
  fsync'd when a segment is created), so the write also survives an OS crash or power
  loss on storage that honours flushes. Measured here: ~0.25 ms per flush, shared by the
  writers of one group.

Reading a segment back (:func:`read_segment`): a frame cut short at the end of the file, or
a last frame whose checksum fails, is a torn tail (a write the OS lost part of in a crash:
never acknowledged under ``fsync``); it is cut off with a :class:`TornLogTailWarning`. A
damaged frame with intact data after it is a :class:`LogCorruptError` naming the file and
offset: nothing is silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa

from lancesync_bench.errors import IntegrityError

__all__ = [
    "Durability",
    "LogCorruptError",
    "Segment",
    "TornLogTailWarning",
    "WriteLog",
    "decode_records",
    "encode_records",
    "parse_frames",
    "read_segment",
]

Durability = Literal["process", "fsync"]
DURABILITIES: tuple[Durability, ...] = ("process", "fsync")

_MAGIC = b"LSW1"
_HEADER = struct.Struct("<4sII")
# One frame holds one write's records; a document is at most ~1.1 MiB (text + metadata), so
# 256 MiB bounds a batch of a few hundred large documents and rejects a garbage length.
_MAX_PAYLOAD = 256 << 20
_SUFFIX = ".wal"


class LogCorruptError(IntegrityError):
    """A log frame failed its check and intact data follows it (not a torn tail)."""


class TornLogTailWarning(RuntimeWarning):
    """A log segment ended in a partial frame, which was cut off."""


def encode_records(records: pa.Table) -> bytes:
    """One write's records as a framed Arrow IPC payload."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, records.schema) as writer:
        writer.write_table(records)
    payload: bytes = sink.getvalue().to_pybytes()
    return _HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode_records(payload: bytes) -> pa.Table:
    """The records of one frame's payload."""
    return pa.ipc.open_stream(payload).read_all()


def read_segment(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, payload)`` for every intact frame of a segment file.

    A torn tail is truncated away (with a :class:`TornLogTailWarning`); damage followed by
    more data raises :class:`LogCorruptError` naming ``path`` and the offset.
    """
    data = path.read_bytes()
    offset, size = 0, len(data)
    while offset < size:
        problem = _frame_problem(data, offset)
        if problem is None:
            length = _HEADER.unpack_from(data, offset)[1]
            yield offset, data[offset + _HEADER.size : offset + _HEADER.size + length]
            offset += _HEADER.size + length
            continue
        end, reason = problem
        if end >= size or not data[offset:].strip(b"\x00"):
            warnings.warn(
                f"write log {path}: cut a torn tail of {size - offset} bytes at offset "
                f"{offset} ({reason}); it held no acknowledged write that the log's "
                "durability setting promised to keep",
                TornLogTailWarning,
                stacklevel=2,
            )
            with open(path, "r+b") as f:
                f.truncate(offset)
            return
        raise LogCorruptError(
            f"write log {path} is damaged at offset {offset} ({reason}) and "
            f"{size - end} bytes follow it; nothing was read past it or deleted. Move the "
            "file away to open the table without the writes it holds"
        )


def parse_frames(data: bytes, name: str) -> list[tuple[int, bytes]]:
    """``(offset, payload)`` of every frame of a log object written whole in one request
    (an S3 log object: no torn tail can exist). Any damaged frame is a
    :class:`LogCorruptError` naming ``name`` and the offset."""
    frames: list[tuple[int, bytes]] = []
    offset, size = 0, len(data)
    while offset < size:
        problem = _frame_problem(data, offset)
        if problem is not None:
            raise LogCorruptError(
                f"write log object {name} is damaged at offset {offset} ({problem[1]}); "
                "nothing was read past it or deleted"
            )
        length = _HEADER.unpack_from(data, offset)[1]
        frames.append((offset, data[offset + _HEADER.size : offset + _HEADER.size + length]))
        offset += _HEADER.size + length
    return frames


def _frame_problem(data: bytes, offset: int) -> tuple[int, str] | None:
    """None for an intact frame at ``offset``, else (where the damage ends, what it is)."""
    size = len(data)
    if size - offset < _HEADER.size:
        return size, "a partial frame header"
    magic, length, crc = _HEADER.unpack_from(data, offset)
    if magic != _MAGIC or length > _MAX_PAYLOAD:
        # Unknown extent: resynchronise on the next frame marker to see whether data follows.
        nxt = data.find(_MAGIC, offset + 1)
        return (size if nxt < 0 else nxt), "not a frame header"
    end = offset + _HEADER.size + length
    if end > size:
        return size, f"a frame of {length} bytes cut short"
    if zlib.crc32(data[offset + _HEADER.size : end]) != crc:
        return end, "checksum mismatch"
    return None


@dataclass
class Segment:
    """One open segment file."""

    seq: int
    path: Path
    fd: int
    bytes: int = 0
    frames: int = 0


@dataclass
class _Pending:
    segment: Segment
    frame: bytes
    then: Callable[[], None] | None
    done: asyncio.Future[None] = field(repr=False)


class WriteLog:
    """Append-only segments in ``folder`` with group commit.

    Not thread-safe: used from one event loop (the storage service's).
    """

    def __init__(self, folder: Path, *, durability: Durability = "process") -> None:
        if durability not in DURABILITIES:
            raise ValueError(f"durability={durability!r}; allowed: {', '.join(DURABILITIES)}")
        self.folder = folder
        self.durability: Durability = durability
        self.flushes = 0  # write (+ sync) rounds: fewer than frames when writers share one
        self.frames = 0
        self._current: Segment | None = None
        self._last_seq = 0
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None

    # -- segments ---------------------------------------------------------------------------

    def existing(self) -> list[Path]:
        """Segment files on disk, oldest first (what a restart must replay)."""
        if not self.folder.exists():
            return []
        return sorted(p for p in self.folder.iterdir() if p.suffix == _SUFFIX)

    async def segments(self) -> list[Path]:
        """The segments a restart must replay, oldest first (the tier's log interface)."""
        return self.existing()

    async def read(self, segment: Path) -> list[tuple[int, bytes]]:
        """The intact frames of a segment (see :func:`read_segment`)."""
        return list(read_segment(segment))

    def segment_count(self) -> int:
        """How many segments are on disk."""
        return len(self.existing())

    def start(self) -> Segment:
        """Open a new segment numbered above every segment this log or the disk has seen."""
        self.folder.mkdir(parents=True, exist_ok=True)
        highest = max([self._last_seq, *(int(p.stem) for p in self.existing() if p.stem.isdigit())])
        seq = highest + 1
        path = self.folder / f"{seq:012d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        if self.durability == "fsync":
            _fsync_dir(self.folder)
        self._current = Segment(seq, path, fd)
        self._last_seq = seq
        return self._current

    @property
    def current(self) -> Segment:
        """The segment new writes go to (created by the first write after a rotation, so
        an idle table has no empty segment file)."""
        if self._current is None:
            return self.start()
        return self._current

    def rotate(self) -> Segment | None:
        """Send later writes to a new segment; returns the one just closed to new writes
        (None when no write went to one since the last rotation).

        Frames already queued for the old segment are still written to it.
        """
        old, self._current = self._current, None
        return old

    async def drain(self) -> None:
        """Wait until every queued frame is written (and synced, per the setting)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    def remove(self, segment: Segment | Path) -> None:
        """Delete a segment whose records are in a Lance version (closing it if open)."""
        if isinstance(segment, Segment):
            with contextlib.suppress(OSError):
                os.close(segment.fd)
            path = segment.path
        else:
            path = segment
        path.unlink(missing_ok=True)
        if self.durability == "fsync":
            _fsync_dir(self.folder)

    async def aclose(self) -> None:
        """Close the log (the tier's log interface): see :meth:`close`."""
        self.close()

    def close(self) -> None:
        """Close the current segment's file (it stays on disk; empty ones are removed)."""
        if self._current is not None:
            with contextlib.suppress(OSError):
                os.close(self._current.fd)
            if self._current.bytes == 0:
                self._current.path.unlink(missing_ok=True)
            self._current = None

    # -- writes -----------------------------------------------------------------------------

    def append(self, frame: bytes, then: Callable[[], None] | None = None) -> asyncio.Future[None]:
        """Queue ``frame`` for the current segment; the future resolves once it is durable.

        ``then`` runs on the event loop right after the frame is durable and before the
        future resolves: the in-memory table inserts the write there, so that once
        :meth:`drain` returns every frame queued before it is both durable and visible, and
        a write that failed is never visible.
        """
        if self._failed is not None:
            raise OSError(f"the write log in {self.folder} failed earlier: {self._failed}")
        loop = asyncio.get_running_loop()
        pending = _Pending(self.current, frame, then, loop.create_future())
        self._queue.append(pending)
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_queued())
        return pending.done

    async def _write_queued(self) -> None:
        """Write whatever is queued, one round per batch, until the queue is empty."""
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                if self.durability == "fsync":
                    await asyncio.to_thread(_write_batch, batch, True)
                else:
                    _write_batch(batch, False)
            except BaseException as exc:
                # What reached the file is unknown: refuse later writes rather than guess.
                self._failed = exc
                for p in batch + self._queue:
                    if not p.done.done():
                        p.done.set_exception(OSError(f"write log append failed: {exc}"))
                self._queue = []
                if not isinstance(exc, Exception):
                    raise
                return
            self.flushes += 1
            self.frames += len(batch)
            for p in batch:
                try:
                    if p.then is not None:
                        p.then()
                except Exception as exc:  # the frame is durable; say the write did not land
                    if not p.done.done():
                        p.done.set_exception(exc)
                    continue
                if not p.done.done():
                    p.done.set_result(None)


def _write_batch(batch: list[_Pending], sync: bool) -> None:
    """One write per segment touched (and one fdatasync each when ``sync``)."""
    by_segment: dict[int, tuple[Segment, list[bytes]]] = {}
    for p in batch:
        by_segment.setdefault(p.segment.seq, (p.segment, []))[1].append(p.frame)
    for segment, frames in by_segment.values():
        data = b"".join(frames)
        view = memoryview(data)
        while view:
            written = os.write(segment.fd, view)
            view = view[written:]
        segment.bytes += len(data)
        segment.frames += len(frames)
        if sync:
            os.fdatasync(segment.fd)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
