"""Choose an S3 endpoint: MinIO in a container, the embedded SeaweedFS, or an external one.

:func:`open_s3` is the one entry point benchmarks, tests and the CLI use. ``auto`` prefers
MinIO through testcontainers (the specification's design) where a Docker engine answers
and the container starts, and otherwise starts the embedded SeaweedFS, so it works on any
machine. The selection says which server was chosen and why; results record it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lancesync_bench.config import Secret
from lancesync_bench.errors import ConfigError, S3Error
from lancesync_bench.s3.embedded import DEFAULT_BUCKET, EmbeddedSeaweedFS
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.s3.minio import ContainerS3, docker_available, minio_preset

__all__ = ["KINDS", "S3Selection", "external_endpoint", "open_s3", "validate_bucket"]

KINDS = ("auto", "embedded", "minio", "external")
# The variables an external endpoint is read from; the first three are required.
_EXTERNAL_REQUIRED = ("S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
_EXTERNAL_VARS = "S3_ENDPOINT_URL (or AWS_ENDPOINT_URL), " + ", ".join(_EXTERNAL_REQUIRED)
# S3 bucket naming rules (the path-style subset every server accepts): 3-63 characters.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True, kw_only=True)
class S3Selection:
    """The endpoint :func:`open_s3` chose, which kind it is, and why.

    ``server`` is the started server (an :class:`EmbeddedSeaweedFS` can be stopped and
    started again for outage tests), or None for an external endpoint.
    """

    endpoint: S3Endpoint
    kind: str
    reason: str
    server: EmbeddedSeaweedFS | ContainerS3 | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description for results files, the secret redacted."""
        return {"kind": self.kind, "reason": self.reason, **self.endpoint.to_dict()}


def validate_bucket(name: str) -> str:
    """Return ``name`` if it is a valid bucket name, else raise :class:`ConfigError`."""
    if not _BUCKET_RE.match(name):
        raise ConfigError(
            f"bucket name {name!r} is not allowed; use 3-63 lowercase letters, digits, '.' "
            "and '-', starting and ending with a letter or digit"
        )
    return name


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or None


def external_endpoint(env: Mapping[str, str] | None = None) -> S3Endpoint:
    """The endpoint the environment describes; nothing is started.

    Reads S3_ENDPOINT_URL (or AWS_ENDPOINT_URL; unset means AWS S3 itself), S3_BUCKET,
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and S3_PREFIX.
    """
    env = os.environ if env is None else env
    missing = [name for name in _EXTERNAL_REQUIRED if _get(env, name) is None]
    if missing:
        names = " and ".join([", ".join(missing[:-1]), missing[-1]] if missing[:-1] else missing)
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(
            f"{names} {verb} not set; an external S3 endpoint is read from "
            f"{_EXTERNAL_VARS} and AWS_REGION"
        )
    url_var = "S3_ENDPOINT_URL" if _get(env, "S3_ENDPOINT_URL") else "AWS_ENDPOINT_URL"
    url = _get(env, url_var)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{url_var}={url!r} is not an endpoint URL; use http(s)://host[:port]"
            )
    bucket = str(_get(env, "S3_BUCKET"))
    try:
        validate_bucket(bucket)
    except ConfigError as exc:
        raise ConfigError(f"S3_BUCKET: {exc}") from None
    return S3Endpoint(
        url=url.rstrip("/") if url else None,
        region=_get(env, "AWS_REGION") or _get(env, "AWS_DEFAULT_REGION") or "us-east-1",
        access_key_id=str(_get(env, "AWS_ACCESS_KEY_ID")),
        secret_access_key=Secret(str(_get(env, "AWS_SECRET_ACCESS_KEY"))),
        bucket=bucket,
        prefix=(_get(env, "S3_PREFIX") or "").strip("/"),
        provider="external",
    )


def _normalise_kind(kind: str) -> str:
    choice = kind.strip().lower()
    if choice not in KINDS:
        allowed = ", ".join(repr(k) for k in KINDS)
        raise ConfigError(f"S3 kind {kind!r} is not known; allowed: {allowed}")
    return choice


def _start_embedded(bucket: str, stack: contextlib.ExitStack, why: str) -> S3Selection:
    server = EmbeddedSeaweedFS(bucket=bucket)
    stack.callback(server.close)  # close() also removes the data folder of a failed start
    endpoint = server.start()
    return S3Selection(
        endpoint=endpoint,
        kind="embedded",
        reason=f"embedded SeaweedFS {server.version}: {why}",
        server=server,
    )


def _start_minio(env: Mapping[str, str], bucket: str, stack: contextlib.ExitStack) -> S3Selection:
    server = ContainerS3(minio_preset(env=env), bucket=bucket)
    stack.callback(server.close)
    endpoint = server.start()
    return S3Selection(
        endpoint=endpoint,
        kind="minio",
        reason=f"MinIO {server.preset.version} in a container via testcontainers",
        server=server,
    )


def _select(
    kind: str, env: Mapping[str, str], bucket: str, stack: contextlib.ExitStack
) -> S3Selection:
    if kind == "external":
        endpoint = external_endpoint(env)
        return S3Selection(
            endpoint=endpoint,
            kind="external",
            reason=f"external endpoint {endpoint.url or 'AWS S3'} from the environment; "
            "nothing started",
        )
    if kind == "embedded":
        return _start_embedded(bucket, stack, "asked for explicitly")
    if kind == "minio":
        return _start_minio(env, bucket, stack)
    ok, why = docker_available()
    if ok:
        try:
            selection = _start_minio(env, bucket, stack)
        except S3Error as exc:
            why = f"{why}, but the MinIO container did not start ({exc})"
        else:
            return S3Selection(
                endpoint=selection.endpoint,
                kind=selection.kind,
                reason=f"{selection.reason} ({why})",
                server=selection.server,
            )
    return _start_embedded(bucket, stack, why)


@contextlib.contextmanager
def open_s3(
    kind: str = "auto",
    *,
    env: Mapping[str, str] | None = None,
    bucket: str = DEFAULT_BUCKET,
) -> Iterator[S3Selection]:
    """Start (or find) an S3 endpoint for the duration of a ``with`` block.

    ``kind`` is one of :data:`KINDS`. ``env`` (``os.environ`` when None) supplies the
    external endpoint and ``MINIO_IMAGE``; ``bucket`` is created on servers started here.
    Everything started is stopped and removed on exit, on errors and on Ctrl-C.
    """
    choice = _normalise_kind(kind)
    env = os.environ if env is None else env
    validate_bucket(bucket)
    with contextlib.ExitStack() as stack:
        yield _select(choice, env, bucket, stack)
