"""Request rewrites for the proxy: strip ``If-None-Match`` and re-sign the request.

A server that ignores ``If-None-Match: *`` lets two Lance writers both "create" the same
``_versions/<n>.manifest``, the second silently overwriting the first. To show that the
storage layer refuses its multi-writer modes on such a server, the proxy can make a real
server behave like one: :class:`ConditionalStripper` removes the header from each request
head on its way through. Every S3 client signs that header (SigV4 lists it in
``SignedHeaders``), so the stripper also recomputes the signature with the secret key;
without that the server would answer ``SignatureDoesNotMatch``, not ignore a condition.

Only the head is re-signed: the payload hash (``x-amz-content-sha256``) stays valid because
the body is untouched. A streaming-signed body (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``)
chains each chunk's signature to the head's, so such requests are passed on unchanged and
counted in :attr:`ConditionalStripper.unchanged`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Callable

from lancesync_bench.config import Secret
from lancesync_bench.netem.http import RequestHead

__all__ = ["ConditionalStripper", "RequestRewrite", "resign_head"]

# Called on the proxy's loop with each request head (parsed, and its raw bytes up to and
# including the blank line); returns the bytes to send instead (``raw`` to leave it alone).
RequestRewrite = Callable[[RequestHead, bytes], bytes]

_ALGORITHM = "AWS4-HMAC-SHA256"
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-f]+)\s*$"
)


def _split_head(raw: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The request line and the header lines (name, value) of a raw head, in order."""
    lines = raw.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
    return lines[0], headers


def _join_head(request_line: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [request_line, *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _signature(
    secret: str,
    *,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    signed: list[str],
    credential: str,
) -> str | None:
    """The SigV4 signature of a request head, or None when it cannot be recomputed."""
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(" ".join(value.split()))
    payload = values.get("x-amz-content-sha256", [""])[0]
    amz_date = values.get("x-amz-date", [""])[0]
    scope_parts = credential.split("/")
    if not payload or payload.startswith("STREAMING-") or not amz_date or len(scope_parts) != 5:
        return None
    if any(name not in values for name in signed):
        return None
    path, _, query = target.partition("?")
    # As botocore and object_store build it: the raw pairs sorted, a bare key as "key=".
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&") if pair)
    canonical = "\n".join(
        [
            method,
            path,
            "&".join(f"{k}={v}" for k, v in pairs),
            "".join(f"{name}:{','.join(values[name])}\n" for name in signed),
            ";".join(signed),
            payload,
        ]
    )
    _key_id, date, region, service, terminator = scope_parts
    scope = f"{date}/{region}/{service}/{terminator}"
    to_sign = "\n".join(
        [_ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + secret).encode(), date)
    for part in (region, service, terminator):
        key = _hmac(key, part)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def resign_head(raw: bytes, secret: str, *, drop: frozenset[str] = frozenset()) -> bytes | None:
    """``raw`` without the headers named in ``drop`` (lower case), signed again with SigV4.

    Returns None when the head is not SigV4-signed in a way a head-only re-signing can
    keep valid (no ``Authorization`` header, a streaming-signed body, a missing header).
    """
    request_line, headers = _split_head(raw)
    parts = request_line.split(" ")
    if len(parts) != 3:
        return None
    method, target, _version = parts
    auth_at = [i for i, (name, _) in enumerate(headers) if name.lower() == "authorization"]
    if len(auth_at) != 1:
        return None
    match = _AUTH_RE.match(headers[auth_at[0]][1])
    if match is None:
        return None
    kept = [(n, v) for n, v in headers if n.lower() not in drop]
    signed = [h for h in match["signed"].split(";") if h not in drop]
    signature = _signature(
        secret,
        method=method,
        target=target,
        headers=kept,
        signed=signed,
        credential=match["credential"],
    )
    if signature is None:
        return None
    authorization = (
        f"{_ALGORITHM} Credential={match['credential']}, "
        f"SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    kept = [(n, authorization if n.lower() == "authorization" else v) for n, v in kept]
    return _join_head(request_line, kept)


class ConditionalStripper:
    """A :data:`RequestRewrite` that removes ``If-None-Match`` and re-signs the request.

    Pass it as ``S3Proxy(..., rewrite=ConditionalStripper(endpoint.secret_access_key))``:
    the server behind the proxy then never sees the condition, as if it ignored it.
    :attr:`stripped` counts rewritten requests, :attr:`unchanged` conditional requests
    that could not be re-signed and went through as they came.
    """

    def __init__(self, secret_access_key: Secret) -> None:
        self._secret = secret_access_key
        self._lock = threading.Lock()
        self.stripped = 0
        self.unchanged = 0

    def __call__(self, head: RequestHead, raw: bytes) -> bytes:
        if "if-none-match" not in head.headers:
            return raw
        rewritten = resign_head(raw, self._secret.reveal(), drop=frozenset({"if-none-match"}))
        with self._lock:
            if rewritten is None:
                self.unchanged += 1
                return raw
            self.stripped += 1
        return rewritten

    def __repr__(self) -> str:
        return f"ConditionalStripper(stripped={self.stripped}, unchanged={self.unchanged})"
