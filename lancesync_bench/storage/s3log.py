"""The S3 write log: the S3-primary mode's writes become durable as one S3 object each.

In the S3-primary mode the table's truth is on S3, so a write is acknowledged once S3 holds
it. A Lance commit to S3 costs several requests in a row (data file, transaction, manifest:
3-4 PUTs and 23-31 ms on loopback here, 4 round trips plus Lance's own work at 20 ms RTT);
this log makes an acknowledged write **one PUT** of a small object, and the write tier
(:mod:`lancesync_bench.storage.tier`) folds many of them into one Lance version in the
background, as it does with the local log::

    write -> PUT <prefix>/<writer>/<name>.wal (If-None-Match: *) -> in-memory table -> ack
    flush (background) -> one Lance commit through the replica -> DELETE the objects

Objects use the local log's frame format (:mod:`lancesync_bench.storage.log`); writes that
arrive while a PUT is in flight share the next one (group commit). Each writer has its own
folder under the log prefix, and each object a fresh name: writers never contend for a key.
``If-None-Match: *`` still guards the name, so a second process running under the same
writer id can never overwrite an acknowledged write.

What an acknowledged write survives: anything short of losing the bucket (S3's own
durability); the writing process can die at any moment after the PUT returned. A PUT whose
answer is lost (connection cut after sending, a 5xx) is resolved before answering: the key
is read back, and the write is acknowledged only when S3 holds exactly its bytes. When the
read fails too, the write raises :class:`~lancesync_bench.errors.CommitOutcomeUnknown`.

Readers: other instances list the log prefix when they refresh (within the staleness bound)
and read the objects they have not seen into memory (the tier's ``others``); an object older than
``ADOPT_AFTER_S`` whose writer is gone is folded into Lance by whichever instance sees it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
)

from lancesync_bench.errors import CommitOutcomeUnknown, S3Error
from lancesync_bench.storage.log import parse_frames
from lancesync_bench.storage.transfer import RemoteTable, _s3_failure

__all__ = ["ADOPT_AFTER_S", "LogObject", "S3Log", "S3Segment"]

_log = logging.getLogger("lancesync_bench.storage")

# A live writer folds its log objects into Lance within the tier's flush age (2 s by
# default) and deletes them; one older than this lost its writer (a process killed, an
# instance scaled away), and the next instance that sees it folds it in. Two instances doing
# so at once both commit the same records, which is harmless (same keys: one wins, the
# other is dropped by the next compaction).
ADOPT_AFTER_S = 60.0
_SUFFIX = ".wal"


@dataclass
class S3Segment:
    """The log objects written between two rotations (what one flush commits)."""

    epoch: int
    keys: list[str] = field(default_factory=list)
    bytes: int = 0
    frames: int = 0


@dataclass(frozen=True)
class LogObject:
    """One object under the log prefix, from a listing."""

    key: str
    size: int
    modified: float  # POSIX time S3 reports
    writer: str


@dataclass
class _Pending:
    segment: S3Segment
    frame: bytes
    then: Callable[[], None] | None
    done: asyncio.Future[None] = field(repr=False)


class S3Log:
    """One writer's log of one table on S3, with the local log's interface.

    Used from one event loop; the requests run in worker threads.
    """

    durability = "s3"

    def __init__(self, remote: RemoteTable, prefix: str, writer: str) -> None:
        self.remote = remote
        self.prefix = prefix.strip("/") + "/"
        self.writer = writer
        self.own = f"{self.prefix}{writer}/"
        self.flushes = 0  # PUTs: fewer than frames when writers share one
        self.frames = 0
        self.deleted = 0
        self.delete_failures = 0
        self._epoch = 0
        self._current: S3Segment | None = None
        self._queue: list[_Pending] = []
        self._writer_task: asyncio.Task[None] | None = None
        self._deletions: set[asyncio.Task[None]] = set()
        self._known = 0  # own objects on S3 not yet deleted (for status)
        # Keys of this process's acknowledged writes, until deleted: the tier holds their
        # records. Any other object under the log prefix, this writer's included (a PUT
        # whose outcome was unknown), is read like another writer's.
        self.mine: set[str] = set()
        # Own objects whose PUT had an unknown outcome: not held, perhaps on S3. Refreshes
        # list this writer's objects too while any is left, and read those as others'.
        self.unsure: set[str] = set()

    # -- the tier's log interface -----------------------------------------------------------

    @property
    def current(self) -> S3Segment:
        """The segment new writes go to."""
        if self._current is None:
            self._epoch += 1
            self._current = S3Segment(self._epoch)
        return self._current

    def rotate(self) -> S3Segment | None:
        """Send later writes to a new segment; returns the one closed to new writes (None
        when no write went to one). Frames queued before still join it."""
        old, self._current = self._current, None
        return old

    async def drain(self) -> None:
        """Wait until every queued frame is on S3 (or failed)."""
        while self._writer_task is not None and not self._writer_task.done():
            await asyncio.shield(self._writer_task)

    async def segments(self) -> list[str]:
        """This writer's objects on S3, oldest first: what a restart replays (the tier then
        holds their records)."""
        keys = [o.key for o in await asyncio.to_thread(self.list_objects, self.own)]
        self.mine.update(keys)
        return keys

    async def read(self, key: str) -> list[tuple[int, bytes]]:
        """The frames of one log object."""
        data = await asyncio.to_thread(self.get, key)
        if data is None:  # folded into a version and deleted meanwhile
            return []
        return parse_frames(data, f"s3://{self.remote.bucket}/{key}")

    def segment_count(self) -> int:
        """This writer's log objects on S3, as far as this process knows."""
        return self._known

    def remove(self, segment: S3Segment | str) -> None:
        """Delete a flushed segment's objects (in the background: a failed delete leaves
        objects that the next open finds already in Lance and deletes again)."""
        keys = segment.keys if isinstance(segment, S3Segment) else [segment]
        if not keys:
            return
        task = asyncio.get_running_loop().create_task(self._delete(list(keys)))
        self._deletions.add(task)
        task.add_done_callback(self._deletions.discard)

    async def settle(self) -> None:
        """Wait for queued writes and deletions."""
        await self.drain()
        while self._deletions:
            await asyncio.wait(set(self._deletions))

    async def aclose(self) -> None:
        """Wait for queued writes and deletions (see :meth:`settle`)."""
        await self.settle()

    def close(self) -> None:
        """Nothing to release (see :meth:`aclose`)."""

    # -- writes -----------------------------------------------------------------------------

    def append(self, frame: bytes, then: Callable[[], None] | None = None) -> asyncio.Future[None]:
        """Queue ``frame``; the future resolves once S3 holds it (``then`` runs just before)."""
        loop = asyncio.get_running_loop()
        pending = _Pending(self.current, frame, then, loop.create_future())
        self._queue.append(pending)
        if self._writer_task is None or self._writer_task.done():
            self._writer_task = loop.create_task(self._write_queued())
        return pending.done

    async def _write_queued(self) -> None:
        """One PUT per segment per round, for whatever queued meanwhile."""
        while self._queue:
            batch, self._queue = self._queue, []
            groups: dict[int, list[_Pending]] = {}
            for p in batch:
                groups.setdefault(p.segment.epoch, []).append(p)
            for group in groups.values():
                segment = group[0].segment
                body = b"".join(p.frame for p in group)
                key = f"{self.own}{time.time_ns():020d}-{uuid.uuid4().hex[:8]}{_SUFFIX}"
                try:
                    await asyncio.to_thread(self.put, key, body)
                except Exception as exc:  # not acknowledged; later writes try again
                    if isinstance(exc, CommitOutcomeUnknown):
                        self.unsure.add(key)  # refreshes look for it (see list_others)
                    for p in group:
                        if not p.done.done():
                            p.done.set_exception(exc)
                    continue
                segment.keys.append(key)
                self.mine.add(key)
                segment.bytes += len(body)
                segment.frames += len(group)
                self.flushes += 1
                self.frames += len(group)
                self._known += 1
                for p in group:
                    try:
                        if p.then is not None:
                            p.then()
                    except Exception as exc:
                        if not p.done.done():
                            p.done.set_exception(exc)
                        continue
                    if not p.done.done():
                        p.done.set_result(None)

    # -- requests (worker threads) ----------------------------------------------------------

    @property
    def _client(self) -> Any:
        return self.remote.client

    def put(self, key: str, body: bytes) -> None:
        """Create ``key`` holding ``body``; returns only when S3 holds exactly that."""
        bucket = self.remote.bucket
        try:
            self._client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
            return
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status is not None and int(status) < 500 and int(status) != 412:
                raise _s3_failure(exc, f"writing log object {key} (nothing was written)") from exc
            failure: Exception = exc
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            # No connection was made: the request never left.
            raise _s3_failure(exc, f"writing log object {key} (nothing was written)") from exc
        except BotoCoreError as exc:
            failure = exc
        # The answer was lost, or the name exists (412: an earlier attempt of this very PUT).
        try:
            held = self._client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise _s3_failure(
                    failure, f"writing log object {key} (S3 does not hold it: not written)"
                ) from failure
            raise self._unknown(key, failure, exc) from failure
        except BotoCoreError as exc:
            raise self._unknown(key, failure, exc) from failure
        if hashlib.sha256(held).digest() != hashlib.sha256(body).digest():
            raise S3Error(
                f"log object {key} holds other bytes: another process writes under writer id "
                f"{self.writer!r} (each instance needs its own DEVICE_ID)"
            ) from failure

    @staticmethod
    def _unknown(key: str, failure: Exception, read: Exception) -> CommitOutcomeUnknown:
        return CommitOutcomeUnknown(
            f"writing log object {key}: the answer was lost "
            f"({type(failure).__name__}) and reading it back failed too "
            f"({type(read).__name__}); the next open shows whether S3 holds it"
        )

    def get(self, key: str) -> bytes | None:
        """The bytes of one log object; None when it is gone (deleted once its records
        were in a Lance version, between a listing and this read)."""
        try:
            data: bytes = self._client.get_object(Bucket=self.remote.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise _s3_failure(exc, f"reading log object {key}") from exc
        except BotoCoreError as exc:
            raise _s3_failure(exc, f"reading log object {key}") from exc
        return data

    def _pages(self, prefix: str, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        """The pages of one listing of ``prefix`` (each page is one LIST request)."""
        bucket = self.remote.bucket
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        while True:
            try:
                page: dict[str, Any] = self._client.list_objects_v2(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise _s3_failure(exc, f"listing s3://{bucket}/{prefix}") from exc
            yield page
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page.get("NextContinuationToken")

    def list_objects(self, prefix: str | None = None) -> list[LogObject]:
        """Log objects under ``prefix`` (default: every writer's), oldest name first."""
        prefix = prefix or self.prefix
        out: list[LogObject] = []
        for page in self._pages(prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                if not key.endswith(_SUFFIX):
                    continue
                writer = key[len(self.prefix) :].split("/", 1)[0]
                modified = item.get("LastModified")
                stamp = modified.timestamp() if modified is not None else time.time()
                out.append(LogObject(key, int(item["Size"]), stamp, writer))
        out.sort(key=lambda o: o.key)
        if prefix == self.own:
            self._known = len(out)
        return out

    def list_others(self) -> tuple[list[LogObject], int]:
        """Other writers' log objects, and the LISTs it took: one LIST with a delimiter
        names the writers that have objects (a prefix each, not an entry per object), then
        one LIST per other writer. This instance's own objects, which it holds already and
        which pile up between flushes (hundreds under sustained writes), are not listed:
        listing them made a refresh cost 57 ms at the median on loopback. The exception:
        while a PUT of this writer had an unknown outcome, its objects are listed and those
        are returned, so the write shows up here once S3 is seen to hold it."""
        writers: list[str] = []
        lists = 0
        for page in self._pages(self.prefix, delimiter="/"):
            lists += 1
            writers += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        out: list[LogObject] = []
        for prefix in writers:
            if prefix != self.own:
                lists += 1
                out += self.list_objects(prefix)
            elif self.unsure:
                lists += 1
                found = [o for o in self.list_objects(prefix) if o.key in self.unsure]
                self.unsure.intersection_update(o.key for o in found)  # absent: never written
                out += found
        if self.own not in writers:
            self.unsure.clear()
        out.sort(key=lambda o: o.key)
        return out, lists

    async def _delete(self, keys: list[str]) -> None:
        try:
            await asyncio.to_thread(self._delete_now, keys)
        except Exception as exc:  # left for the next open, which finds them in Lance
            self.delete_failures += 1
            _log.warning("log objects not deleted (the next open removes them): %s", exc)
            return
        self.deleted += len(keys)
        self.mine.difference_update(keys)
        own = sum(1 for k in keys if k.startswith(self.own))
        self._known = max(0, self._known - own)

    def _delete_now(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            try:
                self._client.delete_objects(
                    Bucket=self.remote.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            except (ClientError, BotoCoreError) as exc:
                raise _s3_failure(exc, "deleting flushed log objects") from exc
