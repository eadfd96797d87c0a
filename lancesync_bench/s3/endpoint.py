"""One description of an S3 endpoint, whichever provider started (or found) it."""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from lancesync_bench.config import LanceDBSyncConfig, Secret

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

__all__ = ["S3Endpoint", "Timeouts", "create_bucket_when_ready"]

# One boto3 session per process: building a session re-reads botocore's service models
# (120-170 ms measured here), while a client from an existing session takes about 10 ms.
# It holds no credentials: every client gets its keys explicitly.
_SESSION_LOCK = threading.Lock()
_SESSION: list[Any] = []


def _shared_session() -> Any:
    with _SESSION_LOCK:
        if not _SESSION:
            import boto3

            _SESSION.append(boto3.session.Session())
        return _SESSION[0]


def create_bucket_when_ready(
    client: S3Client,
    bucket: str,
    *,
    timeout_s: float,
    poll_s: float,
    check_alive: Callable[[], None],
    describe: Callable[[Exception], str],
) -> str | None:
    """Create ``bucket`` as soon as a starting server answers; None once it exists.

    ``check_alive`` raises when the server process has died (no point waiting longer);
    ``describe`` turns a refusal into a short, secret-free reason. After ``timeout_s``
    the last reason is returned for the caller's error message.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    while time.monotonic() < deadline:
        check_alive()
        try:
            client.create_bucket(Bucket=bucket)
            return None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return None
            last_error = code or describe(exc)
        except BotoCoreError as exc:
            last_error = type(exc).__name__
        time.sleep(poll_s)
    return last_error


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """Connect/request timeouts and retry count applied to both boto3 and Lance clients."""

    connect_s: float = 2.0
    request_s: float = 15.0
    max_retries: int = 2

    @classmethod
    def from_config(cls, config: LanceDBSyncConfig) -> Timeouts:
        """The timeouts a configuration asks for."""
        return cls(
            connect_s=config.s3_connect_timeout_s,
            request_s=config.s3_request_timeout_s,
            max_retries=config.s3_max_retries,
        )


@dataclass(frozen=True, kw_only=True)
class S3Endpoint:
    """Where an S3 API answers and how to sign requests for it.

    ``url`` is None for AWS itself. ``provider`` names what serves it
    (``seaweedfs-embedded``, ``minio-testcontainers`` or ``external``) and is recorded with
    every result. The secret key is a :class:`Secret` and never printed.
    """

    url: str | None
    region: str
    access_key_id: str
    secret_access_key: Secret
    bucket: str
    prefix: str = ""
    provider: str = "external"
    provider_version: str | None = None
    # The URL the server itself answers on when ``url`` is a proxy in front of it: errors
    # name the endpoint a user configured, not a local port they never chose.
    behind: str | None = None

    def with_url(self, url: str) -> S3Endpoint:
        """The same bucket, prefix and keys at another URL."""
        return replace(self, url=url)

    def via_proxy(self, url: str) -> S3Endpoint:
        """This endpoint reached through a local proxy at ``url`` (messages name both)."""
        return replace(self, url=url, behind=self.behind or self.url)

    def describe(self) -> str:
        """Where requests go, for messages: the server's URL, and the proxy's if one is used."""
        if self.behind is not None and self.behind != self.url:
            return f"{self.behind} (through the local proxy {self.url})"
        return self.url or "AWS S3"

    def with_prefix(self, prefix: str) -> S3Endpoint:
        """The same endpoint with another key prefix inside the bucket."""
        return replace(self, prefix=prefix.strip("/"))

    def key(self, *parts: str) -> str:
        """An object key below this endpoint's prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def uri(self, *parts: str) -> str:
        """An ``s3://bucket/prefix/...`` URI for LanceDB."""
        key = self.key(*parts)
        return f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}"

    def boto3_client_kwargs(self, timeouts: Timeouts | None = None) -> dict[str, Any]:
        """Keyword arguments for ``boto3.client('s3', **kwargs)``, keys passed explicitly."""
        from botocore.config import Config

        t = timeouts or Timeouts()
        kwargs: dict[str, Any] = {
            "region_name": self.region,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key.reveal(),
            "config": Config(
                connect_timeout=t.connect_s,
                read_timeout=t.request_s,
                retries={"total_max_attempts": t.max_retries + 1, "mode": "standard"},
                s3={"addressing_style": "path"},
                max_pool_connections=32,
                # Checksums only when an operation requires them: third-party servers differ
                # in how they treat the newer default CRC trailers.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        }
        if self.url is not None:
            kwargs["endpoint_url"] = self.url
        return kwargs

    def client(self, timeouts: Timeouts | None = None) -> S3Client:
        """A boto3 S3 client for this endpoint (thread-safe once built)."""
        session = _shared_session()
        with _SESSION_LOCK:  # a boto3 Session is not thread-safe while it builds clients
            client: S3Client = session.client("s3", **self.boto3_client_kwargs(timeouts))
        # botocore asks for ``Expect: 100-continue`` on every upload of a file body: a wait
        # for the server's interim answer before the body is sent, one more round trip per
        # PUT (121 ms for an S3-primary write at a 20 ms RTT, 3-4 round trips without it).
        # Uploads here are small or multipart parts, and a refused one costs no more than
        # the wait would: send the body at once.
        client.meta.events.register(
            "before-call.s3", _no_expect_continue, unique_id="lancesync-no-expect"
        )
        _cache_endpoint_per_bucket(client)
        if self.url is not None and self.url.startswith("http://"):
            from lancesync_bench.s3.fast import FastS3

            t = timeouts or Timeouts()
            # The lean client for a sync's small requests (see s3.fast), kept with this one.
            client.lancesync_fast = FastS3(  # type: ignore[attr-defined]
                self.url,
                region=self.region,
                access_key_id=self.access_key_id,
                secret_access_key=self.secret_access_key,
                connect_timeout_s=t.connect_s,
                request_timeout_s=t.request_s,
                max_attempts=t.max_retries + 1,
            )
        return client

    def storage_options(self, timeouts: Timeouts | None = None) -> dict[str, str]:
        """LanceDB/Lance ``storage_options`` for this endpoint.

        The keys are always explicit so that nothing falls back to the cloud credential
        chain (which would query an instance metadata service); ``allow_http`` is set only
        for plain-HTTP endpoints.
        """
        t = timeouts or Timeouts()
        options = {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key.reveal(),
            "aws_region": self.region,
            "connect_timeout": f"{t.connect_s}s",
            "timeout": f"{t.request_s}s",
            "client_max_retries": str(t.max_retries),
            # Give up retrying after roughly one request timeout per attempt.
            "client_retry_timeout": str(int(t.request_s * (t.max_retries + 1)) + 1),
        }
        if self.url is not None:
            options["aws_endpoint"] = self.url
            if self.url.startswith("http://"):
                options["allow_http"] = "true"
        return options

    def env(self) -> dict[str, str]:
        """Environment variables that point a client (or this package's config) here."""
        values = {
            "S3_BUCKET": self.bucket,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key.reveal(),
            "AWS_REGION": self.region,
        }
        if self.prefix:
            values["S3_PREFIX"] = self.prefix
        if self.url is not None:
            values["S3_ENDPOINT_URL"] = self.url
        return values

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description for results files, the secret redacted."""
        return {
            "provider": self.provider,
            "provider_version": self.provider_version,
            "url": self.url,
            "region": self.region,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "access_key_id": self.access_key_id,
            "secret_access_key": "***",
        }

    @classmethod
    def from_config(cls, config: LanceDBSyncConfig) -> S3Endpoint:
        """The endpoint a validated configuration points at (external: nothing started)."""
        from lancesync_bench.errors import ConfigError

        if config.s3_bucket is None:
            raise ConfigError("S3_BUCKET is not set; an S3 endpoint needs a bucket name")
        if not config.aws_access_key_id or config.aws_secret_access_key is None:
            raise ConfigError(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must both be set: keys are passed "
                "explicitly so that no client falls back to a cloud metadata service"
            )
        return cls(
            url=config.s3_endpoint_url,
            region=config.aws_region,
            access_key_id=config.aws_access_key_id,
            secret_access_key=config.aws_secret_access_key,
            bucket=config.s3_bucket,
            prefix=config.s3_prefix,
            provider="external",
        )


def _cache_endpoint_per_bucket(client: Any) -> None:
    """Let botocore reuse its resolved endpoint across object keys.

    botocore resolves every request's endpoint by evaluating S3's endpoint rules, and caches
    the result keyed on every parameter the rule set declares. ``Key``, ``Prefix`` and
    ``CopySource`` are among them, yet no rule reads them: each new key missed the cache
    and the rules ran again, 0.44 ms of client CPU per request (800 small PUTs and LISTs,
    two clients alternating; 2.29 -> 1.85 ms p50). A one-document sync sends four.

    Only parameters that no rule of the installed rule set refers to are left out, so the
    endpoint resolved is the same. Where botocore is built differently (no such
    attributes), nothing changes.
    """
    resolver = getattr(client, "_ruleset_resolver", None)
    params = getattr(resolver, "_param_definitions", None)
    idle = _unread_endpoint_params()
    if isinstance(params, dict) and idle:
        resolver._param_definitions = {k: v for k, v in params.items() if k not in idle}  # type: ignore[union-attr]


@functools.cache
def _unread_endpoint_params() -> frozenset[str]:
    """The parameters S3's endpoint rule set declares but no rule reads (none if unsure)."""
    import botocore.loaders

    try:
        ruleset = botocore.loaders.create_loader().load_service_model("s3", "endpoint-rule-set-1")
    except Exception:  # an optimisation only: without it nothing is left out
        return frozenset()
    return unread_params(ruleset)


def unread_params(ruleset: dict[str, Any]) -> frozenset[str]:
    """The parameters of an endpoint rule set that its rules never name: neither as a
    ``{"ref": name}`` argument nor in a ``{name}`` or ``{name#attr}`` template; to be on the
    safe side, a name that appears anywhere in the rules as a word counts as read."""
    text = json.dumps(ruleset.get("rules", []))
    return frozenset(
        name
        for name in ruleset.get("parameters", {})
        if not re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text)
    )


def _no_expect_continue(params: dict[str, Any], **_: Any) -> None:
    """Drop the ``Expect`` header botocore adds to uploads (see :meth:`S3Endpoint.client`)."""
    params.get("headers", {}).pop("Expect", None)
