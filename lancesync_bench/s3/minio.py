"""S3 servers in Docker containers through testcontainers; MinIO is the default preset.

One code path serves every image: a :class:`ContainerPreset` names image, command, port
and credential variables; :class:`ContainerS3` runs it, waits for S3, creates the bucket.
testcontainers and docker (the ``minio`` extra) are imported only when a container is used.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lancesync_bench.config import Secret
from lancesync_bench.errors import S3Error
from lancesync_bench.s3.embedded import DEFAULT_BUCKET
from lancesync_bench.s3.endpoint import S3Endpoint, Timeouts

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

__all__ = [
    "DEFAULT_MINIO_IMAGE",
    "ContainerPreset",
    "ContainerS3",
    "docker_available",
    "docker_host",
    "image_tag",
    "minio_preset",
]

# MinIO publishes its server images on quay.io (the Docker Hub copies are reported gone).
# Pinned so results stay comparable; 2025 releases enforce `If-None-Match: *` on PUT.
DEFAULT_MINIO_IMAGE = "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"
_DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# An engine that answers at all does so within milliseconds; 3 s covers a loaded machine
# without making `auto` selection stall where a socket exists but nothing serves it.
_PING_TIMEOUT_S = 3.0
# MinIO is ready in 1-3 s once its image is present; pulling is not counted in this.
_START_TIMEOUT_S = 60.0
# Readiness polls fail fast: a container that is not listening yet refuses at once.
_READY_TIMEOUTS = Timeouts(connect_s=1.0, request_s=5.0, max_retries=0)
_MAX_REASON_CHARS = 300


def _one_line(exc: BaseException, secret: Secret | None = None) -> str:
    """The first line of an exception's message, shortened, with any secret masked."""
    # docker's APIError keeps the engine's own words in `explanation`, without the URL.
    lines = str(getattr(exc, "explanation", None) or exc).strip().splitlines()
    text = lines[0].strip() if lines else type(exc).__name__
    if secret is not None and secret.reveal():
        text = text.replace(secret.reveal(), "***")
    if len(text) > _MAX_REASON_CHARS:
        text = text[: _MAX_REASON_CHARS - 3] + "..."
    return text


def docker_host() -> str:
    """The Docker engine address testcontainers will use: ``DOCKER_HOST`` or the default."""
    return os.environ.get("DOCKER_HOST") or _DEFAULT_DOCKER_HOST


def docker_available(timeout_s: float = _PING_TIMEOUT_S) -> tuple[bool, str]:
    """Whether a Docker engine answers, and a one-line reason either way; never hangs."""
    host = docker_host()
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        return False, f"no Docker engine answers at {host}: the socket does not exist"
    try:
        import docker
    except ImportError:
        return False, "the 'docker' package is missing; pip install 'lancesync-bench[minio]'"
    try:
        client = docker.from_env(timeout=timeout_s)
    except Exception as exc:  # docker raises DockerException, or a transport error
        return False, f"no Docker engine answers at {host}: {_one_line(exc)}"
    try:
        version = str(client.version().get("Version", "unknown"))
    except Exception as exc:
        return False, f"no Docker engine answers at {host}: {_one_line(exc)}"
    finally:
        client.close()
    return True, f"Docker engine {version} answers at {host}"


def image_tag(image: str) -> str:
    """The tag (or digest) of an image reference; ``latest`` when it has none."""
    if "@" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]  # a registry's ":port" sits before the last slash
    return last.split(":", 1)[1] if ":" in last else "latest"


@dataclass(frozen=True, kw_only=True)
class ContainerPreset:
    """How to run one S3 server image: command, port, credential variables, tmpfs mounts.

    The access and secret keys are generated per container and handed to it through the
    variables named by ``access_key_env`` and ``secret_key_env``.
    """

    provider: str
    image: str
    port: int
    command: tuple[str, ...]
    access_key_env: str
    secret_key_env: str
    env: Mapping[str, str] = field(default_factory=dict)
    tmpfs: tuple[str, ...] = ()
    region: str = "us-east-1"

    @property
    def version(self) -> str:
        """The image tag, recorded as the endpoint's provider version."""
        return image_tag(self.image)


def minio_preset(
    image: str | None = None, *, env: Mapping[str, str] | None = None
) -> ContainerPreset:
    """The MinIO preset; the image is ``image``, else ``MINIO_IMAGE``, else the pinned default."""
    env = os.environ if env is None else env
    chosen = image or (env.get("MINIO_IMAGE") or "").strip() or DEFAULT_MINIO_IMAGE
    return ContainerPreset(
        provider="minio-testcontainers",
        image=chosen,
        port=9000,
        command=("server", "/data", "--address", ":9000"),
        access_key_env="MINIO_ROOT_USER",
        secret_key_env="MINIO_ROOT_PASSWORD",  # noqa: S106 - a variable name, not a secret
        # The web console is not needed and would take another port.
        env={"MINIO_BROWSER": "off"},
    )


class ContainerS3:
    """An S3 server in a container started through testcontainers; a context manager.

    :meth:`close` removes the container (also after a failed or interrupted start).
    """

    def __init__(
        self,
        preset: ContainerPreset,
        *,
        bucket: str = DEFAULT_BUCKET,
        start_timeout_s: float = _START_TIMEOUT_S,
    ) -> None:
        self.preset = preset
        self.bucket = bucket
        self.start_timeout_s = start_timeout_s
        self.access_key_id = "lsb" + secrets.token_hex(8)
        self.secret_access_key = Secret(secrets.token_urlsafe(30))
        # A unique name lets close() find a container whose start was interrupted.
        self.name = f"lancesync-s3-{uuid.uuid4().hex[:12]}"
        self._container: DockerContainer | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The S3 endpoint URL on the host (valid after :meth:`start`)."""
        if self._url is None:
            raise S3Error(f"container {self.name} ({self.preset.image}) is not started")
        return self._url

    @property
    def running(self) -> bool:
        """Whether the container is up."""
        if self._container is None:
            return False
        try:
            wrapped = self._container.get_wrapped_container()
            wrapped.reload()
            return str(wrapped.status) == "running"
        except Exception:
            return False

    def endpoint(self) -> S3Endpoint:
        """The endpoint description for clients of this server."""
        return S3Endpoint(
            url=self.url,
            region=self.preset.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            bucket=self.bucket,
            provider=self.preset.provider,
            provider_version=self.preset.version,
        )

    def start(self) -> S3Endpoint:
        """Start the container, wait until S3 answers and the bucket exists."""
        if self._container is not None:
            return self.endpoint()
        ok, reason = docker_available()
        if not ok:
            raise S3Error(reason)
        try:
            from testcontainers.core.container import DockerContainer
        except ImportError:
            raise S3Error(
                "testcontainers is not installed; pip install 'lancesync-bench[minio]'"
            ) from None
        p = self.preset
        try:
            container = DockerContainer(p.image, name=self.name)
            container.with_command(list(p.command)).with_exposed_ports(p.port)
            keys = {p.access_key_env: self.access_key_id}
            keys[p.secret_key_env] = self.secret_access_key.reveal()
            container.with_envs(**{**p.env, **keys})
            for path in p.tmpfs:
                container.with_tmpfs_mount(path)
            self._container = container
            container.start()
            host = container.get_container_host_ip()
            # Docker publishes on 0.0.0.0; "localhost" may resolve to ::1 first.
            host = "127.0.0.1" if host == "localhost" else host
            self._url = f"http://{host}:{container.get_exposed_port(p.port)}"
            self._wait_ready()
        except BaseException as exc:  # also Ctrl-C: never leave a container behind
            self.close()
            if isinstance(exc, S3Error) or not isinstance(exc, Exception):
                raise
            reason = _one_line(exc, self.secret_access_key)
            raise S3Error(f"container {p.image} did not start: {reason}") from None
        return self.endpoint()

    def _last_log_line(self) -> str:
        try:
            raw = self._container.get_wrapped_container().logs(tail=1) if self._container else b""
        except Exception:  # the engine went away: nothing to show
            raw = b""
        text = bytes(raw).decode(errors="replace").strip() or "no log"
        return text.replace(self.secret_access_key.reveal(), "***")[:_MAX_REASON_CHARS]

    def _wait_ready(self) -> None:
        from lancesync_bench.s3.endpoint import create_bucket_when_ready

        def check_alive() -> None:
            if not self.running:
                raise S3Error(
                    f"container {self.preset.image} exited while starting; "
                    f"its last log line: {self._last_log_line()}"
                )

        last_error = create_bucket_when_ready(
            self.endpoint().client(_READY_TIMEOUTS),
            self.bucket,
            timeout_s=self.start_timeout_s,
            poll_s=0.2,
            check_alive=check_alive,
            describe=lambda exc: _one_line(exc, self.secret_access_key),
        )
        if last_error is not None:
            raise S3Error(
                f"container {self.preset.image} did not answer S3 on {self._url} within "
                f"{self.start_timeout_s:.0f} s (last error: {last_error})"
            )

    def close(self) -> None:
        """Remove the container (idempotent); looks it up by name if start was cut short."""
        container, self._container = self._container, None
        self._url = None
        if container is None:
            return
        try:
            container.get_wrapped_container().remove(force=True, v=True)
        except Exception:
            self._remove_by_name()
        finally:
            with contextlib.suppress(Exception):
                container.get_docker_client().client.close()

    def _remove_by_name(self) -> None:
        try:
            import docker

            client = docker.from_env(timeout=_PING_TIMEOUT_S * 10)
        except Exception:
            return  # no engine: nothing can have been created
        with contextlib.closing(client), contextlib.suppress(Exception):
            client.containers.get(self.name).remove(force=True, v=True)

    def __enter__(self) -> ContainerS3:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"running on {self._url}" if self._url else "stopped"
        return f"ContainerS3({self.preset.image!r}, {state}, bucket={self.bucket!r})"
