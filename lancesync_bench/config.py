"""The LanceDB sync configuration: backend detection, storage-mode choice, validation.

Everything is read from one mapping of environment variables (``os.environ`` by default),
so a configuration can be built for any hypothetical deployment without touching the
process environment. The rules follow the sync system's specification:

* ``FRONTEND_TYPE`` (required) is ``web`` or ``desktop``.
* ``BACKEND_LOCATION`` wins when set; otherwise the backend is ``cloud`` when any cloud
  indicator variable is present (AWS Lambda, Cloud Functions, Azure Functions, Kubernetes,
  ECS, Cloud Run, Vercel, Railway), else ``local``.
* web + cloud -> ``s3_primary_local_cache``; web + local -> ``local_primary_s3_sync``;
  desktop -> ``local_primary_s3_backup`` (always local-first); ``local_only`` when S3 is
  switched off entirely.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from lancesync_bench.errors import ConfigError

__all__ = [
    "CLOUD_INDICATORS",
    "DEFAULT_CACHE_MAX_STALENESS_MS",
    "DEFAULT_SYNC_INTERVAL_S",
    "BackendLocation",
    "ConfigError",
    "FrontendType",
    "LanceDBSyncConfig",
    "Secret",
    "StorageMode",
    "WriteDurability",
]


class FrontendType(StrEnum):
    """Which frontend the backend serves."""

    WEB = "web"
    DESKTOP = "desktop"


class BackendLocation(StrEnum):
    """Where the backend process runs."""

    CLOUD = "cloud"
    LOCAL = "local"


class WriteDurability(StrEnum):
    """What an acknowledged local write survives (``WRITE_DURABILITY``).

    ``process``: the process being killed (its write log is in the OS page cache);
    ``fsync``: also an OS crash or power loss (the log is fdatasync'd before the write
    returns). See :mod:`lancesync_bench.storage.log`.
    """

    PROCESS = "process"
    FSYNC = "fsync"


class StorageMode(StrEnum):
    """The storage strategy chosen from frontend type and backend location."""

    S3_PRIMARY_LOCAL_CACHE = "s3_primary_local_cache"
    LOCAL_PRIMARY_S3_SYNC = "local_primary_s3_sync"
    LOCAL_PRIMARY_S3_BACKUP = "local_primary_s3_backup"
    LOCAL_ONLY = "local_only"

    @property
    def uses_s3(self) -> bool:
        """Whether this mode talks to S3 at all."""
        return self is not StorageMode.LOCAL_ONLY

    @property
    def s3_is_primary(self) -> bool:
        """Whether S3 holds the authoritative copy."""
        return self is StorageMode.S3_PRIMARY_LOCAL_CACHE


# The spec's cloud indicators, in the order they are checked (the first present one is
# reported as the reason). Presence counts, even with an empty value, as in the spec.
CLOUD_INDICATORS: tuple[tuple[str, str], ...] = (
    ("LAMBDA_TASK_ROOT", "AWS Lambda"),
    ("AWS_LAMBDA_FUNCTION_NAME", "AWS Lambda"),
    ("FUNCTION_NAME", "Google Cloud Functions"),
    ("FUNCTION_TARGET", "Google Cloud Functions"),
    ("WEBSITE_SITE_NAME", "Azure Functions"),
    ("WEBSITE_INSTANCE_ID", "Azure Functions"),
    ("KUBERNETES_SERVICE_HOST", "Kubernetes"),
    ("ECS_CONTAINER_METADATA_URI", "AWS ECS"),
    ("CLOUD_RUN", "Google Cloud Run"),
    ("VERCEL", "Vercel"),
    ("RAILWAY_STATIC_URL", "Railway"),
)

# The background sync/backup period by default: at most this long (plus one push) does an
# acknowledged write exist on one device's disk only, while S3 is reachable.
DEFAULT_SYNC_INTERVAL_S = 30.0
# How old the S3-primary cache's view of S3 may be before a read asks S3 for news.
DEFAULT_CACHE_MAX_STALENESS_MS = 1000

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_BOOL_ALLOWED = "true/false, 1/0, yes/no or on/off"
# S3 bucket naming rules (virtual-host safe subset): 3-63 chars, lowercase, digits, '.', '-'.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_DEVICE_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

E = TypeVar("E", bound=StrEnum)


class Secret:
    """A string that never shows itself in ``repr()``, ``str()`` or formatted output."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself: only for handing it to an S3 client."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling (for worker processes) carries the value; it is never printed.
        return (Secret, (self._value,))


def _get(env: Mapping[str, str], name: str) -> str | None:
    """The stripped value of ``name``, or None when unset or blank."""
    raw = env.get(name)
    if raw is None:
        return None
    value = raw.strip()
    return value or None


def _parse_bool(env: Mapping[str, str], name: str) -> bool | None:
    value = _get(env, name)
    if value is None:
        return None
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean; allowed: {_BOOL_ALLOWED}")


def _parse_enum(env: Mapping[str, str], name: str, enum: type[E]) -> E | None:
    value = _get(env, name)
    if value is None:
        return None
    try:
        return enum(value.lower())
    except ValueError:
        allowed = " or ".join(repr(m.value) for m in enum)
        raise ConfigError(f"{name}={value!r} is not allowed; use {allowed}") from None


def _parse_number(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float,
    maximum: float,
    integer: bool = False,
) -> float:
    value = _get(env, name)
    if value is None:
        return default
    kind = "an integer" if integer else "a number"
    try:
        number = float(int(value)) if integer else float(value)
    except ValueError:
        raise ConfigError(
            f"{name}={value!r} is not {kind}; allowed: {kind} from {minimum:g} to {maximum:g}"
        ) from None
    if not (minimum <= number <= maximum):  # also rejects NaN
        raise ConfigError(f"{name}={value!r} is out of range; allowed: {minimum:g} to {maximum:g}")
    return number


def _parse_endpoint(env: Mapping[str, str]) -> str | None:
    for name in ("S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        value = _get(env, name)
        if value is None:
            continue
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{name}={value!r} is not an endpoint URL; allowed: http(s)://host[:port]"
            )
        try:
            _ = parts.port
        except ValueError:
            raise ConfigError(
                f"{name}={value!r} has an invalid port; allowed: http(s)://host[:port], "
                "port 0-65535"
            ) from None
        return value.rstrip("/")
    return None


def _parse_prefix(env: Mapping[str, str]) -> str:
    value = _get(env, "S3_PREFIX") or ""
    prefix = value.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise ConfigError(
            f"S3_PREFIX={value!r} has an empty, '.' or '..' segment; "
            "allowed: slash-separated names such as 'apps/notes'"
        )
    if "\x00" in prefix:
        raise ConfigError(
            f"S3_PREFIX={value!r} contains a NUL character; "
            "allowed: slash-separated names such as 'apps/notes'"
        )
    return prefix


def _home(env: Mapping[str, str]) -> Path:
    """HOME from ``env``; else the user database, so that ``os.environ`` is never consulted."""
    home = _get(env, "HOME")
    if home is not None:
        return Path(home)
    try:
        import pwd

        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except (ImportError, KeyError):  # no user database (Windows) or an unnamed uid
        return Path.home()


def _expand_user(path: str, env: Mapping[str, str]) -> Path:
    """Expand a leading ``~`` with the HOME of ``env`` (``Path.expanduser`` reads os.environ)."""
    if path == "~" or path.startswith("~/"):
        return _home(env) / path[2:]
    return Path(path).expanduser()  # '~user' comes from the user database, not the environment


def default_local_storage_path(env: Mapping[str, str]) -> Path:
    """The per-user data directory used when LOCAL_STORAGE_PATH is unset (XDG rules)."""
    base = _get(env, "XDG_DATA_HOME") or str(_home(env) / ".local/share")
    return Path(base) / "lancesync-bench"


def detect_backend_location(env: Mapping[str, str]) -> tuple[BackendLocation, str]:
    """Decide where the backend runs and say why.

    An explicit ``BACKEND_LOCATION`` always wins; otherwise the first cloud indicator
    present decides ``cloud``; with none present the backend is ``local``.
    """
    explicit = _parse_enum(env, "BACKEND_LOCATION", BackendLocation)
    if explicit is not None:
        return explicit, f"explicit: BACKEND_LOCATION={explicit.value}"
    for name, platform in CLOUD_INDICATORS:
        if name in env:
            return BackendLocation.CLOUD, f"cloud indicator {name} is set ({platform})"
    return BackendLocation.LOCAL, "no cloud indicator is set"


@dataclass(frozen=True, kw_only=True)
class LanceDBSyncConfig:
    """A resolved configuration: who the frontend is, where the backend runs, how data is kept.

    Build it with :meth:`from_env`; the flags left unset there are filled in from the
    configuration matrix of the frontend type and backend location.
    """

    frontend_type: FrontendType
    backend_location: BackendLocation
    detection_reason: str
    s3_storage_enabled: bool
    use_s3_as_primary: bool
    local_cache_enabled: bool
    s3_backup_enabled: bool
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: Secret | None = field(default=None, repr=False)
    aws_region: str = "us-east-1"
    local_storage_path: Path = field(default_factory=lambda: default_local_storage_path(os.environ))
    embedding_dim: int = 384
    # How old the S3-primary cache's view of the latest version may get before a read checks S3.
    # 1 s keeps cached reads free of round trips yet shows other instances' writes quickly.
    cache_max_staleness_ms: int = 1000
    # Background sync/backup period in the local-primary S3 modes; 0 switches it off (sync
    # and backup are then explicit calls). The default bounds what exists on this device's
    # disk only: while S3 is reachable, no acknowledged write waits longer than this (plus
    # one push) to reach S3.
    sync_interval_s: float = DEFAULT_SYNC_INTERVAL_S
    # Local writes are acknowledged from a write log; "fsync" adds ~0.25 ms per log flush
    # (shared by concurrent writers) for power-loss safety.
    write_durability: WriteDurability = WriteDurability.PROCESS
    # Remote versions newer than this are never cleaned up (Lance's own default is 7 days).
    retention_s: float = 7 * 24 * 3600.0
    # A short connect timeout and few retries let offline local-primary modes fail over fast;
    # the Lance client defaults (10 retries within 180 s) would stall a sync for minutes.
    s3_connect_timeout_s: float = 2.0
    s3_request_timeout_s: float = 15.0
    s3_max_retries: int = 2
    # Identifies this device/instance in sync tie-breaks; None: a random id kept in
    # LOCAL_STORAGE_PATH/device-id, stable across restarts.
    device_id: str | None = None
    explicit: frozenset[str] = frozenset()

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, validate: bool = True
    ) -> LanceDBSyncConfig:
        """Read the configuration from ``env`` (``os.environ`` when None) and resolve it.

        Raises :class:`ConfigError` for a missing or unparseable value, and (unless
        ``validate`` is false) for a combination the rules do not allow.
        """
        env = os.environ if env is None else env
        frontend = _parse_enum(env, "FRONTEND_TYPE", FrontendType)
        if frontend is None:
            raise ConfigError("FRONTEND_TYPE is not set; allowed: 'web' or 'desktop'")
        backend, reason = detect_backend_location(env)
        flags = {
            name: _parse_bool(env, name)
            for name in (
                "S3_STORAGE_ENABLED",
                "USE_S3_AS_PRIMARY",
                "LOCAL_CACHE_ENABLED",
                "S3_BACKUP_ENABLED",
            )
        }
        web = frontend is FrontendType.WEB
        cloud = backend is BackendLocation.CLOUD
        defaults = {
            "S3_STORAGE_ENABLED": web,
            "USE_S3_AS_PRIMARY": web and cloud,
            "LOCAL_CACHE_ENABLED": True,
            "S3_BACKUP_ENABLED": not web,
        }
        resolved = {k: defaults[k] if v is None else v for k, v in flags.items()}
        # USE_S3_AS_PRIMARY follows S3_STORAGE_ENABLED when only the latter was switched off.
        if flags["USE_S3_AS_PRIMARY"] is None and not resolved["S3_STORAGE_ENABLED"]:
            resolved["USE_S3_AS_PRIMARY"] = False

        bucket = _get(env, "S3_BUCKET")
        if bucket is not None and not _BUCKET_RE.match(bucket):
            raise ConfigError(
                f"S3_BUCKET={bucket!r} is not a valid bucket name; allowed: 3-63 characters of "
                "lowercase letters, digits, '.' and '-', starting and ending with a letter or digit"
            )
        secret = _get(env, "AWS_SECRET_ACCESS_KEY")
        device = _get(env, "DEVICE_ID")
        if device is not None and not _DEVICE_RE.match(device):
            raise ConfigError(f"DEVICE_ID={device!r} is not allowed; use 1-64 of A-Za-z0-9._-")
        local_path = _get(env, "LOCAL_STORAGE_PATH")
        if local_path is not None and "\x00" in local_path:
            raise ConfigError(
                f"LOCAL_STORAGE_PATH={local_path!r} contains a NUL character; "
                "allowed: a directory path"
            )
        config = cls(
            frontend_type=frontend,
            backend_location=backend,
            detection_reason=reason,
            s3_storage_enabled=resolved["S3_STORAGE_ENABLED"],
            use_s3_as_primary=resolved["USE_S3_AS_PRIMARY"],
            local_cache_enabled=resolved["LOCAL_CACHE_ENABLED"],
            s3_backup_enabled=resolved["S3_BACKUP_ENABLED"],
            s3_bucket=bucket,
            s3_prefix=_parse_prefix(env),
            s3_endpoint_url=_parse_endpoint(env),
            aws_access_key_id=_get(env, "AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=Secret(secret) if secret else None,
            aws_region=_get(env, "AWS_REGION") or _get(env, "AWS_DEFAULT_REGION") or "us-east-1",
            local_storage_path=(
                _expand_user(local_path, env) if local_path else default_local_storage_path(env)
            ),
            embedding_dim=int(
                _parse_number(env, "EMBEDDING_DIM", 384, minimum=1, maximum=16384, integer=True)
            ),
            cache_max_staleness_ms=int(
                _parse_number(
                    env,
                    "CACHE_MAX_STALENESS_MS",
                    DEFAULT_CACHE_MAX_STALENESS_MS,
                    minimum=0,
                    maximum=86_400_000,
                    integer=True,
                )
            ),
            sync_interval_s=_parse_number(
                env, "SYNC_INTERVAL_S", DEFAULT_SYNC_INTERVAL_S, minimum=0, maximum=86_400
            ),
            write_durability=(
                _parse_enum(env, "WRITE_DURABILITY", WriteDurability) or WriteDurability.PROCESS
            ),
            retention_s=_parse_number(
                env, "RETENTION_S", 7 * 24 * 3600.0, minimum=0, maximum=3.2e9
            ),
            s3_connect_timeout_s=_parse_number(
                env, "S3_CONNECT_TIMEOUT_S", 2.0, minimum=0.1, maximum=600
            ),
            s3_request_timeout_s=_parse_number(
                env, "S3_REQUEST_TIMEOUT_S", 15.0, minimum=0.1, maximum=3600
            ),
            s3_max_retries=int(
                _parse_number(env, "S3_MAX_RETRIES", 2, minimum=0, maximum=20, integer=True)
            ),
            device_id=device,
            explicit=frozenset(k for k, v in flags.items() if v is not None),
        )
        if validate:
            config.validate()
        return config

    # -- the spec's questions -------------------------------------------------------------

    def is_web_frontend(self) -> bool:
        """True for a web frontend."""
        return self.frontend_type is FrontendType.WEB

    def is_cloud_backend(self) -> bool:
        """True when the backend runs in the cloud (explicitly or detected)."""
        return self.backend_location is BackendLocation.CLOUD

    def get_recommended_storage_mode(self) -> StorageMode:
        """The storage mode that frontend type, backend location and the S3 flags select."""
        if self.is_web_frontend():
            if self.s3_storage_enabled:
                if self.is_cloud_backend() and self.use_s3_as_primary:
                    return StorageMode.S3_PRIMARY_LOCAL_CACHE
                return StorageMode.LOCAL_PRIMARY_S3_SYNC
            if self.s3_backup_enabled:
                return StorageMode.LOCAL_PRIMARY_S3_BACKUP
            return StorageMode.LOCAL_ONLY
        if self.s3_storage_enabled or self.s3_backup_enabled:
            return StorageMode.LOCAL_PRIMARY_S3_BACKUP
        return StorageMode.LOCAL_ONLY

    @property
    def storage_mode(self) -> StorageMode:
        """Same as :meth:`get_recommended_storage_mode`."""
        return self.get_recommended_storage_mode()

    def validate(self) -> None:
        """Apply the context-aware rules; raise :class:`ConfigError` naming the variable."""
        mode = self.storage_mode
        # A web app's S3 switch is S3_STORAGE_ENABLED itself; a backup alone does not satisfy it.
        s3_off = not self.s3_storage_enabled if self.is_web_frontend() else not mode.uses_s3
        if self.is_cloud_backend() and s3_off:
            var = "S3_STORAGE_ENABLED" if self.is_web_frontend() else "S3_BACKUP_ENABLED"
            raise ConfigError(
                f"{var}=false is not allowed with a cloud backend ({self.detection_reason}): "
                "a cloud backend requires S3; set it to true, or set BACKEND_LOCATION=local"
            )
        if not self.is_web_frontend() and self.use_s3_as_primary:
            raise ConfigError(
                "USE_S3_AS_PRIMARY=true is not allowed with FRONTEND_TYPE=desktop: desktop apps "
                "are always local-first (S3 is their backup); set USE_S3_AS_PRIMARY=false"
            )
        if self.use_s3_as_primary and not self.s3_storage_enabled:
            raise ConfigError(
                "USE_S3_AS_PRIMARY=true is not allowed with S3_STORAGE_ENABLED=false; "
                "enable S3 storage or set USE_S3_AS_PRIMARY=false"
            )
        if self.is_web_frontend() and not self.is_cloud_backend() and self.use_s3_as_primary:
            raise ConfigError(
                f"USE_S3_AS_PRIMARY=true is not allowed with a local backend "
                f"({self.detection_reason}): a web app with a local backend keeps its data "
                "locally and syncs to S3; set BACKEND_LOCATION=cloud to use S3 as primary"
            )
        if not self.local_cache_enabled and mode is not StorageMode.S3_PRIMARY_LOCAL_CACHE:
            raise ConfigError(
                f"LOCAL_CACHE_ENABLED=false is not allowed in mode {mode.value}: only the "
                "S3-primary mode can run without a local copy; set LOCAL_CACHE_ENABLED=true"
            )
        if mode.uses_s3 and self.s3_bucket is None:
            raise ConfigError(
                f"S3_BUCKET is not set; storage mode {mode.value} uses S3 and needs a bucket "
                "name (3-63 lowercase letters, digits, '.' or '-')"
            )

    # -- exports ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view of the configuration, secrets redacted."""
        return {
            "frontend_type": self.frontend_type.value,
            "backend_location": self.backend_location.value,
            "detection_reason": self.detection_reason,
            "storage_mode": self.storage_mode.value,
            "s3_storage_enabled": self.s3_storage_enabled,
            "use_s3_as_primary": self.use_s3_as_primary,
            "local_cache_enabled": self.local_cache_enabled,
            "s3_backup_enabled": self.s3_backup_enabled,
            "s3_bucket": self.s3_bucket,
            "s3_prefix": self.s3_prefix,
            "s3_endpoint_url": self.s3_endpoint_url,
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": "***" if self.aws_secret_access_key else None,
            "aws_region": self.aws_region,
            "local_storage_path": str(self.local_storage_path),
            "embedding_dim": self.embedding_dim,
            "cache_max_staleness_ms": self.cache_max_staleness_ms,
            "sync_interval_s": self.sync_interval_s,
            "write_durability": self.write_durability.value,
            "retention_s": self.retention_s,
            "s3_connect_timeout_s": self.s3_connect_timeout_s,
            "s3_request_timeout_s": self.s3_request_timeout_s,
            "s3_max_retries": self.s3_max_retries,
            "device_id": self.device_id,
            "explicit_flags": sorted(self.explicit),
        }
