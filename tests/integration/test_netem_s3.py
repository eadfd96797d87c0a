"""The netem proxy in front of the real embedded SeaweedFS server: boto3 and LanceDB."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from lancesync_bench.netem import NetworkProfile, RequestCounts, S3Proxy, model_ms
from lancesync_bench.s3.embedded import EmbeddedSeaweedFS
from lancesync_bench.s3.endpoint import S3Endpoint, Timeouts

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

# Short timeouts and no retries, for tests that expect a failure and want it soon.
FAIL_FAST = Timeouts(connect_s=0.5, request_s=0.5, max_retries=0)


@pytest.fixture
def proxy(s3_server: EmbeddedSeaweedFS) -> Iterator[S3Proxy]:
    """A loopback proxy in front of the session's server."""
    with S3Proxy(s3_server.url, seed=1) as running:
        yield running


@pytest.fixture
def client(proxy: S3Proxy, s3: S3Endpoint) -> S3Client:
    """A boto3 client that reaches the server through the proxy."""
    return proxy.endpoint_for(s3).client()


def _delta(proxy: S3Proxy, before: RequestCounts) -> RequestCounts:
    return proxy.snapshot() - before


def _attempts(client: S3Client) -> int:
    """Attempts botocore makes per call, retries included (absent from the type stubs)."""
    return int(client.meta.config.retries["total_max_attempts"])  # type: ignore[attr-defined]


def test_each_boto3_call_is_counted_as_its_kind(
    proxy: S3Proxy, client: S3Client, s3: S3Endpoint
) -> None:
    key, body = s3.key("doc.bin"), b"x" * 1000
    calls: list[tuple[str, Callable[[], Mapping[str, Any]]]] = [
        ("puts", lambda: client.put_object(Bucket=s3.bucket, Key=key, Body=body)),
        ("gets", lambda: client.get_object(Bucket=s3.bucket, Key=key, Range="bytes=0-9")),
        ("lists", lambda: client.list_objects_v2(Bucket=s3.bucket, Prefix=s3.key(""))),
        ("heads", lambda: client.head_object(Bucket=s3.bucket, Key=key)),
        ("deletes", lambda: client.delete_object(Bucket=s3.bucket, Key=key)),
    ]
    for kind, call in calls:
        before = proxy.snapshot()
        stream = call().get("Body")
        if stream is not None:
            stream.read()
        delta = _delta(proxy, before)
        assert delta.total == getattr(delta, kind) == 1, (kind, delta)
        assert sum(delta.statuses.values()) == 1 and delta.unparsed_connections == 0
    before_put = RequestCounts()
    put = client.put_object(Bucket=s3.bucket, Key=key, Body=body)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    totals = proxy.snapshot() - before_put
    assert totals.bytes_up > 2 * len(body) and totals.bytes_down > 10
    assert totals.connections == 1  # one keep-alive connection carried every request


def test_conditional_put_is_counted_and_its_412_seen(
    proxy: S3Proxy, client: S3Client, s3: S3Endpoint
) -> None:
    key = s3.key("_versions", "1.manifest")
    before = proxy.snapshot()
    client.put_object(Bucket=s3.bucket, Key=key, Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket=s3.bucket, Key=key, Body=b"second", IfNoneMatch="*")
    assert caught.value.response["Error"]["Code"] == "PreconditionFailed"
    delta = _delta(proxy, before)
    assert (delta.puts, delta.conditional_puts, delta.status(412)) == (2, 2, 1)
    # The stream stays in step after a refused expect-100-continue upload.
    client.head_object(Bucket=s3.bucket, Key=key)
    assert _delta(proxy, before).heads == 1 and proxy.snapshot().unparsed_connections == 0


def test_multipart_upload_counts_posts_and_part_puts(
    proxy: S3Proxy, client: S3Client, s3: S3Endpoint
) -> None:
    from boto3.s3.transfer import TransferConfig

    part = 5 * 1024 * 1024  # S3's smallest part size
    config = TransferConfig(multipart_threshold=part, multipart_chunksize=part, use_threads=False)
    before = proxy.snapshot()
    data = io.BytesIO(b"m" * (2 * part + 1000))
    client.upload_fileobj(data, s3.bucket, s3.key("big.bin"), Config=config)
    delta = _delta(proxy, before)
    assert (delta.posts, delta.puts) == (2, 3)  # create + complete; three parts
    assert delta.bytes_up > 2 * part and delta.unparsed_connections == 0
    assert client.head_object(Bucket=s3.bucket, Key=s3.key("big.bin"))["ContentLength"] == (
        2 * part + 1000
    )


def test_lancedb_create_and_add_through_the_proxy(proxy: S3Proxy, s3: S3Endpoint) -> None:
    import lancedb

    options = proxy.endpoint_for(s3).storage_options()

    async def create_then_add() -> tuple[RequestCounts, RequestCounts, int]:
        db = await lancedb.connect_async(s3.uri("t"), storage_options=options)
        start = proxy.snapshot()
        table = await db.create_table("docs", pa.table({"id": [1], "text": ["a"]}))
        created = proxy.snapshot()
        await table.add(pa.table({"id": [2], "text": ["b"]}))
        return created - start, proxy.snapshot() - created, await table.count_rows()

    create, add, rows = asyncio.run(create_then_add())
    assert rows == 2
    assert create.puts >= 2 and create.conditional_puts == 1
    # FACTS.md: an add is PUT data, LIST, PUT transaction, conditional PUT manifest.
    assert (add.puts, add.conditional_puts, add.deletes) == (3, 1, 0)
    assert 1 <= add.lists <= 2 and add.total <= 6
    assert all(200 <= code < 300 for code in add.statuses)
    assert add.unparsed_connections == 0


def test_every_request_failing_with_503_ends_in_slowdown_after_retries(
    proxy: S3Proxy, s3: S3Endpoint
) -> None:
    timeouts = Timeouts(connect_s=1, request_s=5, max_retries=2)
    client = proxy.endpoint_for(s3).client(timeouts)
    proxy.set_profile(NetworkProfile(name="failing", fail_rate=1.0, fail_mode="503"))
    before = proxy.snapshot()
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket=s3.bucket, Key=s3.key("never"), Body=b"x")
    assert caught.value.response["Error"]["Code"] == "SlowDown"
    # What botocore will really make (endpoint.py passes max_retries + 1 as botocore's
    # `max_attempts`, which botocore counts as retries: one more attempt than meant).
    attempts = _attempts(client)
    delta = _delta(proxy, before)
    assert (delta.faults, delta.puts, delta.status(503)) == (attempts, attempts, attempts)
    proxy.set_profile(NetworkProfile(name="healthy"))
    with pytest.raises(ClientError) as missing:  # nothing reached the server
        client.head_object(Bucket=s3.bucket, Key=s3.key("never"))
    assert missing.value.response["Error"]["Code"] == "404"


def test_reset_faults_surface_as_closed_connections(proxy: S3Proxy, s3: S3Endpoint) -> None:
    client = proxy.endpoint_for(s3).client(FAIL_FAST)
    proxy.set_profile(NetworkProfile(name="resetting", fail_rate=1.0, fail_mode="reset"))
    with pytest.raises(ConnectionClosedError):
        client.head_object(Bucket=s3.bucket, Key=s3.key("any"))
    attempts = _attempts(client)
    counts = proxy.snapshot()
    assert (counts.faults, counts.heads, counts.total) == (attempts, attempts, attempts)
    assert counts.statuses == {}  # no HTTP answer at all


def test_cut_fails_requests_and_restore_heals(proxy: S3Proxy, s3: S3Endpoint) -> None:
    client = proxy.endpoint_for(s3).client(FAIL_FAST)
    key = s3.key("k")
    client.put_object(Bucket=s3.bucket, Key=key, Body=b"v")
    proxy.cut()
    # Reset at connect (EndpointConnectionError) or after the request was sent, by timing.
    with pytest.raises((EndpointConnectionError, ConnectionClosedError)):
        client.head_object(Bucket=s3.bucket, Key=key)
    proxy.restore()
    assert client.get_object(Bucket=s3.bucket, Key=key)["Body"].read() == b"v"


def test_blackhole_cut_fails_by_the_client_timeout_and_restore_heals(
    proxy: S3Proxy, s3: S3Endpoint
) -> None:
    client = proxy.endpoint_for(s3).client(FAIL_FAST)
    proxy.cut("blackhole")
    with pytest.raises(ReadTimeoutError):
        client.head_bucket(Bucket=s3.bucket)
    proxy.restore()
    assert client.head_bucket(Bucket=s3.bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_delay_is_at_least_the_profile_round_trips(
    s3_server: EmbeddedSeaweedFS, s3: S3Endpoint
) -> None:
    rtt_ms = 40.0
    profile = NetworkProfile(name="slow", rtt_ms=rtt_ms)
    with S3Proxy(s3_server.url, profile) as slow:
        client = slow.endpoint_for(s3).client()
        before = slow.snapshot()
        started = time.perf_counter()
        client.head_bucket(Bucket=s3.bucket)  # fresh: handshake + request
        fresh_ms = (time.perf_counter() - started) * 1000
        delta = _delta(slow, before)
        started = time.perf_counter()
        client.head_bucket(Bucket=s3.bucket)  # keep-alive: one round trip
        warm_ms = (time.perf_counter() - started) * 1000
    assert delta.round_trips == 2 and model_ms(delta, profile) == 2 * rtt_ms
    # Lower bounds only: delays are scheduled, never shortened, so these cannot flap.
    assert fresh_ms >= 2 * rtt_ms * 0.9
    assert warm_ms >= rtt_ms * 0.9


def test_proxy_thread_and_port_are_gone_after_exit(
    s3_server: EmbeddedSeaweedFS, s3: S3Endpoint
) -> None:
    with S3Proxy(s3_server.url) as proxy:
        client = proxy.endpoint_for(s3).client(FAIL_FAST)
        client.head_bucket(Bucket=s3.bucket)  # leaves a keep-alive connection open
        name = f"lancesync-netem-proxy-{proxy.port}"
        assert any(t.name == name for t in threading.enumerate())
    assert not any(t.name.startswith("lancesync-netem-proxy") for t in threading.enumerate())
    with pytest.raises(EndpointConnectionError):  # refused: nothing listens on the port
        client.head_bucket(Bucket=s3.bucket)
