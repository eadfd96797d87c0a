"""Incremental HTTP/1.1 framing for both directions of one proxied connection.

The proxy sees raw bytes split wherever TCP split them. These parsers find each request
and response head, skip bodies by their framing (``Content-Length`` or chunked transfer
coding; ``aws-chunked`` content sits inside either and needs nothing special) and follow
keep-alive connections across many requests. They never change a byte unless asked to
(:meth:`HttpTracker.rewrite_request` replaces request heads, for the proxy's ``rewrite``
option), and a stream they cannot follow is marked ``broken`` and no longer counted (nor
rewritten) rather than disturbed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, auto
from functools import cached_property
from urllib.parse import parse_qs, urlsplit

__all__ = ["HttpTracker", "ParsedRequest", "RequestHead", "ResponseHead"]

# Real S3 request heads are 1-4 KiB (signature headers included). 64 KiB is what common
# servers accept at most; anything longer is not HTTP we can follow.
MAX_HEAD_BYTES = 64 * 1024
# A chunk-size line is a hex number plus optional extensions (aws-chunked puts a 64-hex
# signature there); 4 KiB leaves ample room.
MAX_LINE_BYTES = 4 * 1024


@dataclass(frozen=True)
class RequestHead:
    """The request line and headers of one HTTP request (header names lower-cased)."""

    method: str
    target: str
    headers: dict[str, str] = field(hash=False)

    @cached_property
    def path(self) -> str:
        """The target's path (``/bucket/key``)."""
        return urlsplit(self.target).path

    @cached_property
    def query(self) -> dict[str, list[str]]:
        """The target's query parameters; bare flags such as ``?uploads`` map to ``[""]``."""
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    @property
    def expects_continue(self) -> bool:
        """Whether the client waits for ``100 Continue`` before sending the body."""
        return self.headers.get("expect", "").lower() == "100-continue"

    @property
    def conditional(self) -> bool:
        """Whether the request carries ``If-None-Match`` or ``If-Match`` (create-if-absent)."""
        return "if-none-match" in self.headers or "if-match" in self.headers


@dataclass(frozen=True)
class ParsedRequest:
    """A request head found in a fed chunk.

    ``start`` is the offset in that chunk where the head began; it is negative when the
    head began in an earlier chunk.
    """

    head: RequestHead
    start: int


@dataclass(frozen=True)
class ResponseHead:
    """The status line and headers of one response, with the method it answers."""

    status: int
    headers: dict[str, str] = field(hash=False)
    request: RequestHead | None

    @property
    def final(self) -> bool:
        """Whether this is the final answer (not a 1xx interim response)."""
        return self.status >= 200


class _State(Enum):
    HEAD = auto()  # collecting a head up to the blank line
    BODY = auto()  # skipping `remaining` body bytes
    CHUNK_SIZE = auto()  # collecting a chunk-size line
    CHUNK_DATA = auto()  # skipping `remaining` chunk bytes plus their CRLF
    TRAILERS = auto()  # collecting trailer lines up to the blank line
    UNTIL_CLOSE = auto()  # response body delimited by the connection closing
    BROKEN = auto()  # not HTTP we can follow: stop looking


class _Framer:
    """The state machine shared by both directions: heads, then bodies by their framing."""

    def __init__(self) -> None:
        self.state = _State.HEAD
        self.remaining = 0
        self.body_seen = 0
        self._buf = bytearray()

    @property
    def broken(self) -> bool:
        return self.state is _State.BROKEN

    @property
    def body_started(self) -> bool:
        return self.body_seen > 0 or bool(self._buf)

    def skip_body(self) -> None:
        """Drop the body the last head announced: the peer will not send it."""
        self._buf.clear()
        self.state = _State.HEAD

    def feed(self, data: bytes) -> None:
        pos = 0
        while pos < len(data) and self.state is not _State.BROKEN:
            pos = self._step(data, pos)

    def _step(self, data: bytes, pos: int) -> int:
        state = self.state
        if state is _State.HEAD:
            return self._step_head(data, pos)
        if state in (_State.BODY, _State.CHUNK_DATA):
            take = min(self.remaining, len(data) - pos)
            self.remaining -= take
            self.body_seen += take
            if self.remaining == 0:
                self.state = _State.CHUNK_SIZE if state is _State.CHUNK_DATA else _State.HEAD
            return pos + take
        if state is _State.UNTIL_CLOSE:
            self.body_seen += len(data) - pos
            return len(data)
        line, pos = self._take(data, pos, b"\r\n", MAX_LINE_BYTES)
        if line is None:
            return pos
        self.body_seen += 1  # any framing byte means the body has begun
        if state is _State.CHUNK_SIZE:
            self._on_chunk_size(line)
        elif line == b"\r\n":  # TRAILERS: the blank line ends the message
            self.state = _State.HEAD
        return pos

    def _step_head(self, data: bytes, pos: int) -> int:
        if not self._buf:
            # RFC 9112 2.2: ignore empty lines before a start line (some clients send them).
            while pos < len(data) and data[pos] in b"\r\n":
                pos += 1
            if pos == len(data):
                return pos
        start = pos - len(self._buf)  # negative when the head began in an earlier chunk
        head, pos = self._take(data, pos, b"\r\n\r\n", MAX_HEAD_BYTES)
        if head is not None:
            self.body_seen = 0
            self.on_head(head, start)
        return pos

    def _take(self, data: bytes, pos: int, end: bytes, limit: int) -> tuple[bytes | None, int]:
        """Append to the buffer up to ``end``; the complete block and the new position."""
        before = len(self._buf)
        self._buf += data[pos:]
        found = self._buf.find(end, max(0, before - len(end) + 1))
        if found < 0:
            if len(self._buf) > limit:
                self.state = _State.BROKEN
            return None, len(data)
        size = found + len(end)
        block = bytes(self._buf[:size])
        self._buf.clear()
        return block, pos + size - before

    def _on_chunk_size(self, line: bytes) -> None:
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            self.state = _State.BROKEN
            return
        if size == 0:
            self.state = _State.TRAILERS
        else:
            self.state = _State.CHUNK_DATA
            self.remaining = size + 2  # the chunk and the CRLF after it

    def start_body(self, headers: dict[str, str], *, until_close: bool) -> None:
        """Set the body framing from a head's headers."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.state = _State.CHUNK_SIZE
            return
        length = headers.get("content-length")
        if length is not None:
            try:
                # Duplicate Content-Length headers arrive joined by ", ", all equal.
                values = {int(v) for v in length.split(",")}
            except ValueError:
                values = set()
            if len(values) != 1 or min(values) < 0:
                self.state = _State.BROKEN
                return
            self.remaining = values.pop()
            self.state = _State.BODY if self.remaining else _State.HEAD
            return
        self.state = _State.UNTIL_CLOSE if until_close else _State.HEAD

    def on_head(self, raw: bytes, start: int) -> None:
        """Called with each complete head and the chunk offset where it began."""
        raise NotImplementedError


def _parse_head(raw: bytes) -> tuple[list[str], dict[str, str]] | None:
    lines = raw.decode("latin-1").split("\r\n")
    start = lines[0].split(" ", 2)
    if len(start) < 2:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        key = name.lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return start, headers


class _RequestFramer(_Framer):
    def __init__(self, rewrite: Callable[[RequestHead, bytes], bytes] | None = None) -> None:
        super().__init__()
        self.found: list[ParsedRequest] = []
        self.current: RequestHead | None = None
        self._rewrite = rewrite
        self._out = bytearray()  # what to forward, while rewriting

    def on_head(self, raw: bytes, start: int) -> None:
        parsed = _parse_head(raw)
        if parsed is None or len(parsed[0]) != 3 or not parsed[0][2].startswith("HTTP/1."):
            self.state = _State.BROKEN
            if self._rewrite is not None:
                self._out += raw  # not ours to follow: forwarded as it came
            return
        (method, target, _), headers = parsed
        self.current = RequestHead(method=method.upper(), target=target, headers=headers)
        self.found.append(ParsedRequest(self.current, start))
        if self._rewrite is not None:
            self._out += self._rewrite(self.current, raw)
        # A request without Content-Length or chunked coding has no body (RFC 9112 6.3).
        self.start_body(headers, until_close=False)

    def feed_rewriting(self, data: bytes) -> bytes:
        """Feed ``data``; return the bytes to forward, each complete head rewritten.

        Bodies and framing lines pass at once; a head is held back until its blank line
        arrives (it may span chunks), then forwarded as the rewrite returns it.
        """
        out = self._out
        pos = 0
        while pos < len(data) and self.state is not _State.BROKEN:
            state = self.state
            if state is _State.HEAD and not self._buf:
                # Blank lines before a request line are skipped by the parser; keep them.
                end = pos
                while end < len(data) and data[end] in b"\r\n":
                    end += 1
                out += data[pos:end]
                pos = end
                if pos == len(data):
                    break
            new = self._step(data, pos)
            if state is not _State.HEAD:
                out += data[pos:new]
            elif self.broken and self._buf:
                out += self._buf  # a head too long to follow: forwarded as it came
                self._buf.clear()
            pos = new
        out += data[pos:]  # after a break, the rest passes untouched
        forward = bytes(out)
        out.clear()
        return forward


class _ResponseFramer(_Framer):
    def __init__(self, pending: deque[RequestHead]) -> None:
        super().__init__()
        self.found: list[ResponseHead] = []
        self._pending = pending

    def on_head(self, raw: bytes, start: int) -> None:
        parsed = _parse_head(raw)
        if parsed is None or not parsed[0][0].startswith("HTTP/1."):
            self.state = _State.BROKEN
            return
        try:
            status = int(parsed[0][1])
        except ValueError:
            self.state = _State.BROKEN
            return
        headers = parsed[1]
        if status == 101:  # switching protocols: what follows is not HTTP any more
            self.state = _State.BROKEN
            return
        if status < 200:  # interim: the request still waits for its final answer
            waiting = self._pending[0] if self._pending else None
            self.found.append(ResponseHead(status, headers, waiting))
            return
        request = self._pending.popleft() if self._pending else None
        self.found.append(ResponseHead(status, headers, request))
        if status in (204, 304) or (request is not None and request.method == "HEAD"):
            return  # no body whatever the headers say (RFC 9112 6.3)
        self.start_body(headers, until_close=True)


class HttpTracker:
    """Follows the requests and responses of one connection, in both directions.

    Feed the client's bytes to :meth:`feed_request` before forwarding them and the
    server's bytes to :meth:`feed_response`. Clients that send ``Expect: 100-continue``
    and then get a final answer instead of ``100`` never send the body; the tracker sees
    that answer and stops waiting for a body that will not come.
    """

    def __init__(self, rewrite: Callable[[RequestHead, bytes], bytes] | None = None) -> None:
        self._pending: deque[RequestHead] = deque()
        self._requests = _RequestFramer(rewrite)
        self._responses = _ResponseFramer(self._pending)

    @property
    def broken(self) -> bool:
        """Whether either direction held something this tracker cannot follow."""
        return self._requests.broken or self._responses.broken

    def feed_request(self, data: bytes) -> list[ParsedRequest]:
        """Client-to-server bytes in; the request heads completed by them out."""
        if self._requests.broken:
            return []
        self._requests.found = []
        self._requests.feed(data)
        self._pending.extend(p.head for p in self._requests.found)
        return self._requests.found

    def rewrite_request(self, data: bytes) -> tuple[list[ParsedRequest], bytes]:
        """Like :meth:`feed_request`, and also the bytes to forward instead of ``data``.

        Needs the ``rewrite`` given at construction; each complete request head is replaced
        by what it returns, everything else passes unchanged. A partial head is held back
        (the bytes returned may be empty). ``ParsedRequest.start`` refers to ``data``.
        """
        if self._requests.broken:
            return [], data
        self._requests.found = []
        forward = self._requests.feed_rewriting(data)
        self._pending.extend(p.head for p in self._requests.found)
        return self._requests.found, forward

    def feed_response(self, data: bytes) -> list[ResponseHead]:
        """Server-to-client bytes in; the response heads (interim ones too) out."""
        if self._responses.broken:
            return []
        self._responses.found = []
        self._responses.feed(data)
        requests = self._requests
        for response in self._responses.found:
            if (
                response.final
                and response.request is requests.current
                and response.request is not None
                and response.request.expects_continue
                and requests.state in (_State.BODY, _State.CHUNK_SIZE)
                and not requests.body_started
            ):
                requests.skip_body()  # the client will not send the body
        return self._responses.found
