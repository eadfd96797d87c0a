"""Network emulation for S3 benchmarks: a delaying, counting, fault-injecting TCP proxy.

Linux ``netem`` is not available on the machines this runs on, so latency is added in
user space: :class:`S3Proxy` sits between an S3 client (boto3 or LanceDB's object_store)
and an S3 server on loopback, delays each direction by half a round trip (and each new
connection by a full one), counts S3 requests by kind from the HTTP/1.1 stream, and can
fail a share of requests or cut the path entirely; a ``rewrite`` can change request heads
on the way (:class:`ConditionalStripper` makes a server ignore ``If-None-Match``).
:func:`model_ms` turns counts into the "round trips x RTT" figure reports show beside
measurements.
"""

from __future__ import annotations

from lancesync_bench.netem.connection import CutMode
from lancesync_bench.netem.counts import RequestCounts, RequestKind, classify, model_ms
from lancesync_bench.netem.profile import PRESETS, FailMode, NetworkProfile
from lancesync_bench.netem.proxy import S3Proxy
from lancesync_bench.netem.rewrite import ConditionalStripper, RequestRewrite

__all__ = [
    "PRESETS",
    "ConditionalStripper",
    "CutMode",
    "FailMode",
    "NetworkProfile",
    "RequestCounts",
    "RequestKind",
    "RequestRewrite",
    "S3Proxy",
    "classify",
    "model_ms",
]
