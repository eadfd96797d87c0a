"""A lean client for the few small S3 requests on a sync's path.

A one-document sync sends four small requests (a one-key LIST, two file PUTs and the
conditional manifest PUT), and on a loopback server it is bound by the client's processor
time, not by the requests: boto3 spent 2.3-2.5 ms of CPU on one small PUT here, most of it
building, hooking, signing and parsing around a request that takes the server far less.
This client sends the same requests (signed with AWS Signature Version 4, the same headers,
over HTTP connections kept alive per thread) for 0.5 ms of CPU each (600 PUTs, the two
clients alternating, ``time.thread_time``).

Its answers and failures take boto3's shapes: a dict with the keys boto3 returns for these
operations, and botocore's own exceptions (``ClientError`` with the S3 error code and HTTP
status; ``EndpointConnectionError``, ``ConnectTimeoutError``, ``ConnectionClosedError``,
``ReadTimeoutError``), retried as boto3's standard mode retries them. So a caller handles
both clients alike, and the outcome of an ambiguous conditional PUT is resolved the same
way. Everything else (large files, GETs, deletes, paginated listings) goes through boto3.

Only plain-HTTP endpoints get one (the embedded server, MinIO, a proxy): over HTTPS,
certificate handling is left to boto3.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import http.client
import random
import select
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any, NamedTuple

from lancesync_bench.config import Secret

__all__ = ["FastS3", "Hook", "fast_client", "sign_v4"]

# (operation, phase, params): "request" once before a call's first attempt, "send" before
# every HTTP request, "answer" once after a successful one. A hook may raise to fail the
# call there (fault injection); nothing retries what a hook raises.
Hook = Callable[[str, str, dict[str, Any]], None]

_UNRESERVED = "-_.~"


def _retried_by_boto3(status: int, code: str) -> bool:
    """Whether boto3's standard retry mode retries this answer: its transient statuses and
    error codes, and its throttling codes."""
    statuses, codes = _boto3_retries()
    return status in statuses or code in codes


@functools.cache
def _boto3_retries() -> tuple[frozenset[int], frozenset[str]]:
    """The statuses and codes boto3's standard mode retries, read from botocore's own
    checkers (class attributes its type stubs do not list) so that the two stay alike."""
    from botocore.retries import standard

    transient, throttled = standard.TransientRetryableChecker, standard.ThrottledRetryableChecker
    return (
        frozenset(getattr(transient, "_TRANSIENT_STATUS_CODES")),  # noqa: B009
        frozenset(getattr(transient, "_TRANSIENT_ERROR_CODES"))  # noqa: B009
        | frozenset(getattr(throttled, "_THROTTLED_ERROR_CODES")),  # noqa: B009
    )


def fast_client(client: Any) -> FastS3 | None:
    """The lean client that goes with a boto3 client built by ``S3Endpoint.client``."""
    fast = getattr(client, "lancesync_fast", None)
    return fast if isinstance(fast, FastS3) else None


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sign_v4(
    *,
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    payload_sha256: str,
    region: str,
    access_key_id: str,
    signing_key: bytes,
    amz_date: str,
) -> str:
    """The ``Authorization`` header of a request (AWS Signature Version 4, service ``s3``).

    ``path`` and ``query`` are as sent (already encoded; ``query`` sorted); ``headers`` are
    every header to sign, lower-case names, ``host``, ``x-amz-date`` and
    ``x-amz-content-sha256`` among them; ``signing_key`` comes from :func:`_signing_key`.
    """
    names = sorted(headers)
    canonical_headers = "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in names)
    signed = ";".join(names)
    canonical = "\n".join((method, path, query, canonical_headers, signed, payload_sha256))
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ("AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest())
    )
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )


def _signing_key(secret: str, date: str, region: str) -> bytes:
    return _hmac(
        _hmac(_hmac(_hmac(("AWS4" + secret).encode(), date), region), "s3"), "aws4_request"
    )


def _quote(value: str, safe: str = _UNRESERVED) -> str:
    return urllib.parse.quote(value, safe=safe)


class FastS3:
    """Small PUTs and one-page listings against one plain-HTTP S3 endpoint (see module)."""

    def __init__(
        self,
        url: str,
        *,
        region: str,
        access_key_id: str,
        secret_access_key: Secret,
        connect_timeout_s: float,
        request_timeout_s: float,
        max_attempts: int,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"a plain-HTTP endpoint URL is needed, not {url!r}")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or 80
        self._host_header = parts.netloc
        self._base = parts.path.rstrip("/")
        self._region = region
        self._access_key_id = access_key_id
        self._secret = secret_access_key
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_s = request_timeout_s
        self._max_attempts = max(1, max_attempts)
        self._local = threading.local()
        self._keys: tuple[str, bytes] | None = None
        self.hooks: list[Hook] = []

    def __repr__(self) -> str:
        return f"FastS3({self.url!r})"

    # -- the operations (boto3's names and keywords) ---------------------------------------

    def put_object(
        self,
        *,
        Bucket: str,
        Key: str,
        Body: bytes,
        Metadata: dict[str, str] | None = None,
        IfNoneMatch: str | None = None,
    ) -> dict[str, Any]:
        """Upload ``Body`` under ``Key`` (``IfNoneMatch="*"``: only if absent)."""
        headers = {f"x-amz-meta-{k.lower()}": v for k, v in (Metadata or {}).items()}
        for name, value in headers.items():
            if not value.isascii() or not name.isascii():
                raise ValueError(f"S3 metadata must be ASCII: {name}")
        if IfNoneMatch is not None:
            headers["if-none-match"] = IfNoneMatch
        params = {"Bucket": Bucket, "Key": Key, "Metadata": dict(Metadata or {})}
        status, answer, _ = self._call(
            "PutObject", params, "PUT", key=Key, headers=headers, body=Body
        )
        return {"ETag": answer.get("etag", ""), "ResponseMetadata": {"HTTPStatusCode": status}}

    def list_objects_v2(
        self,
        *,
        Bucket: str,
        Prefix: str = "",
        MaxKeys: int | None = None,
        ContinuationToken: str | None = None,
    ) -> dict[str, Any]:
        """One page of a listing, shaped as boto3 returns it (``Contents``: Key, Size, ETag)."""
        query = {"list-type": "2", "prefix": Prefix}
        if MaxKeys is not None:
            query["max-keys"] = str(MaxKeys)
        if ContinuationToken is not None:
            query["continuation-token"] = ContinuationToken
        params = {"Bucket": Bucket, "Prefix": Prefix}
        status, _, body = self._call("ListObjectsV2", params, "GET", query=query)
        return _parse_listing(body, status)

    # -- the request -----------------------------------------------------------------------

    def _call(
        self,
        operation: str,
        params: dict[str, Any],
        method: str,
        *,
        key: str = "",
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> tuple[int, dict[str, str], bytes]:
        for hook in self.hooks:
            hook(operation, "request", params)
        path = f"{self._base}/{_quote(params['Bucket'])}"
        if key:
            path += "/" + _quote(key, safe="/" + _UNRESERVED)
        request = _Request(
            operation=operation,
            params=params,
            method=method,
            path=path,
            query="&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted((query or {}).items())),
            headers=headers or {},
            body=body,
            payload_sha256=hashlib.sha256(body).hexdigest(),
        )
        attempt = 0
        while True:
            attempt += 1
            try:
                status, answer, data = self._send(request)
            except _Retryable as exc:
                if attempt >= self._max_attempts:
                    raise exc.error from None
            else:
                if 200 <= status < 300:
                    break
                error = _client_error(operation, status, answer, data)
                if attempt >= self._max_attempts or not _retried_by_boto3(
                    status, error.response["Error"]["Code"]
                ):
                    raise error
            # boto3's standard mode: up to 2**(attempt-1) s, at random
            time.sleep(random.random() * min(20.0, 2.0 ** (attempt - 1)))
        for hook in self.hooks:
            hook(operation, "answer", params)
        return status, answer, data

    def _send(self, r: _Request) -> tuple[int, dict[str, str], bytes]:
        from botocore.exceptions import (
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        for hook in self.hooks:
            hook(r.operation, "send", r.params)
        amz_date = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        signed = {
            **r.headers,
            "host": self._host_header,
            "x-amz-date": amz_date,
            "x-amz-content-sha256": r.payload_sha256,
        }
        signed["authorization"] = sign_v4(
            method=r.method,
            path=r.path,
            query=r.query,
            headers=signed,
            payload_sha256=r.payload_sha256,
            region=self._region,
            access_key_id=self._access_key_id,
            signing_key=self._key_for(amz_date[:8]),
            amz_date=amz_date,
        )
        if r.method == "PUT":
            signed["content-length"] = str(len(r.body))
        conn = self._connection()
        if conn.sock is not None and select.select([conn.sock], [], [], 0)[0]:
            # A kept-alive connection the server closed meanwhile (readable: EOF), or one
            # holding bytes nobody asked for: reconnect, as urllib3 does for boto3.
            self._drop()
            conn = self._connection()
        if conn.sock is None:
            try:
                conn.connect()
                assert conn.sock is not None
                conn.sock.settimeout(self._request_timeout_s)
            except TimeoutError:
                self._drop()
                raise _Retryable(ConnectTimeoutError(endpoint_url=self.url)) from None
            except OSError:
                self._drop()
                raise _Retryable(EndpointConnectionError(endpoint_url=self.url)) from None
        target = r.path + (f"?{r.query}" if r.query else "")
        try:
            conn.request(r.method, target, body=r.body or None, headers=signed)
            response = conn.getresponse()
            data = response.read()
        except TimeoutError:
            self._drop()
            raise _Retryable(ReadTimeoutError(endpoint_url=self.url)) from None
        except (OSError, http.client.HTTPException):
            self._drop()
            raise _Retryable(ConnectionClosedError(endpoint_url=self.url)) from None
        answer = {k.lower(): v for k, v in response.getheaders()}
        if response.will_close:
            self._drop()
        return response.status, answer, data

    def _key_for(self, date: str) -> bytes:
        keys = self._keys
        if keys is None or keys[0] != date:
            keys = (date, _signing_key(self._secret.reveal(), date, self._region))
            self._keys = keys
        return keys[1]

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(
                self._host, self._port, timeout=self._connect_timeout_s
            )
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()


class _Request(NamedTuple):
    operation: str
    params: dict[str, Any]
    method: str
    path: str  # as sent: encoded
    query: str  # as sent: encoded, sorted
    headers: dict[str, str]
    body: bytes
    payload_sha256: str


class _Retryable(Exception):
    """A connection-level failure (botocore's exception in ``error``), retried like boto3."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _client_error(operation: str, status: int, headers: dict[str, str], body: bytes) -> Any:
    from botocore.exceptions import ClientError

    code, message = str(status), http.client.responses.get(status, "")
    if body:
        try:
            root = ET.fromstring(body)  # noqa: S314 - the configured endpoint's answer, as boto3
        except ET.ParseError:
            pass
        else:
            found = {_local(e.tag): (e.text or "") for e in root}
            code = found.get("Code", code) or code
            message = found.get("Message", message)
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers},
    }
    return ClientError(response, operation)  # type: ignore[arg-type]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_listing(body: bytes, status: int) -> dict[str, Any]:
    root = ET.fromstring(body)  # noqa: S314 - the configured endpoint's answer, as in boto3
    contents: list[dict[str, Any]] = []
    out: dict[str, Any] = {"ResponseMetadata": {"HTTPStatusCode": status}}
    for element in root:
        tag = _local(element.tag)
        if tag == "Contents":
            item = {_local(e.tag): (e.text or "") for e in element}
            contents.append(
                {
                    "Key": item.get("Key", ""),
                    "Size": int(item.get("Size") or 0),
                    "ETag": item.get("ETag", ""),
                }
            )
        elif tag == "IsTruncated":
            out["IsTruncated"] = (element.text or "").strip().lower() == "true"
        elif tag == "NextContinuationToken":
            out["NextContinuationToken"] = element.text or ""
        elif tag == "KeyCount":
            out["KeyCount"] = int(element.text or 0)
    if contents:
        out["Contents"] = contents
    out.setdefault("IsTruncated", False)
    return out
