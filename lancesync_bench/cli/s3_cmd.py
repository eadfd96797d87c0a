"""``lancesync-bench s3``: serve the embedded S3 server, or probe the chosen S3 endpoint."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from lancesync_bench.errors import ConfigError, S3Error
from lancesync_bench.s3.embedded import DEFAULT_BUCKET, EmbeddedSeaweedFS
from lancesync_bench.s3.select import KINDS, validate_bucket

__all__ = ["register"]

# How often the foreground server is checked for an unexpected exit while waiting for a
# signal; signals themselves end the wait at once.
_POLL_S = 0.5
# The variables `serve` prints, in the order a reader expects them. AWS_ENDPOINT_URL is
# what boto3 and the aws CLI read; S3_ENDPOINT_URL is what this package's config reads.
_EXPORTS = (
    "S3_ENDPOINT_URL",
    "AWS_ENDPOINT_URL",
    "S3_BUCKET",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
)

_SERVE_HELP = """\
Start the embedded SeaweedFS S3 server on 127.0.0.1 in the foreground and print
`export VAR=value` lines (endpoint, bucket, generated keys, region) that point boto3,
the aws CLI and lancesync-bench at it. The secret key is printed on purpose: it is
generated for this server and the only way to use it. Ctrl-C or SIGTERM stops the
server; a temporary data folder is then removed (a --data-dir is kept)."""

_PROBE_HELP = """\
Choose an S3 endpoint the way benchmarks do, say which and why, check that its keys and
bucket work, and test whether it enforces conditional puts (a second PUT with
If-None-Match: * must get HTTP 412). Lance needs that for safe concurrent commits.
Exit status: 0 enforced, 1 not enforced or unusable, 2 configuration error."""


def _bucket(value: str) -> str:
    try:
        return validate_bucket(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``s3`` command with its ``serve`` and ``probe`` actions."""
    parser = subparsers.add_parser(
        "s3",
        help="serve the embedded S3 server, or probe an S3 endpoint",
        description="S3 endpoints for lancesync-bench: embedded SeaweedFS, MinIO via "
        "testcontainers, or an external endpoint from the environment.",
    )
    parser.set_defaults(func=lambda _args: _usage(parser))
    actions = parser.add_subparsers(title="actions", metavar="ACTION")

    serve = actions.add_parser(
        "serve",
        help="run the embedded S3 server in the foreground and print its exports",
        description=_SERVE_HELP,
    )
    serve.add_argument(
        "--bucket",
        type=_bucket,
        default=DEFAULT_BUCKET,
        help=f"bucket to create (default: {DEFAULT_BUCKET})",
    )
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the server's data in DIR and leave it there on exit "
        "(default: a temporary folder, removed on exit)",
    )
    serve.set_defaults(func=_serve)

    probe = actions.add_parser(
        "probe",
        help="choose an S3 endpoint, check access and test conditional puts",
        description=_PROBE_HELP,
    )
    probe.add_argument(
        "--s3",
        choices=KINDS,
        default="auto",
        help="auto: MinIO via testcontainers where Docker answers, else embedded SeaweedFS; "
        "embedded; minio; external: read S3_ENDPOINT_URL, S3_BUCKET, AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY and AWS_REGION from the environment (default: auto)",
    )
    probe.add_argument(
        "--bucket",
        type=_bucket,
        default=DEFAULT_BUCKET,
        help=f"bucket created on a server started here (default: {DEFAULT_BUCKET}); "
        "an external endpoint uses S3_BUCKET",
    )
    probe.set_defaults(func=_probe)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _serve(args: argparse.Namespace) -> int:
    data_dir: Path | None = args.data_dir
    if data_dir is not None:
        if data_dir.exists() and not data_dir.is_dir():
            raise ConfigError(f"--data-dir {str(data_dir)!r} exists and is not a directory")
        data_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = EmbeddedSeaweedFS(bucket=args.bucket, data_dir=data_dir)
    try:
        env = server.start().env()
        env["AWS_ENDPOINT_URL"] = env["S3_ENDPOINT_URL"]
        print(f"# SeaweedFS {server.version} serves S3 at {server.url}; Ctrl-C stops it")
        print(f"# data: {server.data_dir}" + ("" if data_dir else " (removed on exit)"))
        for name in _EXPORTS:
            print(f"export {name}={shlex.quote(env[name])}")
        sys.stdout.flush()
        while not stop.wait(_POLL_S):
            if not server.running:
                raise S3Error(f"SeaweedFS exited unexpectedly; last log line: {_last_line(server)}")
    finally:
        server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("# stopped", file=sys.stderr)
    return 0


def _last_line(server: EmbeddedSeaweedFS) -> str:
    try:
        lines = server.log_path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no log"


def _probe(args: argparse.Namespace) -> int:
    from lancesync_bench.s3.probe import check_access, probe_conditional_put
    from lancesync_bench.s3.select import open_s3

    with open_s3(args.s3, bucket=args.bucket) as selection:
        endpoint = selection.endpoint
        version = f" {endpoint.provider_version}" if endpoint.provider_version else ""
        print(f"server: {endpoint.provider}{version} at {endpoint.url or 'AWS S3'}")
        print(f"chosen: {selection.kind} ({selection.reason})")
        check_access(endpoint)
        print(f"access: ok (bucket {endpoint.bucket!r}, key id {endpoint.access_key_id!r})")
        result = probe_conditional_put(endpoint)
        state = "enforced" if result.enforced else "NOT enforced"
        print(f"conditional put (If-None-Match: *): {state}: {result.detail}")
    return 0 if result.enforced else 1
