"""Baselines: what a user could run instead of the storage service, measured in the same cell.

Each baseline runs inside the cell that measures the service: same S3 server, same delay
proxy and network profile, same seeded rows, same ids and query vectors. Its samples carry
``path="baseline:<name>"`` so reports can set them beside the service's figures.

* ``baseline:lancedb-local``: plain LanceDB on local disk. A table of the same rows
  (``id``, ``text``, ``vector``, ``metadata``), with the indexes the service builds
  (BTREE on ``id``; IVF_FLAT on ``vector`` from 5 000 rows), via the service's own
  :meth:`~lancesync_bench.storage.doctable.DocTable.ensure_indexes` so the two never drift,
  and prewarmed as the service prewarms its own (:class:`PlainLanceDB`).
* ``baseline:lancedb-s3``: the same table created directly on S3 through the proxy, no
  cache. The proxy counts the requests of every operation.
* ``baseline:aws-s3-sync`` / ``baseline:rclone-sync``: after the service's local table took
  one new document, copy its folder to S3 with ``aws s3 sync --delete`` or ``rclone sync``
  (the same table change the service's backup or sync pushed). Each copy is a new process:
  its start-up alone (``aws --version``, ``rclone version``) is timed beside it as
  :data:`TOOL_START`, so reports can give the transfer net of it.

The two command-line tools may be missing: :func:`tool_skip_reasons` says why (with the
one-line install), and the cell records that instead of failing. Credentials reach a tool
only through its process environment, never its command line, and never a log.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lancesync_bench.bench.recorder import Recorder
from lancesync_bench.errors import LanceSyncError
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.storage.doctable import DocTable, MaintenancePolicy
from lancesync_bench.storage.schema import TABLE_NAME, sql_string
from lancesync_bench.workload import Workload

__all__ = [
    "AWS_S3_SYNC",
    "INSTALL_HINTS",
    "LANCEDB_LOCAL",
    "LANCEDB_S3",
    "NOT_ON_PATH",
    "RCLONE_SYNC",
    "SYNC_TOOLS",
    "TOOL_START",
    "BaselineError",
    "FolderSync",
    "LanceDBInputs",
    "PlainLanceDB",
    "record_skip",
    "start_tools",
    "time_tools",
    "tool_skip_reasons",
]

LANCEDB_LOCAL = "baseline:lancedb-local"  # one of recorder.NO_S3_PATHS
LANCEDB_S3 = "baseline:lancedb-s3"
AWS_S3_SYNC = "baseline:aws-s3-sync"
RCLONE_SYNC = "baseline:rclone-sync"
SYNC_TOOLS = (AWS_S3_SYNC, RCLONE_SYNC)
# The operation that times a tool's process start-up alone (``aws --version``).
TOOL_START = "tool_start"

# The service searches with nprobes 20 (DocTable.search); the baseline probes as many
# partitions, so both trade recall for speed alike.
_NPROBES = 20
_TOP_K = 10
# A one-row incremental copy takes well under a second (FACTS: 0.08-0.6 s); a full first
# copy of a 100k-row table under 2 s. Two minutes means the tool hangs, not that it is slow.
_TOOL_TIMEOUT_S = 120.0
# The rclone remote name its environment configures (RCLONE_CONFIG_<NAME>_...).
_RCLONE_REMOTE = "LSBENCH"
# How much of a failing tool's stderr an error message quotes.
_STDERR_CHARS = 300
_BINARIES = {AWS_S3_SYNC: "aws", RCLONE_SYNC: "rclone"}
# How a skip reason says the tool is not installed (read back by bench.summary).
NOT_ON_PATH = "not found on PATH"
_VERSION_ARGS = {AWS_S3_SYNC: ["--version"], RCLONE_SYNC: ["version"]}
INSTALL_HINTS = {
    AWS_S3_SYNC: "pip install awscli (or the project's 'baselines' extra)",
    RCLONE_SYNC: "apt-get install -y rclone (Debian's package)",
}


class BaselineError(LanceSyncError):
    """A baseline tool failed or hung; the message quotes its (redacted) error output."""


def record_skip(rec: Recorder, what: str, reason: str) -> None:
    """Note in the cell's extras (``skipped``) that ``what`` was not measured, and why."""
    rec.extras.setdefault("skipped", {})[what] = reason


# -- plain LanceDB ----------------------------------------------------------------------


@dataclass(frozen=True)
class LanceDBInputs:
    """What a LanceDB baseline reads and writes: the service cell's own ids and queries."""

    workload: Workload
    size: int
    ids: Sequence[str]  # point-read ids, warm-up first (as the service's cell uses them)
    queries: npt.NDArray[np.float32]  # query vectors, warm-up first
    add_start: int  # first row number of the documents add_1 appends
    adds: int  # how many documents add_1 may append (warm-up included)


class PlainLanceDB:
    """Plain LanceDB at ``uri``, set up as the service's table is, timed call by call.

    :meth:`open` creates the table from the cell's rows, builds the service's indexes and
    loads them into LanceDB's cache (the service prewarms its indexes after every build,
    so the baseline does too); the cell then times :meth:`point`, :meth:`search` and
    :meth:`add_one` in rounds alternating with the service's.
    """

    def __init__(
        self,
        path: str,
        uri: str,
        inputs: LanceDBInputs,
        *,
        storage_options: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.uri = uri
        self.inputs = inputs
        self._options = dict(storage_options or {})
        self._table: Any = None
        self._rows: Any = None

    async def open(self) -> PlainLanceDB:
        """Create, index and prewarm the table (untimed)."""
        import lancedb

        wl, size = self.inputs.workload, self.inputs.size
        db = await lancedb.connect_async(self.uri, storage_options=self._options)
        self._table = await db.create_table(
            TABLE_NAME, data=wl.arrow_table(0, size, metadata="json")
        )
        doc = DocTable(lambda: self._table, dim=wl.dim)
        await doc.ensure_indexes(MaintenancePolicy())
        await doc.prewarm()
        self._rows = wl.arrow_table(self.inputs.add_start, self.inputs.adds, metadata="json")
        return self

    def close(self) -> None:
        if self._table is not None:
            self._table.close()
            self._table = None

    async def point(self, i: int) -> Any:
        ids = self.inputs.ids
        where = f"id = {sql_string(ids[i % len(ids)])}"
        return await self._table.query().where(where).limit(1).to_arrow()

    async def search(self, i: int) -> list[str]:
        vectors = self.inputs.queries
        q = self._table.query().nearest_to(vectors[i % len(vectors)]).nprobes(_NPROBES)
        found = await q.limit(_TOP_K).to_arrow()
        return [str(x) for x in found.column("id").to_pylist()]

    async def add_one(self, i: int) -> Any:
        return await self._table.add(self._rows.slice(i % self._rows.num_rows, 1))


# -- folder-copy tools ------------------------------------------------------------------


def tool_skip_reasons(
    which: Callable[[str], str | None] = shutil.which,
) -> dict[str, str]:
    """For each sync-tool baseline whose binary is not on PATH: why it is skipped."""
    return {
        path: f"{binary!r} {NOT_ON_PATH}; install it with {INSTALL_HINTS[path]}"
        for path, binary in _BINARIES.items()
        if which(binary) is None
    }


def _clean_env(base: Mapping[str, str]) -> dict[str, str]:
    # Nothing of the caller's own AWS or rclone setup may leak in: a profile, a CA bundle
    # (rclone 1.60 fails on AWS_CA_BUNDLE) or keys for another account would change what
    # is measured, or where the data goes.
    return {k: v for k, v in base.items() if not k.startswith(("AWS_", "RCLONE_"))}


def aws_invocation(
    exe: str,
    source: Path,
    ep: S3Endpoint,
    dest_key: str,
    *,
    scratch: Path,
    base_env: Mapping[str, str],
) -> tuple[list[str], dict[str, str]]:
    """Command line and environment of ``aws s3 sync --delete SOURCE s3://bucket/dest_key``.

    ``--delete`` mirrors the folder as ``rclone sync`` does (Lance's cleanup removes files).
    Config and credential files point into ``scratch`` (absent), so only the environment's
    keys are used and no instance metadata service is asked.
    """
    argv = [
        exe,
        "s3",
        "sync",
        str(source),
        f"s3://{ep.bucket}/{dest_key}",
        "--delete",
        "--only-show-errors",
        "--no-progress",
    ]
    if ep.url is not None:
        argv += ["--endpoint-url", ep.url]
    env = _clean_env(base_env) | {
        "AWS_ACCESS_KEY_ID": ep.access_key_id,
        "AWS_SECRET_ACCESS_KEY": ep.secret_access_key.reveal(),
        "AWS_DEFAULT_REGION": ep.region,
        "AWS_CONFIG_FILE": str(scratch / "aws-config-absent"),
        "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "aws-credentials-absent"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return argv, env


def rclone_invocation(
    exe: str,
    source: Path,
    ep: S3Endpoint,
    dest_key: str,
    *,
    scratch: Path,
    base_env: Mapping[str, str],
) -> tuple[list[str], dict[str, str]]:
    """Command line and environment of ``rclone sync SOURCE REMOTE:bucket/dest_key``.

    The remote is configured entirely by ``RCLONE_CONFIG_<NAME>_*`` variables (provider
    ``Other``: a generic S3 server); the config file points into ``scratch`` (absent).
    """
    prefix = f"RCLONE_CONFIG_{_RCLONE_REMOTE}_"
    argv = [exe, "sync", str(source), f"{_RCLONE_REMOTE}:{ep.bucket}/{dest_key}", "-q"]
    env = _clean_env(base_env) | {
        "RCLONE_CONFIG": str(scratch / "rclone-absent.conf"),
        f"{prefix}TYPE": "s3",
        f"{prefix}PROVIDER": "Other",
        f"{prefix}ACCESS_KEY_ID": ep.access_key_id,
        f"{prefix}SECRET_ACCESS_KEY": ep.secret_access_key.reveal(),
        f"{prefix}REGION": ep.region,
    }
    if ep.url is not None:
        env[f"{prefix}ENDPOINT"] = ep.url
    return argv, env


_INVOCATIONS = {AWS_S3_SYNC: aws_invocation, RCLONE_SYNC: rclone_invocation}


class FolderSync:
    """One sync tool copying one local folder to one S3 location, run as a child process."""

    def __init__(
        self, path: str, source: Path, ep: S3Endpoint, dest_key: str, *, scratch: Path
    ) -> None:
        if path not in _INVOCATIONS:
            raise ValueError(f"unknown sync tool baseline {path!r}; allowed: {SYNC_TOOLS}")
        exe = shutil.which(_BINARIES[path])
        if exe is None:
            raise BaselineError(tool_skip_reasons()[path])
        self.path = path
        self._secret = ep.secret_access_key.reveal()
        self._argv, self._env = _INVOCATIONS[path](
            exe, source, ep, dest_key, scratch=scratch, base_env=os.environ
        )
        self._version_argv = [exe, *_VERSION_ARGS[path]]

    @property
    def argv(self) -> list[str]:
        """The command line (it never holds a credential)."""
        return list(self._argv)

    async def run(self) -> None:
        """Copy the folder once; BaselineError when the tool fails or hangs."""
        await self._exec(self._argv)

    async def start_only(self) -> None:
        """Start the tool and let it print its version: the process start-up a copy pays."""
        await self._exec(self._version_argv)

    async def _exec(self, argv: Sequence[str]) -> None:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=self._env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), _TOOL_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise BaselineError(
                f"{self.path}: did not finish within {_TOOL_TIMEOUT_S:g} s"
            ) from None
        if proc.returncode != 0:
            text = err.decode("utf-8", "replace").strip().replace(self._secret, "***")
            raise BaselineError(
                f"{self.path}: exited with status {proc.returncode}: {text[-_STDERR_CHARS:]}"
            )


async def start_tools(
    rec: Recorder, source: Path, ep: S3Endpoint, dest_key: str, *, scratch: Path
) -> list[FolderSync]:
    """The installed folder-copy tools, each after one untimed full copy of ``source``.

    ``dest_key`` holds ``{tool}``, replaced by each tool's name so that no two tools share
    a destination. Missing or failing tools are recorded with :func:`record_skip`.
    """
    missing = tool_skip_reasons()
    for path, reason in missing.items():
        record_skip(rec, path, reason)
    tools = []
    for path in SYNC_TOOLS:
        if path in missing:
            continue
        dest = dest_key.replace("{tool}", path.removeprefix("baseline:"))
        tool = FolderSync(path, source, ep, dest, scratch=scratch)
        try:
            await tool.run()  # the first copy moves the whole table: not the figure wanted
        except BaselineError as exc:
            record_skip(rec, path, str(exc))
            continue
        tools.append(tool)
    return tools


async def time_tools(
    rec: Recorder, tools: Sequence[FolderSync], operation: str, iteration: int
) -> list[FolderSync]:
    """Time one copy by each tool, then its start-up alone (:data:`TOOL_START`).

    A tool that fails is recorded as skipped and dropped.
    """
    kept = []
    for tool in tools:

        async def copy(_: int, tool: FolderSync = tool) -> None:
            await tool.run()

        async def start(_: int, tool: FolderSync = tool) -> None:
            await tool.start_only()

        try:
            await rec.run(operation, copy, repetitions=1, path=tool.path, first_iteration=iteration)
            await rec.run(
                TOOL_START, start, repetitions=1, path=tool.path, first_iteration=iteration
            )
        except BaselineError as exc:
            record_skip(rec, tool.path, str(exc))
            continue
        kept.append(tool)
    return kept
