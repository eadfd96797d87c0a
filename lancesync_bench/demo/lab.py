"""The demo lab: an S3 server, a cuttable and counting path to it, and scratch folders.

Notebook 03 starts one :class:`DemoLab` and runs every scenario in it. Each scenario takes
a :class:`DemoRun` (its own S3 prefix and local folder), so running a cell twice never
mixes data with the first run. Services reach S3 through an :class:`S3Proxy`, which
counts requests and can cut the path; a second, direct endpoint plays "another machine
whose network is fine".
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lancesync_bench.config import LanceDBSyncConfig, StorageMode
from lancesync_bench.errors import ConfigError
from lancesync_bench.netem import S3Proxy
from lancesync_bench.s3.embedded import EmbeddedSeaweedFS
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.storage.service import LanceDBStorageService

__all__ = ["QUICK_ENV", "DemoLab", "DemoRun", "DemoSizes"]

# Set to 1 (CI, the notebook tests) to keep every scenario tiny.
QUICK_ENV = "LANCESYNC_NOTEBOOK_QUICK"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})

# The frontend/backend pair that selects each S3 mode (see the configuration matrix).
_MODE_ENV: dict[StorageMode, dict[str, str]] = {
    StorageMode.LOCAL_PRIMARY_S3_BACKUP: {"FRONTEND_TYPE": "desktop", "BACKEND_LOCATION": "local"},
    StorageMode.LOCAL_PRIMARY_S3_SYNC: {"FRONTEND_TYPE": "web", "BACKEND_LOCATION": "local"},
    StorageMode.S3_PRIMARY_LOCAL_CACHE: {"FRONTEND_TYPE": "web", "BACKEND_LOCATION": "cloud"},
}
# The demos show outages: one attempt and a 1 s connect timeout make a dead path visible at
# once. A production configuration keeps the defaults (2 retries, 2 s).
_DEMO_S3_ENV = {"S3_CONNECT_TIMEOUT_S": "1", "S3_MAX_RETRIES": "0"}


@dataclass(frozen=True, kw_only=True)
class DemoSizes:
    """How big the demos are: documents per scenario, embedding size, cache staleness bound.

    The defaults keep notebook 03 well under a minute; :meth:`quick` is for CI.
    """

    docs: int = 40
    dim: int = 8
    # The configuration's own default bound; the cache demo waits it out twice.
    staleness_ms: int = 1000

    def __post_init__(self) -> None:
        if self.docs < 8 or self.dim < 1 or self.staleness_ms < 1:
            raise ConfigError(
                f"DemoSizes(docs={self.docs}, dim={self.dim}, staleness_ms={self.staleness_ms}) "
                "is not allowed; the scenarios need docs >= 8, dim >= 1, staleness_ms >= 1"
            )

    @classmethod
    def quick(cls) -> DemoSizes:
        """The smallest sizes that still show every effect."""
        return cls(docs=12, staleness_ms=500)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DemoSizes:
        """:meth:`quick` when ``LANCESYNC_NOTEBOOK_QUICK`` is true in ``env``, else defaults."""
        env = os.environ if env is None else env
        value = env.get(QUICK_ENV, "").strip().lower()
        if value in _TRUE:
            return cls.quick()
        if value in _FALSE:
            return cls()
        raise ConfigError(f"{QUICK_ENV}={value!r} is not a boolean; allowed: 1/0, true/false")


@dataclass(frozen=True, kw_only=True)
class DemoRun:
    """One scenario's corner of the lab: its S3 prefix, its folder, and how to configure it."""

    name: str
    folder: Path
    endpoint: S3Endpoint
    direct_endpoint: S3Endpoint
    sizes: DemoSizes

    def config(
        self, mode: StorageMode, *, device: str, place: str | None = None, **env: str
    ) -> LanceDBSyncConfig:
        """The configuration of one device or backend instance in ``mode``.

        ``place`` names its LOCAL_STORAGE_PATH inside the run folder (the device id by
        default); ``env`` adds or overrides variables. No credential is part of it: the
        service gets the endpoint (and its keys) directly.
        """
        values = {
            **_MODE_ENV[mode],
            "S3_BUCKET": self.endpoint.bucket,
            "LOCAL_STORAGE_PATH": str(self.folder / (place or device)),
            "EMBEDDING_DIM": str(self.sizes.dim),
            "DEVICE_ID": device,
            "CACHE_MAX_STALENESS_MS": str(self.sizes.staleness_ms),
            "SYNC_INTERVAL_S": "0",  # each demo syncs when it shows a sync
            **_DEMO_S3_ENV,
            **env,
        }
        return LanceDBSyncConfig.from_env(values)

    def service(
        self,
        mode: StorageMode,
        *,
        device: str,
        place: str | None = None,
        direct: bool = False,
        **env: str,
    ) -> LanceDBStorageService:
        """A :class:`LanceDBStorageService` for one device; use it with ``async with``.

        It reaches S3 through the lab's proxy (counted, cuttable) unless ``direct``.
        """
        config = self.config(mode, device=device, place=place, **env)
        endpoint = self.direct_endpoint if direct else self.endpoint
        return LanceDBStorageService(config, endpoint=endpoint)


class DemoLab:
    """An S3 server (embedded SeaweedFS unless ``endpoint`` is given), a proxy, a scratch folder.

    Use ``with DemoLab() as lab:``, or :meth:`start` and :meth:`close` in a notebook:
    :meth:`start` also registers :meth:`close` to run when the interpreter exits, so a kernel
    that stops after a failing cell stops the server too. ``endpoint`` (tests pass the
    session server's) must be plain ``http://``; the lab then starts no server of its own.
    """

    def __init__(self, *, endpoint: S3Endpoint | None = None, sizes: DemoSizes | None = None):
        self.sizes = sizes or DemoSizes.from_env()
        self._given = endpoint
        self._server: EmbeddedSeaweedFS | None = None
        self._proxy: S3Proxy | None = None
        self._direct: S3Endpoint | None = None
        self._root: Path | None = None
        self._runs = itertools.count(1)

    def start(self) -> DemoLab:
        """Start the server (if the lab owns one) and the proxy; returns self."""
        if self._proxy is not None:
            return self
        atexit.register(self.close)
        try:
            if self._given is None:
                self._server = EmbeddedSeaweedFS()
                direct = self._server.start().with_prefix("demo")
            else:
                direct = self._given
            if direct.url is None:
                raise ConfigError("DemoLab needs an endpoint with an http:// URL, not AWS itself")
            self._root = Path(tempfile.mkdtemp(prefix="lancesync-demo-"))
            self._proxy = S3Proxy(direct.url).start()
            self._direct = direct
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the proxy and the server, remove the scratch folder. Safe to call twice."""
        atexit.unregister(self.close)
        proxy, self._proxy = self._proxy, None
        server, self._server = self._server, None
        root, self._root = self._root, None
        self._direct = None
        try:
            if proxy is not None:
                proxy.stop()
        finally:
            if server is not None:
                server.close()
            if root is not None:
                shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> DemoLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """Whether the lab is started."""
        return self._proxy is not None

    def _need(self) -> tuple[S3Proxy, S3Endpoint, Path]:
        if self._proxy is None or self._direct is None or self._root is None:
            raise ConfigError("the demo lab is not started; call start() or use it in `with`")
        return self._proxy, self._direct, self._root

    @property
    def proxy(self) -> S3Proxy:
        """The proxy between the services and S3: :meth:`S3Proxy.cut`, counts."""
        return self._need()[0]

    @property
    def endpoint(self) -> S3Endpoint:
        """The S3 endpoint as reached through the proxy."""
        proxy, direct, _ = self._need()
        return proxy.endpoint_for(direct)

    @property
    def direct_endpoint(self) -> S3Endpoint:
        """The S3 endpoint reached directly (a machine whose network never fails)."""
        return self._need()[1]

    @property
    def server_url(self) -> str:
        """The S3 server's own URL (not through the proxy)."""
        url = self.direct_endpoint.url
        assert url is not None  # checked in start()
        return url

    def run(self, name: str) -> DemoRun:
        """A fresh S3 prefix and folder for one scenario run (``name-1``, ``name-2``, ...)."""
        proxy, direct, root = self._need()
        run_name = f"{name}-{next(self._runs)}"
        folder = root / run_name
        folder.mkdir(parents=True)
        prefix = f"{direct.prefix}/{run_name}" if direct.prefix else run_name
        scoped = direct.with_prefix(prefix)
        return DemoRun(
            name=run_name,
            folder=folder,
            endpoint=proxy.endpoint_for(scoped),
            direct_endpoint=scoped,
            sizes=self.sizes,
        )

    def describe(self) -> pd.DataFrame:
        """What the demos run against: server, URLs, bucket, sizes (never the secret key)."""
        proxy, direct, root = self._need()
        rows = [
            ("S3 server", f"{direct.provider} {direct.provider_version or ''}".strip()),
            ("S3 URL (direct)", self.server_url),
            ("S3 URL (through the proxy the demos cut)", proxy.url),
            ("bucket / prefix", f"{direct.bucket} / {direct.prefix or '(none)'}"),
            ("scratch folder", str(root)),
            ("documents per scenario", str(self.sizes.docs)),
            ("embedding dimensions", str(self.sizes.dim)),
            ("cache staleness bound", f"{self.sizes.staleness_ms} ms"),
            ("S3 retries / connect timeout", "0 / 1 s (fail fast, to show outages)"),
        ]
        return pd.DataFrame(rows, columns=["setting", "value"]).set_index("setting")

    def __repr__(self) -> str:
        if self._direct is None:
            return "DemoLab(stopped)"
        return f"DemoLab(S3 {self._direct.provider} at {self._direct.url}, sizes={self.sizes})"
