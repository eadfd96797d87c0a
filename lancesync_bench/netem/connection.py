"""One proxied TCP connection: two delay lines, request tracking and injected faults.

Each direction of each connection has its own delay line: chunks wait there until their
release time, in arrival order, so bytes of one stream never overtake each other while
unrelated connections never wait for each other. Everything here runs on the proxy's
event loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import struct
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from email.utils import formatdate
from enum import Enum
from typing import Literal
from xml.sax.saxutils import escape

from lancesync_bench.netem.counts import CountKeeper
from lancesync_bench.netem.http import HttpTracker, RequestHead
from lancesync_bench.netem.profile import NetworkProfile

__all__ = ["Connection", "CutMode", "PathState", "slowdown_response"]

CutMode = Literal["reset", "blackhole"]

# One read per chunk, the size asyncio streams buffer by default.
_READ_BYTES = 64 * 1024
# Bytes a delay line holds before its reader stops reading: a generous TCP window. At
# 80 ms round trip, 16 MiB in flight still allows ~400 MB/s per connection, so the window
# never becomes the bottleneck of a benchmark, yet memory per connection stays bounded.
_WINDOW_BYTES = 16 * 1024 * 1024
# After answering a request itself, the proxy reads (and drops) what the client still
# sends for this long, so closing does not turn into a reset that eats the answer; the
# same 2 s as Apache's lingering close.
_LINGER_S = 2.0


class _Signal(Enum):
    EOF = "eof"  # half-close the receiving side
    RESET = "reset"  # abort the connection with a TCP reset


@dataclass(eq=False)
class PathState:
    """What all connections of one proxy share: target, profile, randomness, counts."""

    upstream_host: str
    upstream_port: int
    profile: NetworkProfile
    counts: CountKeeper
    seed: int
    cut_mode: CutMode | None = None
    # Called with each request head; returns the head to send (see netem.rewrite).
    rewrite: Callable[[RequestHead, bytes], bytes] | None = None
    connections: set[Connection] = field(default_factory=set)
    delay_rng: random.Random = field(init=False)
    fault_rng: random.Random = field(init=False)
    request_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        # Separate streams so that turning faults on does not change the delays drawn.
        self.delay_rng = random.Random(f"{self.seed}:delay")
        self.fault_rng = random.Random(f"{self.seed}:fault")

    def should_fail(self) -> bool:
        """Draw whether the next request fails (no draw at all when nothing can fail)."""
        rate = self.profile.fail_rate
        return rate > 0 and (rate >= 1 or self.fault_rng.random() < rate)


class _DelayLine:
    """Chunks of one direction waiting for their release time, first in, first out."""

    def __init__(self, not_before: float = 0.0) -> None:
        self._items: deque[tuple[float, bytes | _Signal]] = deque()
        self._bytes = 0
        self._changed = asyncio.Condition()
        self._last_release = 0.0
        self._link_free = 0.0
        self._not_before = not_before
        self.busy = False  # an item is out of the line but not yet written

    @property
    def idle(self) -> bool:
        """Whether nothing waits in or leaves the line: a due chunk may skip it."""
        return not self._items and not self.busy

    def schedule(
        self, arrival: float, nbytes: int, profile: NetworkProfile, rng: random.Random
    ) -> float:
        """The release time of a chunk that arrived now; never before the previous one."""
        start = max(arrival, self._not_before)
        if profile.bandwidth_mbps is not None:
            self._link_free = max(start, self._link_free) + profile.transfer_s(nbytes)
            start = self._link_free
        self._last_release = max(start + profile.one_way_s(rng), self._last_release)
        return self._last_release

    async def put(self, release: float, item: bytes | _Signal) -> None:
        """Queue an item, waiting while the line holds a full window."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._bytes < _WINDOW_BYTES)
            self._items.append((release, item))
            self._bytes += len(item) if isinstance(item, bytes) else 0
            self._changed.notify_all()

    async def get(self) -> tuple[float, bytes | _Signal]:
        """The oldest item and its release time, waiting for one if the line is empty."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items))
            release, item = self._items.popleft()
            self._bytes -= len(item) if isinstance(item, bytes) else 0
            self._changed.notify_all()
            return release, item


def slowdown_response(head: RequestHead, request_id: str) -> bytes:
    """An S3 ``503 SlowDown`` answer to ``head`` that closes the connection."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
        "<Message>Please reduce your request rate. (injected by lancesync-bench netem)</Message>"
        f"<Resource>{escape(head.path)}</Resource><RequestId>{request_id}</RequestId></Error>"
    ).encode()
    lines = [
        "HTTP/1.1 503 Slow Down",
        "Content-Type: application/xml",
        f"Content-Length: {len(body)}",
        "Connection: close",
        f"x-amz-request-id: {request_id}",
        f"Date: {formatdate(usegmt=True)}",
        "Server: lancesync-bench-netem",
    ]
    # A HEAD answer has no body, whatever its Content-Length says.
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head.method == "HEAD" else body)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped or refused path does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Connection:
    """A client connection accepted by the proxy and its upstream twin."""

    def __init__(
        self, path: PathState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.path = path
        self.blackholed = path.cut_mode == "blackhole"
        self._client_r, self._client_w = reader, writer
        self._up_w: asyncio.StreamWriter | None = None
        self._tracker = HttpTracker(path.rewrite)
        self._tasks: list[asyncio.Task[None]] = []
        self._upstream_tasks: list[asyncio.Task[None]] = []
        self._unparsed = False
        self._failing = False
        self._closed = False

    async def serve(self) -> None:
        """Relay until both directions are closed or the connection is aborted."""
        path = self.path
        path.connections.add(self)
        try:
            if path.cut_mode == "reset":
                _reset(self._client_w)
                return
            if self.blackholed:
                await self._run(self._swallow_client())
                return
            await self._relay()
        finally:
            path.connections.discard(self)
            self.abort()

    async def _relay(self) -> None:
        path = self.path
        loop = asyncio.get_running_loop()
        path.counts.add("connections")
        # The client's connect() returned at once on loopback; a real one takes a round
        # trip, so its first bytes leave one RTT after the accept.
        up = _DelayLine(not_before=loop.time() + path.profile.rtt_ms / 1000.0)
        down = _DelayLine()
        try:
            up_r, self._up_w = await asyncio.open_connection(path.upstream_host, path.upstream_port)
        except OSError:
            return  # upstream down: the client sees a reset, as from a dead server
        if self._closed:  # cut or stopped while connecting
            _reset(self._up_w)
            return
        upstream_side = [
            asyncio.create_task(self._to_peer(up, self._up_w, client=False)),
            asyncio.create_task(self._from_upstream(up_r, down)),
        ]
        self._upstream_tasks = upstream_side
        await self._run(
            self._from_client(up, down),
            *upstream_side,
            self._to_peer(down, self._client_w, client=True),
        )
        for writer in (self._up_w, self._client_w):
            writer.close()
        self._closed = True

    async def _run(self, *jobs: Coroutine[object, object, None] | asyncio.Task[None]) -> None:
        self._tasks = [j if isinstance(j, asyncio.Task) else asyncio.create_task(j) for j in jobs]
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def abort(self) -> None:
        """Drop the connection on both sides with resets; idempotent."""
        if self._closed:
            return
        self._closed = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        _reset(self._client_w)
        if self._up_w is not None:
            _reset(self._up_w)

    async def _swallow_client(self) -> None:
        # A black hole: read and drop until the client gives up (restore() resets us).
        while await self._client_r.read(_READ_BYTES):
            pass

    async def _from_client(self, up: _DelayLine, down: _DelayLine) -> None:
        path, loop = self.path, asyncio.get_running_loop()
        while True:
            try:
                data = await self._client_r.read(_READ_BYTES)
            except OSError:
                self.abort()
                return
            now = loop.time()
            if not data:
                if not self._failing:
                    await up.put(up.schedule(now, 0, path.profile, path.delay_rng), _Signal.EOF)
                return
            path.counts.add("bytes_up", len(data))
            if self._failing:
                continue  # lingering close: read and drop
            forward = await self._track(data, now, up, down)
            if not forward:
                continue  # failed on purpose (None), or a rewrite holds a partial head (b"")
            data = forward
            release = up.schedule(now, len(data), path.profile, path.delay_rng)
            await self._send(up, self._up_w, release, data, client=False)

    async def _track(
        self, data: bytes, now: float, up: _DelayLine, down: _DelayLine
    ) -> bytes | None:
        """Count the requests in ``data``; the bytes to forward (``data``, or its rewrite
        when the path rewrites requests), or None when a request was failed on purpose."""
        path = self.path
        if path.rewrite is not None:
            # Even once the stream is not followable: the rewriter may hold a partial head.
            found, data = self._tracker.rewrite_request(data)
        elif self._tracker.broken:
            return data
        else:
            found = self._tracker.feed_request(data)
        for parsed in found:
            path.counts.request(parsed.head)
            if path.should_fail():
                await self._fail(parsed.head, now, up, down)
                return None
        self._note_unparsed()
        return data

    def _note_unparsed(self) -> None:
        if self._tracker.broken and not self._unparsed:
            self._unparsed = True
            self.path.counts.add("unparsed_connections")

    async def _fail(self, head: RequestHead, now: float, up: _DelayLine, down: _DelayLine) -> None:
        """Answer ``head`` as the server would have, after one round trip, then close."""
        path, profile = self.path, self.path.profile
        self._failing = True
        path.counts.add("faults")
        for task in self._upstream_tasks:  # the server's answers must not follow ours
            task.cancel()
        if self._up_w is not None:
            _reset(self._up_w)
        at_server = up.schedule(now, 0, profile, path.delay_rng)
        if profile.fail_mode == "reset":
            await down.put(down.schedule(at_server, 0, profile, path.delay_rng), _Signal.RESET)
            return
        answer = slowdown_response(head, f"netem-{next(path.request_ids):08d}")
        path.counts.response(503)
        release = down.schedule(at_server, len(answer), profile, path.delay_rng)
        await down.put(release, answer)
        await down.put(release, _Signal.EOF)

    async def _from_upstream(self, reader: asyncio.StreamReader, down: _DelayLine) -> None:
        path, loop = self.path, asyncio.get_running_loop()
        while True:
            try:
                data = await reader.read(_READ_BYTES)
            except OSError:
                data, signal = b"", _Signal.RESET  # a server reset reaches the client too
            else:
                signal = _Signal.EOF
            now = loop.time()
            if not data:
                await down.put(down.schedule(now, 0, path.profile, path.delay_rng), signal)
                return
            for response in self._tracker.feed_response(data):
                if response.final:
                    path.counts.response(response.status)
            self._note_unparsed()
            release = down.schedule(now, len(data), path.profile, path.delay_rng)
            await self._send(down, self._client_w, release, data, client=True)

    async def _send(
        self,
        line: _DelayLine,
        writer: asyncio.StreamWriter | None,
        release: float,
        data: bytes,
        *,
        client: bool,
    ) -> None:
        """Forward a chunk: at once when it is due and nothing waits before it (the
        loopback profile's path, one loop hop shorter), else through the delay line."""
        if writer is None or not line.idle or release > asyncio.get_running_loop().time():
            await line.put(release, data)
            return
        line.busy = True
        try:
            await self._write(writer, data, client=client)
        finally:
            line.busy = False

    async def _write(self, writer: asyncio.StreamWriter, data: bytes, *, client: bool) -> None:
        try:
            if client:  # counted first: the client may read the bytes before write() returns
                self.path.counts.add("bytes_down", len(data))
            writer.write(data)
            await writer.drain()
        except OSError:
            self.abort()

    async def _to_peer(
        self, line: _DelayLine, writer: asyncio.StreamWriter, *, client: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            release, item = await line.get()
            line.busy = True
            wait = release - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if item is _Signal.RESET:
                self.abort()
                return
            if item is _Signal.EOF:
                with contextlib.suppress(OSError):
                    if writer.can_write_eof():
                        writer.write_eof()
                if client and self._failing:
                    loop.call_later(_LINGER_S, self.abort)
                return
            await self._write(writer, item, client=client)
            line.busy = False
            if self._closed:
                return
