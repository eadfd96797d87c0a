"""ProxyProcess: the delay proxy in a process of its own, outside the measured interpreter.

:class:`~lancesync_bench.netem.proxy.S3Proxy` relays on an asyncio loop in a thread of the
process that uses it. For the benchmark that is the measured process: every chunk the
proxy parses, counts and delays takes the GIL from the service being timed, and its
timers wake on the same interpreter. ``ProxyProcess`` runs the same proxy in a child
interpreter (``python -m lancesync_bench.netem.process``), so the measured process only
pays what a real network costs it: sockets. It offers what the benchmark needs from a
proxy (:attr:`url`, :meth:`endpoint_for`, :meth:`snapshot`); counts come back as a JSON
line over the child's stdout, one pipe round trip per snapshot, which the recorder takes
outside the timed window. The child stops when asked, or when its stdin closes (the
parent died).

Faults, cuts and rewrites (the chaos suite) stay with the in-process :class:`S3Proxy`.
"""

from __future__ import annotations

import dataclasses
import json
import selectors
import subprocess
import sys
from typing import IO

from lancesync_bench.errors import S3Error
from lancesync_bench.netem.counts import RequestCounts
from lancesync_bench.netem.profile import PRESETS, NetworkProfile
from lancesync_bench.netem.proxy import S3Proxy
from lancesync_bench.s3.endpoint import S3Endpoint

__all__ = ["ProxyProcess"]

# Starting Python and importing this package takes ~0.3-1 s on 2 busy cores; a minute
# means the child is stuck.
_START_TIMEOUT_S = 60.0
# A snapshot is a pipe round trip to an idle child: well under a millisecond. Ten seconds
# means the child is gone or wedged.
_ANSWER_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
# One JSON line at a time each way: the child never writes before it was asked, so no
# line waits in the reader's buffer while the selector watches the pipe.
_SNAPSHOT, _STOP = "snapshot", "stop"


def _counts_to_json(counts: RequestCounts) -> str:
    return json.dumps(dataclasses.asdict(counts))


def _counts_from_json(text: str) -> RequestCounts:
    fields = json.loads(text)
    fields["statuses"] = {int(code): n for code, n in fields["statuses"].items()}
    return RequestCounts(**fields)


def _serve(argument: str, commands: IO[str], answers: IO[str]) -> int:
    """The child: run the proxy, answer snapshots; stop when asked or when stdin closes."""
    spec = json.loads(argument)
    try:
        proxy = S3Proxy(
            spec["upstream"], NetworkProfile(**spec["profile"]), seed=int(spec["seed"])
        ).start()
    except Exception as exc:  # the parent gets the reason, not a traceback
        answers.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        answers.flush()
        return 1
    try:
        answers.write(json.dumps({"port": proxy.port}) + "\n")
        answers.flush()
        for line in commands:  # ends when the parent closes stdin or dies
            command = line.strip()
            if command == _SNAPSHOT:
                answers.write(_counts_to_json(proxy.snapshot()) + "\n")
                answers.flush()
            elif command == _STOP:
                break
        return 0
    finally:
        proxy.stop()


class ProxyProcess:
    """An :class:`S3Proxy` with ``upstream_url``, ``profile`` and ``seed``, in a child process.

    Use it as a context manager, like the proxy itself; :meth:`stop` is idempotent.
    """

    def __init__(
        self, upstream_url: str, profile: NetworkProfile | None = None, *, seed: int = 0
    ) -> None:
        self.upstream_url = upstream_url
        self._profile = profile or PRESETS["loopback"]
        self._seed = seed
        self._proc: subprocess.Popen[str] | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise S3Error("the proxy process is not running")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: where clients connect."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def profile(self) -> NetworkProfile:
        return self._profile

    def start(self) -> ProxyProcess:
        """Start the child and wait until its proxy listens; S3Error when it cannot."""
        if self._proc is not None:
            return self
        spec = {
            "upstream": self.upstream_url,
            "profile": dataclasses.asdict(self._profile),
            "seed": self._seed,
        }
        # A plain child interpreter (not multiprocessing): nothing of the caller's __main__
        # is imported again, so scripts need no `if __name__ == "__main__"` guard for it.
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "lancesync_bench.netem.process", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        try:
            answer = json.loads(self._read_line(_START_TIMEOUT_S) or "{}")
        except S3Error:
            self.stop()
            raise
        if "port" not in answer:
            self.stop()
            why = answer.get("error", "it exited without a word")
            raise S3Error(f"the proxy process could not start its proxy: {why}")
        self._port = int(answer["port"])
        return self

    def snapshot(self) -> RequestCounts:
        """The child proxy's counts since start; subtract two for a delta."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise S3Error("the proxy process is not running")
        try:
            proc.stdin.write(_SNAPSHOT + "\n")
            proc.stdin.flush()
        except (OSError, ValueError) as exc:  # ValueError: its pipe is closed
            raise S3Error("the proxy process has gone away") from exc
        line = self._read_line(_ANSWER_TIMEOUT_S)
        if not line:
            raise S3Error("the proxy process has gone away")
        return _counts_from_json(line)

    def endpoint_for(self, endpoint: S3Endpoint) -> S3Endpoint:
        """``endpoint`` reached through the child's proxy (same bucket, prefix and keys)."""
        return endpoint.via_proxy(self.url)

    def _read_line(self, timeout_s: float) -> str:
        """One line from the child ("" at its end); S3Error when none comes in time."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout_s):
                raise S3Error(f"the proxy process did not answer within {timeout_s:g} s")
        return proc.stdout.readline()

    def stop(self) -> None:
        """Ask the child to stop, then make sure it has; safe to call twice."""
        proc, self._proc, self._port = self._proc, None, None
        if proc is None:
            return
        try:
            if proc.stdin is not None and not proc.stdin.closed:
                proc.stdin.write(_STOP + "\n")
                proc.stdin.close()
        except OSError:
            pass  # it is gone already
        try:
            proc.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(_STOP_TIMEOUT_S)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1], sys.stdin, sys.stdout))
