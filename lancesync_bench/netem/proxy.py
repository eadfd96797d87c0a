"""S3Proxy: the delay / fault / request-counting TCP proxy, run in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from lancesync_bench.errors import ConfigError, S3Error
from lancesync_bench.netem.connection import Connection, CutMode, PathState
from lancesync_bench.netem.counts import CountKeeper, RequestCounts
from lancesync_bench.netem.profile import PRESETS, NetworkProfile
from lancesync_bench.netem.rewrite import RequestRewrite
from lancesync_bench.s3.endpoint import S3Endpoint

__all__ = ["S3Proxy"]

# The proxy only ever listens on loopback: it is a test instrument, not a service.
_BIND_HOST = "127.0.0.1"
# Binding a loopback port takes milliseconds; a loaded CI machine gets far more.
_START_TIMEOUT_S = 10.0
# Stopping aborts every connection at once, so the loop ends in milliseconds; the bound
# only guards against a wedged thread.
_STOP_TIMEOUT_S = 10.0
_CUT_MODES: tuple[CutMode, ...] = ("reset", "blackhole")
_T = TypeVar("_T")


class S3Proxy:
    """A TCP proxy between S3 clients and one S3 server that delays, counts and fails.

    Use it as a context manager::

        with S3Proxy(server.url, NetworkProfile.preset("same-region")) as proxy:
            client = proxy.endpoint_for(endpoint).client()
            before = proxy.snapshot()
            client.head_object(...)
            print(proxy.snapshot() - before)

    It listens on 127.0.0.1 on a free port (:attr:`url`) and relays each connection to
    ``upstream_url`` (plain ``http://``: the proxy reads HTTP/1.1 to count requests).
    Delays and faults follow the profile (see :class:`NetworkProfile`); ``seed`` makes
    jitter and fault draws repeatable. ``rewrite`` (see :mod:`lancesync_bench.netem.rewrite`)
    is called with every request head and sends what it returns instead, e.g.
    ``rewrite=ConditionalStripper(endpoint.secret_access_key)`` makes the server behind the
    proxy ignore ``If-None-Match``. The relay runs on its own asyncio loop in a daemon
    thread; :meth:`stop` (also on exit) drops all connections and joins it, idempotently.
    """

    def __init__(
        self,
        upstream_url: str,
        profile: NetworkProfile | None = None,
        *,
        seed: int = 0,
        rewrite: RequestRewrite | None = None,
    ) -> None:
        parts = urlsplit(upstream_url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme != "http" or not parts.hostname or port == -1:
            raise ConfigError(
                f"S3Proxy upstream_url {upstream_url!r} is not usable; allowed: "
                "http://HOST[:PORT] (https cannot be proxied: the proxy reads the HTTP stream)"
            )
        self.upstream_url = upstream_url
        self._upstream = (parts.hostname, port or 80)
        self._initial_profile = profile or PRESETS["loopback"]
        self._seed = seed
        self._rewrite = rewrite
        self._counts = CountKeeper()
        self._state: PathState | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._start_error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> S3Proxy:
        """Bind a free port on 127.0.0.1 and start relaying; returns self."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        self._start_error = None
        thread = threading.Thread(target=self._thread_main, args=(ready,), daemon=True)
        thread.name = "lancesync-netem-proxy"
        self._thread = thread
        thread.start()
        if not ready.wait(_START_TIMEOUT_S) or self._start_error is not None:
            error = self._start_error
            self.stop()
            raise S3Error(f"the netem proxy did not start on {_BIND_HOST}: {error!r}") from error
        thread.name = f"lancesync-netem-proxy-{self._port}"
        return self

    def stop(self) -> None:
        """Drop every connection, stop the loop and join its thread. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            # RuntimeError: the loop already ended (it failed to start).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        thread.join(_STOP_TIMEOUT_S)
        self._loop = self._stopping = self._state = None
        if thread.is_alive():
            raise S3Error(f"the netem proxy thread did not stop within {_STOP_TIMEOUT_S:g} s")

    def __enter__(self) -> S3Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _thread_main(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as exc:  # reported by start(); a thread must not die silently
            self._start_error = exc
        finally:
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        state = PathState(
            *self._upstream,
            self._initial_profile,
            self._counts,
            self._seed,
            rewrite=self._rewrite,
        )
        stopping = asyncio.Event()
        serving: set[asyncio.Task[None]] = set()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                serving.add(task)
                task.add_done_callback(serving.discard)
            await Connection(state, reader, writer).serve()

        server = await asyncio.start_server(accept, _BIND_HOST, 0)
        self._port = int(server.sockets[0].getsockname()[1])
        self._state, self._stopping = state, stopping
        self._loop = asyncio.get_running_loop()
        ready.set()
        try:
            await stopping.wait()
        finally:
            # Reset what is accepted from now on, and let connections already accepted
            # reach serve() before the listener closes: asyncio (3.11) takes three loop
            # turns from accept() to our callback, and a connection still on its way when
            # the server closes is left open, unowned, until garbage collection.
            state.cut_mode = "reset"
            for connection in list(state.connections):
                connection.abort()
            for _ in range(5):
                await asyncio.sleep(0)
            server.close()
            await server.wait_closed()
            await asyncio.gather(*serving, return_exceptions=True)

    # -- what callers use ------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the relay thread is up."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def port(self) -> int:
        """The port the proxy listens on (valid after :meth:`start`)."""
        if self._port is None:
            raise S3Error("the netem proxy has no port yet; call start() or use it in `with`")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: give this to clients instead of the server's URL."""
        return f"http://{_BIND_HOST}:{self.port}"

    @property
    def profile(self) -> NetworkProfile:
        """The network profile in force."""
        return self._state.profile if self._state is not None else self._initial_profile

    def endpoint_for(self, endpoint: S3Endpoint) -> S3Endpoint:
        """``endpoint`` reached through this proxy (same bucket, prefix and keys)."""
        return endpoint.via_proxy(self.url)

    def set_profile(self, profile: NetworkProfile) -> None:
        """Switch profiles now; chunks already in flight keep the delay they were given."""
        self._initial_profile = profile
        if self._state is not None:
            self._call(lambda state: setattr(state, "profile", profile))

    def snapshot(self) -> RequestCounts:
        """The counts since start (or the last :meth:`reset`); subtract two for a delta."""
        return self._counts.snapshot()

    def reset(self) -> None:
        """Set every count back to zero."""
        self._counts.reset()

    def cut(self, mode: CutMode = "reset") -> None:
        """Fail the path like a dead network until :meth:`restore`.

        Live connections are dropped with a TCP reset. New ones are accepted (a user-space
        proxy cannot refuse a handshake the kernel already finished) and then, with
        ``"reset"``, reset at once, so clients fail fast; with ``"blackhole"``, silently
        held, so clients fail only by their own timeouts.
        """
        if mode not in _CUT_MODES:
            raise ConfigError(f"cut mode {mode!r} is not known; allowed: reset, blackhole")

        def apply(state: PathState) -> None:
            state.cut_mode = mode
            for connection in list(state.connections):
                connection.abort()

        self._call(apply)

    def restore(self) -> None:
        """Undo :meth:`cut`; connections held by a black hole are reset (their state is
        gone, as after a NAT or Wi-Fi change)."""

        def apply(state: PathState) -> None:
            state.cut_mode = None
            for connection in list(state.connections):
                if connection.blackholed:
                    connection.abort()

        self._call(apply)

    @property
    def is_cut(self) -> bool:
        """Whether :meth:`cut` is in force."""
        return self._state is not None and self._state.cut_mode is not None

    def _call(self, fn: Callable[[PathState], _T]) -> _T:
        """Run ``fn`` on the relay loop and wait for it, so its effect holds on return."""
        loop, state = self._loop, self._state
        if loop is None or state is None or not self.running:
            raise S3Error("the netem proxy is not running; call start() or use it in `with`")

        async def run() -> _T:
            return fn(state)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(_STOP_TIMEOUT_S)

    def __repr__(self) -> str:
        where = f"on {self.url}" if self.running else "stopped"
        return f"S3Proxy({where} -> {self.upstream_url}, profile={self.profile.name!r})"
