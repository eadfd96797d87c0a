"""Unit tests of the netem proxy: profiles, the HTTP stream tracker, counts, a raw relay."""

from __future__ import annotations

import itertools
import random
import socket
import socketserver
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from lancesync_bench.config import Secret
from lancesync_bench.errors import ConfigError, S3Error
from lancesync_bench.netem import (
    PRESETS,
    NetworkProfile,
    RequestCounts,
    RequestKind,
    S3Proxy,
    classify,
    model_ms,
)
from lancesync_bench.netem.connection import slowdown_response
from lancesync_bench.netem.http import HttpTracker, ParsedRequest, RequestHead, ResponseHead
from lancesync_bench.s3.endpoint import S3Endpoint

# -- profiles ----------------------------------------------------------------------------


def test_presets_cover_the_three_named_paths() -> None:
    assert set(PRESETS) == {"loopback", "same-region", "cross-region"}
    assert PRESETS["loopback"].rtt_ms == 0 and PRESETS["loopback"].fail_rate == 0
    assert 15 <= PRESETS["same-region"].rtt_ms <= 30 < PRESETS["cross-region"].rtt_ms
    assert NetworkProfile.preset("cross-region") is PRESETS["cross-region"]


def test_from_dict_overrides_a_preset_and_renames_it() -> None:
    profile = NetworkProfile.from_dict({"preset": "same-region", "fail_rate": 0.25})
    assert profile.rtt_ms == PRESETS["same-region"].rtt_ms
    assert profile.fail_rate == 0.25
    assert profile.name == "same-region+custom"
    assert NetworkProfile.from_dict({"preset": "loopback"}) == PRESETS["loopback"]
    custom = NetworkProfile.from_dict({"rtt_ms": 5, "bandwidth_mbps": 100, "fail_mode": "reset"})
    assert (custom.name, custom.rtt_ms, custom.bandwidth_mbps) == ("custom", 5, 100)


@pytest.mark.parametrize(
    ("data", "key", "shown"),
    [
        ({"rtt_ms": -1}, "rtt_ms", "-1"),
        ({"rtt_ms": "20ms"}, "rtt_ms", "'20ms'"),
        ({"rtt_ms": True}, "rtt_ms", "True"),
        ({"rtt_ms": float("nan")}, "rtt_ms", "nan"),
        ({"rtt_ms": 120_000}, "rtt_ms", "120000"),
        ({"rtt_ms": 20, "jitter_ms": 30}, "jitter_ms", "30"),
        ({"bandwidth_mbps": 0}, "bandwidth_mbps", "0"),
        ({"fail_rate": 1.5}, "fail_rate", "1.5"),
        ({"fail_mode": "drop"}, "fail_mode", "'drop'"),
        ({"name": ""}, "name", "''"),
        ({"preset": "moon"}, "preset", "'moon'"),
        ({"colour": "blue"}, "colour", "'blue'"),
    ],
)
def test_from_dict_names_the_key_the_value_and_what_is_allowed(
    data: dict[str, object], key: str, shown: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        NetworkProfile.from_dict(data)
    message = str(caught.value)
    assert repr(key) in message and shown in message and "allowed" in message


def test_one_way_delay_stays_within_jitter_and_repeats_with_the_seed() -> None:
    profile = NetworkProfile(name="t", rtt_ms=20, jitter_ms=4)
    draws = [profile.one_way_s(random.Random(7)) for _ in range(3)]
    assert len(set(draws)) == 1  # same seed, same draw
    rng = random.Random(1)
    assert all(0.008 <= profile.one_way_s(rng) <= 0.012 for _ in range(500))
    assert PRESETS["loopback"].one_way_s(rng) == 0.0
    assert NetworkProfile(name="b", bandwidth_mbps=8).transfer_s(1_000_000) == pytest.approx(1.0)


# -- the HTTP tracker ----------------------------------------------------------------------

PUT_BODY = b"PUT /b/k1 HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world"
GET_RANGED = b"GET /b/k1 HTTP/1.1\r\nHost: h\r\nRange: bytes=0-3\r\n\r\n"
CHUNKED = (
    b"PUT /b/k2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\nx-amz-checksum-crc32: AAAA\r\n\r\n"
)
# aws-chunked content travels inside an ordinary Content-Length body.
AWS_CHUNKED_BODY = (
    b"5;chunk-signature=" + b"a" * 64 + b"\r\nhello\r\n0;chunk-signature=" + b"b" * 64
)
AWS_CHUNKED_BODY += b"\r\n\r\n"
AWS_CHUNKED = (
    b"PUT /b/k3 HTTP/1.1\r\nHost: h\r\nContent-Encoding: aws-chunked\r\n"
    b"x-amz-decoded-content-length: 5\r\nContent-Length: "
    + str(len(AWS_CHUNKED_BODY)).encode()
    + b"\r\n\r\n"
    + AWS_CHUNKED_BODY
)
LIST = b"GET /b?list-type=2&prefix=t%2F&delimiter=%2F HTTP/1.1\r\nHost: h\r\n\r\n"
HEAD = b"HEAD /b/k1 HTTP/1.1\r\nHost: h\r\n\r\n"
STREAM = PUT_BODY + GET_RANGED + CHUNKED + AWS_CHUNKED + LIST + HEAD
EXPECTED = [
    ("PUT", "/b/k1"),
    ("GET", "/b/k1"),
    ("PUT", "/b/k2"),
    ("PUT", "/b/k3"),
    ("GET", "/b?list-type=2&prefix=t%2F&delimiter=%2F"),
    ("HEAD", "/b/k1"),
]


def _feed(tracker: HttpTracker, data: bytes, cuts: list[int]) -> list[tuple[ParsedRequest, int]]:
    """Feed ``data`` in pieces cut at ``cuts``; each request with the stream offset of
    its chunk, so that ``offset + start`` is where its head began in the whole stream."""
    found = []
    bounds = [0, *cuts, len(data)]
    for lo, hi in itertools.pairwise(bounds):
        found += [(p, lo) for p in tracker.feed_request(data[lo:hi])]
    return found


def _starts(data: bytes) -> list[int]:
    return [
        data.index(request) for request in (PUT_BODY, GET_RANGED, CHUNKED, AWS_CHUNKED, LIST, HEAD)
    ]


def test_keep_alive_stream_split_at_any_byte_yields_every_request_once() -> None:
    for cut in range(1, len(STREAM)):
        found = _feed(HttpTracker(), STREAM, [cut])
        assert [(p.head.method, p.head.target) for p, _ in found] == EXPECTED, cut
        assert [offset + p.start for p, offset in found] == _starts(STREAM), cut


def test_stream_fed_one_byte_at_a_time_and_in_random_pieces() -> None:
    one_by_one = _feed(HttpTracker(), STREAM, list(range(1, len(STREAM))))
    assert [(p.head.method, p.head.target) for p, _ in one_by_one] == EXPECTED
    rng = random.Random(3)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(STREAM)), 7))
        found = _feed(HttpTracker(), STREAM, cuts)
        assert [offset + p.start for p, offset in found] == _starts(STREAM)


def test_headers_are_lower_cased_and_expect_and_conditions_detected() -> None:
    raw = (
        b"\r\nPUT /b/_versions/2.manifest HTTP/1.1\r\nHost: h\r\nIf-None-Match: *\r\n"
        b"Expect: 100-continue\r\nX-Dup: a\r\nX-Dup: b\r\nContent-Length: 0\r\n\r\n"
    )
    (parsed,) = HttpTracker().feed_request(raw)
    head = parsed.head
    assert head.headers["x-dup"] == "a, b"
    assert head.conditional and head.expects_continue
    assert parsed.start == 2  # the stray empty line before the request line is skipped


def test_expect_continue_answered_with_a_final_status_skips_the_unsent_body() -> None:
    tracker = HttpTracker()
    put = b"PUT /b/k HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"
    assert len(tracker.feed_request(put)) == 1
    (answer,) = tracker.feed_response(
        b"HTTP/1.1 412 Precondition Failed\r\nContent-Length: 0\r\n\r\n"
    )
    assert answer.status == 412 and answer.request is not None and answer.request.method == "PUT"
    assert [p.head.method for p in tracker.feed_request(GET_RANGED)] == ["GET"]


def test_expect_continue_answered_with_100_waits_for_the_body() -> None:
    tracker = HttpTracker()
    put = b"PUT /b/k HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    tracker.feed_request(put)
    (interim,) = tracker.feed_response(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert not interim.final
    # Body bytes that look like a request line are body, not a request.
    assert tracker.feed_request(b"GET ") == []
    (final,) = tracker.feed_response(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert final.final and final.request is not None and final.request.target == "/b/k"
    assert [p.head.method for p in tracker.feed_request(HEAD)] == ["HEAD"]


def test_responses_follow_head_no_content_chunked_and_interim_framing() -> None:
    tracker = HttpTracker()
    tracker.feed_request(HEAD + GET_RANGED + GET_RANGED + GET_RANGED)
    stream = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"  # HEAD: no body despite the length
        b"HTTP/1.1 204 No Content\r\n\r\n"
        b"HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nHTTP\r\n0\r\n\r\n"
        b"HTTP/1.1 503 Slow Down\r\nConnection: close\r\n\r\nno length: body until close"
    )
    seen: list[ResponseHead] = []
    for i in range(len(stream)):
        seen += tracker.feed_response(stream[i : i + 1])
    assert [r.status for r in seen] == [200, 204, 206, 503]
    assert [r.request.method if r.request else None for r in seen] == ["HEAD", "GET", "GET", "GET"]
    assert not tracker.broken


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /b/k\r\n\r\n",  # no version
        b"GET /b/k HTTP/1.1\r\nno colon here\r\n\r\n",
        b"PUT /b/k HTTP/1.1\r\nContent-Length: lots\r\n\r\n",
        b"PUT /b/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /" + b"a" * 70_000,  # a head longer than any server accepts
    ],
)
def test_a_stream_that_is_not_followable_is_marked_broken_not_raised(raw: bytes) -> None:
    tracker = HttpTracker()
    tracker.feed_request(raw)
    assert tracker.broken
    assert tracker.feed_request(GET_RANGED) == []  # stays broken: counts stop, bytes flow


# -- classification and counts --------------------------------------------------------------


def _head(method: str, target: str) -> RequestHead:
    return RequestHead(method=method, target=target, headers={})


@pytest.mark.parametrize(
    ("method", "target", "kind"),
    [
        ("GET", "/b/data/x.lance", RequestKind.GET),
        ("GET", "/b/k?versionId=3", RequestKind.GET),
        ("GET", "/b?list-type=2&prefix=t%2F", RequestKind.LIST),
        ("GET", "/b/?prefix=t%2F&delimiter=%2F", RequestKind.LIST),
        ("GET", "/b", RequestKind.LIST),
        ("GET", "/b?uploads", RequestKind.LIST),
        ("GET", "/b/k?uploadId=7", RequestKind.LIST),
        ("GET", "/?list-type=2", RequestKind.LIST),  # virtual-hosted style listing
        ("GET", "/", RequestKind.OTHER),  # ListBuckets
        ("GET", "/b?location", RequestKind.OTHER),
        ("GET", "/b/k?tagging", RequestKind.OTHER),
        ("PUT", "/b/k", RequestKind.PUT),
        ("PUT", "/b/k?partNumber=1&uploadId=7", RequestKind.PUT),
        ("PUT", "/b", RequestKind.OTHER),  # CreateBucket
        ("PUT", "/b/k?acl", RequestKind.OTHER),
        ("POST", "/b/k?uploads", RequestKind.POST),
        ("POST", "/b?delete", RequestKind.POST),
        ("HEAD", "/b/k", RequestKind.HEAD),
        ("DELETE", "/b/k", RequestKind.DELETE),
        ("PATCH", "/b/k", RequestKind.OTHER),
    ],
)
def test_classify_follows_s3_request_classes(method: str, target: str, kind: RequestKind) -> None:
    assert classify(_head(method, target)) is kind


def test_counts_subtract_field_by_field_and_status_by_status() -> None:
    before = RequestCounts(puts=1, lists=2, bytes_up=10, statuses={200: 3, 412: 1})
    after = RequestCounts(
        puts=4, lists=3, gets=2, connections=1, bytes_up=50, statuses={200: 8, 412: 1, 503: 2}
    )
    delta = after - before
    assert (delta.puts, delta.lists, delta.gets, delta.bytes_up) == (3, 1, 2, 40)
    assert delta.statuses == {200: 5, 503: 2} and delta.status(412) == 0
    assert delta.total == 6 and delta.of(RequestKind.PUT) == 3
    assert delta.round_trips == 7  # six requests and one handshake
    as_dict = delta.as_dict()
    assert as_dict["statuses"] == {"200": 5, "503": 2}
    assert as_dict["total"] == 6 and as_dict["puts"] == 3


def test_model_is_round_trips_times_rtt_plus_transfer_only_with_a_bandwidth() -> None:
    counts = RequestCounts(puts=3, lists=1, connections=1, expect_continues=1, bytes_up=1_000_000)
    assert model_ms(counts, PRESETS["loopback"]) == 0.0
    assert model_ms(counts, NetworkProfile(name="t", rtt_ms=20)) == pytest.approx(120.0)
    capped = NetworkProfile(name="t", rtt_ms=20, bandwidth_mbps=80)
    assert model_ms(counts, capped) == pytest.approx(120.0 + 100.0)


def test_slowdown_answer_is_an_s3_error_that_closes_the_connection() -> None:
    raw = slowdown_response(_head("PUT", "/b/a&b"), "netem-00000001")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 503 ") and b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    error = ET.fromstring(body)  # noqa: S314 - the proxy's own bytes, not untrusted input
    assert error.findtext("Code") == "SlowDown"
    assert error.findtext("Resource") == "/b/a&b"
    assert slowdown_response(_head("HEAD", "/b/k"), "x").endswith(b"\r\n\r\n")  # no body


# -- the relay, against a raw TCP echo server -------------------------------------------------


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _connect(proxy: S3Proxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=5)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_jittered_relay_keeps_byte_order_within_a_connection(echo_url: str) -> None:
    profile = NetworkProfile(name="jittery", rtt_ms=6, jitter_ms=6)
    sent = b"".join(f"<{i:04d}>".encode() for i in range(300))
    with S3Proxy(echo_url, profile, seed=5) as proxy, _connect(proxy) as sock:
        for i in range(0, len(sent), 7):
            sock.sendall(sent[i : i + 7])
        assert _recv_exactly(sock, len(sent)) == sent
        counts = proxy.snapshot()
    assert counts.bytes_up == counts.bytes_down == len(sent)
    assert counts.connections == 1 and counts.total == 0  # bytes flow; nothing to count


def test_first_answer_on_a_new_connection_waits_at_least_handshake_plus_round_trip(
    echo_url: str,
) -> None:
    rtt_s = 0.05
    with S3Proxy(echo_url, NetworkProfile(name="t", rtt_ms=rtt_s * 1000)) as proxy:
        started = time.perf_counter()
        with _connect(proxy) as sock:
            sock.sendall(b"ping")
            assert _recv_exactly(sock, 4) == b"ping"
        # A lower bound only: delays are scheduled, so this cannot come out short.
        assert time.perf_counter() - started >= 2 * rtt_s * 0.9


def test_cut_resets_live_and_new_connections_until_restored(echo_url: str) -> None:
    with S3Proxy(echo_url) as proxy:
        live = _connect(proxy)
        live.sendall(b"a")
        assert _recv_exactly(live, 1) == b"a"
        proxy.cut()
        assert proxy.is_cut
        with pytest.raises(ConnectionError):  # reset (or broken pipe, by timing)
            live.sendall(b"b")
            live.recv(1)
        live.close()
        # The reset may surface at connect, send or receive, by timing.
        with pytest.raises(ConnectionError), _connect(proxy) as new:
            new.sendall(b"c")
            new.recv(1)
        proxy.restore()
        with _connect(proxy) as healed:
            healed.sendall(b"d")
            assert _recv_exactly(healed, 1) == b"d"


def test_blackhole_swallows_bytes_and_restore_resets_the_held_connection(echo_url: str) -> None:
    with S3Proxy(echo_url) as proxy:
        proxy.cut("blackhole")
        with _connect(proxy) as held:
            held.settimeout(0.2)
            held.sendall(b"lost")
            with pytest.raises(TimeoutError):
                held.recv(1)
            proxy.restore()
            held.settimeout(5)
            with pytest.raises(ConnectionResetError):
                held.recv(1)
        with pytest.raises(ConfigError, match="'unplug'"):
            proxy.cut("unplug")  # type: ignore[arg-type]


def test_upstream_that_refuses_reaches_the_client_as_a_reset() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free now, and nothing listens on it
    # The proxy resets the client as soon as its upstream connect fails, which can land
    # while the client's connect completes, before the request is sent (sendall: ECONNRESET,
    # or EPIPE once the socket is shut) or before recv: the reset may surface in any of the
    # three. A clean EOF (recv returning b"") or a hang (timeout) fails the test either way.
    with (
        S3Proxy(f"http://127.0.0.1:{port}") as proxy,
        pytest.raises((ConnectionResetError, BrokenPipeError)),
        _connect(proxy) as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        sock.recv(1)


# -- lifecycle -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://127.0.0.1:9000", "127.0.0.1:9000", "http://h:port"])
def test_upstream_url_must_be_plain_http(url: str) -> None:
    with pytest.raises(ConfigError, match="allowed: http://HOST"):
        S3Proxy(url)


def _proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("lancesync-netem-proxy")]


def test_proxy_binds_loopback_and_leaves_no_thread_or_listener(echo_url: str) -> None:
    proxy = S3Proxy(echo_url)
    with pytest.raises(S3Error, match="no port yet"):
        _ = proxy.url
    with proxy:
        assert proxy.url == f"http://127.0.0.1:{proxy.port}" and proxy.running
        open_connection = _connect(proxy)  # left open on purpose: stop() must drop it
        port = proxy.port
    proxy.stop()  # idempotent
    assert not proxy.running and _proxy_threads() == []
    with pytest.raises(ConnectionResetError):  # dropped by the proxy, not left hanging
        open_connection.recv(1)
    open_connection.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with pytest.raises(S3Error, match="not running"):
        proxy.cut()


def test_set_profile_applies_to_later_requests_and_survives_a_restart(echo_url: str) -> None:
    with S3Proxy(echo_url) as proxy:
        proxy.set_profile(PRESETS["cross-region"])
        assert proxy.profile is PRESETS["cross-region"]
    proxy.start()
    try:
        assert proxy.profile is PRESETS["cross-region"]
    finally:
        proxy.stop()


# -- the proxy in a process of its own -----------------------------------------------------


def test_proxy_process_relays_counts_and_leaves_nothing_behind(echo_url: str) -> None:
    from lancesync_bench.netem.process import ProxyProcess

    sent = b"x" * 1000
    profile = NetworkProfile(name="near", rtt_ms=4)
    with ProxyProcess(echo_url, profile, seed=1) as proxy:
        assert not _proxy_threads()  # the relay is not in this interpreter
        child = proxy._proc
        assert child is not None and child.poll() is None
        before = proxy.snapshot()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            started = time.perf_counter()
            sock.sendall(sent)
            assert _recv_exactly(sock, len(sent)) == sent
            waited_ms = (time.perf_counter() - started) * 1000
        delta = proxy.snapshot() - before
        ep = proxy.endpoint_for(
            S3Endpoint(
                url=echo_url,
                region="us-east-1",
                access_key_id="k",
                secret_access_key=Secret("s"),
                bucket="b",
            )
        )
        assert ep.url == proxy.url and proxy.profile == profile
    assert waited_ms >= 4  # the child's proxy delayed it like the in-process one
    assert delta.connections == 1 and delta.bytes_up == delta.bytes_down == len(sent)
    assert child.poll() == 0  # it stopped when asked
    proxy.stop()  # twice is fine
    with pytest.raises(S3Error, match="not running"):
        proxy.snapshot()


def test_proxy_process_that_cannot_start_says_why() -> None:
    from lancesync_bench.netem.process import ProxyProcess

    with pytest.raises(S3Error, match=r"could not start its proxy: ConfigError: .*https"):
        ProxyProcess("https://127.0.0.1:9000").start()


def test_proxy_process_ends_when_its_parent_goes(echo_url: str) -> None:
    from lancesync_bench.netem.process import ProxyProcess

    proxy = ProxyProcess(echo_url).start()
    child = proxy._proc
    assert child is not None and child.stdin is not None
    child.stdin.close()  # what a parent that died leaves its child: end of input
    assert child.wait(10) == 0
    with pytest.raises(S3Error, match="gone away"):
        proxy.snapshot()
    proxy.stop()
