"""S3 request kinds, the counts a proxy keeps, and the round-trip latency model."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum

from lancesync_bench.netem.http import RequestHead
from lancesync_bench.netem.profile import NetworkProfile

__all__ = ["RequestCounts", "RequestKind", "classify", "model_ms"]


class RequestKind(StrEnum):
    """What an S3 request does, in the classes S3 prices requests by."""

    GET = "GET"  # object read, ranged or whole
    PUT = "PUT"  # object write, multipart part, copy
    LIST = "LIST"  # ListObjects(V2), ListObjectVersions, ListMultipartUploads, ListParts
    HEAD = "HEAD"  # object or bucket metadata
    DELETE = "DELETE"  # object delete, multipart abort
    POST = "POST"  # multipart create/complete, batch delete
    OTHER = "OTHER"  # bucket management, ACLs, tags, anything else


# Query parameters that make a GET on a bucket a listing (ListObjects v1/v2 and friends).
_LIST_PARAMS = frozenset(
    {
        "list-type",
        "prefix",
        "delimiter",
        "marker",
        "max-keys",
        "start-after",
        "continuation-token",
        "encoding-type",
        "fetch-owner",
        "versions",
        "uploads",
    }
)
# Sub-resources that turn an object GET/PUT into configuration calls rather than data.
_CONFIG_PARAMS = frozenset({"acl", "tagging", "retention", "legal-hold", "attributes", "torrent"})


def classify(head: RequestHead) -> RequestKind:
    """The kind of a path-style S3 request (``/bucket/key?query``)."""
    params = set(head.query)
    segments = [s for s in head.path.split("/") if s]
    has_key = len(segments) > 1
    data_call = has_key and not params & _CONFIG_PARAMS
    kind = RequestKind.OTHER  # ListBuckets, bucket configuration, ACLs, unknown methods
    if head.method == "GET":
        if "list-type" in params or (len(segments) == 1 and params <= _LIST_PARAMS):
            kind = RequestKind.LIST
        elif has_key and "uploadId" in params:
            kind = RequestKind.LIST  # ListParts
        elif data_call:
            kind = RequestKind.GET
    elif head.method == "PUT":
        kind = RequestKind.PUT if data_call else RequestKind.OTHER  # OTHER: CreateBucket
    elif head.method in ("HEAD", "DELETE", "POST"):
        kind = RequestKind(head.method)
    return kind


@dataclass(frozen=True, kw_only=True)
class RequestCounts:
    """What passed through a proxy: requests by kind, bytes, statuses, connections.

    Counts only grow, so take a :meth:`S3Proxy.snapshot` before and after an operation and
    subtract: ``after - before`` is what the operation cost. ``statuses`` holds final
    response codes (including answers the proxy gave itself), ``faults`` the requests the
    proxy failed on purpose, ``unparsed_connections`` connections whose bytes were not
    HTTP/1.1 it could follow (their later requests are missing from the counts).
    """

    gets: int = 0
    puts: int = 0
    lists: int = 0
    heads: int = 0
    deletes: int = 0
    posts: int = 0
    others: int = 0
    conditional_puts: int = 0
    expect_continues: int = 0
    connections: int = 0
    faults: int = 0
    unparsed_connections: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    statuses: Mapping[int, int] = field(default_factory=dict, hash=False)

    @property
    def total(self) -> int:
        """All requests, whatever their kind."""
        return (
            self.gets
            + self.puts
            + self.lists
            + self.heads
            + self.deletes
            + self.posts
            + self.others
        )

    @property
    def round_trips(self) -> int:
        """Round trips in the sequential model: one per request, per new connection, and
        per ``Expect: 100-continue`` wait."""
        return self.total + self.connections + self.expect_continues

    def of(self, kind: RequestKind) -> int:
        """The count of one request kind."""
        return int(getattr(self, kind.lower() + "s"))

    def status(self, code: int) -> int:
        """How many final responses had this status code."""
        return self.statuses.get(code, 0)

    def __sub__(self, other: RequestCounts) -> RequestCounts:
        if not isinstance(other, RequestCounts):
            return NotImplemented
        numbers = {
            f.name: getattr(self, f.name) - getattr(other, f.name)
            for f in fields(self)
            if f.name != "statuses"
        }
        statuses = Counter(self.statuses)
        statuses.subtract(other.statuses)
        return replace(self, **numbers, statuses={c: n for c, n in sorted(statuses.items()) if n})

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready flat mapping (status codes as strings), with ``total``."""
        out: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["statuses"] = {str(code): n for code, n in sorted(self.statuses.items())}
        out["total"] = self.total
        out["round_trips"] = self.round_trips
        return out


class CountKeeper:
    """The proxy's mutable tally; updated on its event loop, read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._numbers: Counter[str] = Counter()
        self._statuses: Counter[int] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to one :class:`RequestCounts` field."""
        with self._lock:
            self._numbers[name] += n

    def request(self, head: RequestHead) -> None:
        """Count one request head."""
        kind = classify(head)
        with self._lock:
            self._numbers[kind.lower() + "s"] += 1
            if kind is RequestKind.PUT and head.conditional:
                self._numbers["conditional_puts"] += 1
            if head.expects_continue:
                self._numbers["expect_continues"] += 1

    def response(self, status: int) -> None:
        """Count one final response status."""
        with self._lock:
            self._statuses[status] += 1

    def snapshot(self) -> RequestCounts:
        """The counts so far, as an immutable value."""
        with self._lock:
            return RequestCounts(**self._numbers, statuses=dict(sorted(self._statuses.items())))

    def reset(self) -> None:
        """Start again from zero."""
        with self._lock:
            self._numbers.clear()
            self._statuses.clear()


def model_ms(counts: RequestCounts, profile: NetworkProfile) -> float:
    """The simple latency model shown next to measurements: round trips x RTT.

    Assumptions: requests run one after another (concurrent requests overlap, so the
    model overstates them), each request and its answer take one round trip, each new
    connection one more (the TCP handshake; no TLS), each ``Expect: 100-continue`` one
    more, and server time is zero. Transfer time counts only when the profile sets a
    bandwidth, then as all bytes through one link. Jitter averages out and is ignored.
    """
    transfer_ms = profile.transfer_s(counts.bytes_up + counts.bytes_down) * 1000.0
    return counts.round_trips * profile.rtt_ms + transfer_ms
