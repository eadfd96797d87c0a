"""What an S3 endpoint can be trusted with: access checks and the conditional-put probe.

Lance commits a table version by writing ``_versions/<n>.manifest`` with
``If-None-Match: *``; only a server that answers 412 to a second such PUT keeps two
concurrent writers from overwriting each other's commit. :func:`probe_conditional_put`
finds out, and the storage layer refuses multi-writer modes where it is not enforced.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lancesync_bench.errors import S3Error, S3Unavailable
from lancesync_bench.s3.endpoint import S3Endpoint, Timeouts

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

__all__ = ["PROBE_FOLDER", "ProbeResult", "as_s3_error", "check_access", "probe_conditional_put"]

# Probe keys live in a folder of their own under the endpoint's prefix, never inside a table.
PROBE_FOLDER = "_lancesync_probe"
# A check must answer quickly and honestly: retries would hide an unreachable endpoint for
# a minute, and a healthy loopback or LAN server answers well within these limits.
_CHECK_TIMEOUTS = Timeouts(connect_s=2.0, request_s=10.0, max_retries=0)
# Server-side failures that say "try again later" rather than "you asked wrongly".
_UNAVAILABLE_STATUSES = frozenset({500, 502, 503, 504})
_MAX_MESSAGE_CHARS = 200


@dataclass(frozen=True, kw_only=True)
class ProbeResult:
    """The outcome of :func:`probe_conditional_put`.

    ``statuses`` holds the HTTP status of the first and second conditional PUT.
    """

    enforced: bool
    detail: str
    statuses: tuple[int, ...]
    key: str


def _where(endpoint: S3Endpoint) -> str:
    return endpoint.describe()


def _mask(text: str, endpoint: S3Endpoint) -> str:
    secret = endpoint.secret_access_key.reveal()
    return text.replace(secret, "***") if secret else text


def as_s3_error(exc: Exception, endpoint: S3Endpoint, action: str) -> S3Error:
    """Turn a boto3/botocore failure into one clear line naming what was wrong.

    ``action`` says what was being done ("listing", "writing a probe object"). The secret
    key never appears; connection failures and 5xx answers become :class:`S3Unavailable`.
    """
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    where, bucket, key_id = _where(endpoint), endpoint.bucket, endpoint.access_key_id
    error: S3Error
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ConnectionClosedError):
        error = S3Unavailable(
            f"S3 endpoint {where} did not answer while {action} (cannot connect: "
            f"{type(exc).__name__}); is the server running and the URL right?"
        )
    elif isinstance(exc, ReadTimeoutError):
        error = S3Unavailable(f"S3 endpoint {where} timed out while {action}")
    elif isinstance(exc, ClientError):
        info = exc.response.get("Error", {})
        code = str(info.get("Code", ""))
        message = str(info.get("Message", ""))[:_MAX_MESSAGE_CHARS]
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code == "InvalidAccessKeyId":
            error = S3Error(
                f"S3 endpoint {where} does not know access key id {key_id!r} "
                f"(InvalidAccessKeyId) while {action}; check AWS_ACCESS_KEY_ID"
            )
        elif code == "SignatureDoesNotMatch":
            error = S3Error(
                f"S3 endpoint {where} rejected the secret key of access key id {key_id!r} "
                f"(SignatureDoesNotMatch) while {action}; check AWS_SECRET_ACCESS_KEY"
            )
        elif code in ("NoSuchBucket", "404", "NotFound") and status == 404:
            error = S3Error(
                f"bucket {bucket!r} does not exist on S3 endpoint {where} (NoSuchBucket) "
                f"while {action}; create it or set S3_BUCKET to an existing bucket"
            )
        elif code in ("AccessDenied", "403", "Forbidden") or status == 403:
            error = S3Error(
                f"access key id {key_id!r} is not allowed to do this in bucket {bucket!r} on "
                f"{where} (HTTP {status} {code}) while {action}; grant it read, write and list"
            )
        elif status in _UNAVAILABLE_STATUSES:
            error = S3Unavailable(
                f"S3 endpoint {where} answered HTTP {status} {code} while {action}: {message}"
            )
        else:
            error = S3Error(
                f"S3 endpoint {where} refused {action} with HTTP {status} {code}: {message}"
            )
    else:
        first = (str(exc).strip().splitlines() or [""])[0][:_MAX_MESSAGE_CHARS]
        error = S3Error(f"S3 endpoint {where} failed while {action}: {type(exc).__name__} {first}")
    return type(error)(_mask(str(error), endpoint))


def check_access(
    endpoint: S3Endpoint, *, timeouts: Timeouts | None = None, client: S3Client | None = None
) -> None:
    """List one key under the endpoint's prefix; raise one clear error if that fails.

    Wrong keys, a missing bucket, missing permissions and an unreachable endpoint each
    give an :class:`S3Error` (:class:`S3Unavailable` for the last) that says which.
    """
    client = client or endpoint.client(timeouts or _CHECK_TIMEOUTS)
    prefix = endpoint.key() + "/" if endpoint.key() else ""
    try:
        client.list_objects_v2(Bucket=endpoint.bucket, Prefix=prefix, MaxKeys=1)
    except Exception as exc:
        raise as_s3_error(exc, endpoint, f"listing s3://{endpoint.bucket}/{prefix}") from None


def _status(exc: Exception) -> int | None:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return None
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _put_if_absent(client: S3Client, bucket: str, key: str) -> int:
    response = client.put_object(Bucket=bucket, Key=key, Body=b"probe", IfNoneMatch="*")
    return int(response["ResponseMetadata"]["HTTPStatusCode"])


def probe_conditional_put(
    endpoint: S3Endpoint, *, timeouts: Timeouts | None = None, client: S3Client | None = None
) -> ProbeResult:
    """PUT a fresh key twice with ``If-None-Match: *``; enforced if the second gets 412.

    The probe key (``<prefix>/_lancesync_probe/<uuid>``) is deleted afterwards. Access is
    checked first with :func:`check_access`, whose errors it raises: some servers
    (SeaweedFS) would otherwise create a missing bucket on the first PUT.
    """
    # A caller's client saves building another (a boto3 session costs a few hundred ms).
    client = client or endpoint.client(timeouts or _CHECK_TIMEOUTS)
    check_access(endpoint, timeouts=timeouts, client=client)
    key = endpoint.key(PROBE_FOLDER, uuid.uuid4().hex)
    action = f"writing probe object s3://{endpoint.bucket}/{key}"
    try:
        first = _put_if_absent(client, endpoint.bucket, key)
    except Exception as exc:
        raise as_s3_error(exc, endpoint, action) from None
    try:
        second = _put_if_absent(client, endpoint.bucket, key)
    except Exception as exc:
        status = _status(exc)
        if status is None or status in _UNAVAILABLE_STATUSES:
            raise as_s3_error(exc, endpoint, action) from None
        if status == 412:
            return ProbeResult(
                enforced=True,
                detail="a second PUT with If-None-Match: * was rejected with HTTP 412",
                statuses=(first, status),
                key=key,
            )
        return ProbeResult(
            enforced=False,
            detail=(
                f"a second PUT with If-None-Match: * got HTTP {status} instead of 412; "
                "concurrent Lance writers are not safe on this server"
            ),
            statuses=(first, status),
            key=key,
        )
    finally:
        with contextlib.suppress(Exception):  # best effort: the probe key is tiny
            client.delete_object(Bucket=endpoint.bucket, Key=key)
    return ProbeResult(
        enforced=False,
        detail=(
            f"a second PUT with If-None-Match: * succeeded (HTTP {second}): the server "
            "ignores the condition, so concurrent Lance writers could overwrite commits"
        ),
        statuses=(first, second),
        key=key,
    )
