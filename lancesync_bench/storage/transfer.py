"""Verified, ordered file transfers between a local Lance table folder and S3.

Lance writes every file of a table once and never changes it; a version exists once its
``_versions/*.manifest`` is written. The engine leans on exactly that:

* uploads send data, deletion, index and transaction files first (in parallel), then a
  small *sidecar* record of their sizes and SHA-256 sums, and the manifests last, each with
  ``If-None-Match: *``. A manifest visible on S3 therefore always means that every file it
  references is there, and two writers can never both claim one version.
* downloads land in a temporary folder, are checked against the sidecar's size and SHA-256
  (or, for files some other Lance writer made, against size and the MD5 ETag of a
  single-part upload), and only then are renamed into the table folder.

``_versions/latest_version_hint.json`` is the one mutable file Lance keeps locally; it is a
hint only and is never transferred.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from lancesync_bench.errors import (
    CommitOutcomeUnknown,
    IntegrityError,
    MissingChecksum,
    S3Error,
    S3Unavailable,
    SyncConflict,
)
from lancesync_bench.s3.fast import fast_client

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

__all__ = [
    "FileInfo",
    "RemoteTable",
    "TransferStats",
    "is_manifest",
    "latest_version",
    "local_files",
    "manifest_version",
    "newest_manifest",
    "same_bytes",
    "sha256_file",
]

_log = logging.getLogger(__name__)
_R = TypeVar("_R")

# A few requests in parallel (a commit's data and transaction files, a handful of HEADs) run
# on one pool kept for the process: starting and joining threads for each call took 1.2 ms
# of a 12-13 ms one-document push (p50, 150 pushes each way, alternating, loopback).
# Larger transfers get a pool of their own, so that a long download never queues a commit.
_SMALL_BATCH = 4
_small_pools: dict[int, ThreadPoolExecutor] = {}  # by process id: a forked child makes its own


def _small_batch_pool() -> ThreadPoolExecutor:
    """The process's pool for small batches. No lock (a forked child could inherit it held):
    two threads racing here make two pools, and the one not kept never started a thread."""
    pool = _small_pools.get(os.getpid())
    if pool is None:
        new = ThreadPoolExecutor(max_workers=16, thread_name_prefix="lancesync-s3")
        pool = _small_pools.setdefault(os.getpid(), new)
    return pool


_U64_MAX = 2**64 - 1
_HINT = "_versions/latest_version_hint.json"
# Files at or above this size go up in 8 MiB parts; below it one PUT is cheaper.
_MULTIPART_THRESHOLD = 16 << 20
_LEAN_PUT_MAX = 1 << 20  # files up to this size go up in one request of the lean client
_PART_SIZE = 8 << 20
_CHUNK = 1 << 20


_SIDECAR = "sidecar"
# S3 allows 2 KB of user metadata per object; a record longer than this goes to a sidecar.
_MAX_INLINE_RECORD = 1500


def encode_files(files: Iterable[FileInfo]) -> str:
    """``path|size|sha256`` entries joined by ``;`` (ASCII, fit for an S3 metadata header)."""
    return ";".join(f"{f.path}|{f.size}|{f.sha256}" for f in files)


def decode_files(record: str, where: str) -> list[FileInfo]:
    """Parse :func:`encode_files` output; a damaged record is an :class:`IntegrityError`."""
    files = []
    for entry in filter(None, record.split(";")):
        try:
            path, size, sha = entry.split("|")
            files.append(FileInfo(path, int(size), sha256=sha))
        except ValueError:
            raise IntegrityError(f"{where}: damaged file record {entry[:80]!r}") from None
    return files


def manifest_version(rel: str) -> int | None:
    """The version number a ``_versions/<n>.manifest`` path names, else None.

    Lance's newer naming stores ``u64::MAX - version`` so that names sort newest first;
    the older naming stores the version itself.
    """
    number = _manifest_number(rel)
    if number is None:
        return None
    return _U64_MAX - number if _sorts_newest_first(number) else number


def _manifest_number(rel: str) -> int | None:
    """The number in a ``_versions/<n>.manifest`` name, else None."""
    if not rel.startswith("_versions/") or not rel.endswith(".manifest"):
        return None
    stem = rel[len("_versions/") : -len(".manifest")]
    return int(stem) if stem.isdigit() else None


def _sorts_newest_first(number: int) -> bool:
    """Whether a manifest number uses Lance's newer naming (``u64::MAX - version``)."""
    return number > 2**63


def is_manifest(rel: str) -> bool:
    """Whether ``rel`` is a version manifest."""
    return manifest_version(rel) is not None


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _scan(directory: str, prefix: str, out: dict[str, int], known: dict[str, int]) -> None:
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        rel = prefix + entry.name
        if entry.is_dir(follow_symlinks=False):
            _scan(entry.path, rel + "/", out, known)
        elif rel in known:
            out[rel] = known[rel]
        elif rel != _HINT and not entry.name.startswith(".lancesync-"):
            with contextlib.suppress(FileNotFoundError):  # removed by a cleanup meanwhile
                out[rel] = entry.stat(follow_symlinks=False).st_size


def local_files(table_dir: Path, known: dict[str, int] | None = None) -> dict[str, int]:
    """Relative path -> size of every transferable file in a local table folder.

    ``_versions/`` is scanned first: Lance writes a version's files before its manifest, so
    every manifest seen here has all its files on disk by the time the rest is scanned, even
    while another task commits.

    ``known`` is an earlier result for the same folder, taken when no write was under way:
    Lance never rewrites a file under the same name, so those sizes are reused and only new
    names cost a ``stat`` (a commit adds a handful of files to thousands).
    """
    known = known or {}
    files: dict[str, int] = {}
    root = str(table_dir)
    _scan(os.path.join(root, "_versions"), "_versions/", files, known)
    try:
        tops = [e for e in os.scandir(root) if e.name != "_versions"]
    except FileNotFoundError:
        return files
    for entry in tops:
        if entry.is_dir(follow_symlinks=False):
            _scan(entry.path, entry.name + "/", files, known)
        elif not entry.name.startswith(".lancesync-"):
            files[entry.name] = known.get(entry.name) or entry.stat().st_size
    return files


def latest_version(files: Iterable[str]) -> int:
    """The newest manifest version among relative paths (0 when there is none)."""
    return newest_manifest(files)[0]


def newest_manifest(files: Iterable[str]) -> tuple[int, str | None]:
    """The newest manifest version among relative paths and its path ((0, None): none)."""
    found = [(v, r) for r in files if (v := manifest_version(r)) is not None]
    return max(found) if found else (0, None)


def same_bytes(path: Path, info: FileInfo) -> bool:
    """Whether a local file holds the bytes of a remote object (MD5 against a plain ETag)."""
    if not info.etag or "-" in info.etag:
        return False  # a multipart ETag is not an MD5 of the content
    try:
        digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    except OSError:
        return False
    return digest == info.etag


# A torn manifest another writer left (see RemoteTable._put_manifest) is repaired once it
# is this old: no upload in flight lasts that long.
TORN_REPAIR_AFTER_S = 60.0


@dataclass(frozen=True)
class _Held:
    """An object as S3 returned it: bytes, user metadata, when it was written."""

    body: bytes
    meta: dict[str, str]
    modified: datetime | None

    @property
    def torn(self) -> bool:
        """Bytes that are not the ones their upload recorded (an upload cut short)."""
        sha = self.meta.get("sha256")
        return sha is not None and hashlib.sha256(self.body).hexdigest() != sha

    def replaceable_by(self, writer: str) -> bool:
        """Torn, and left by ``writer`` itself or long enough ago."""
        if not self.torn:
            return False
        if self.meta.get("lancesync-writer") == writer:
            return True
        if self.modified is None:
            return False
        return (datetime.now(UTC) - self.modified).total_seconds() > TORN_REPAIR_AFTER_S


@dataclass(frozen=True)
class FileInfo:
    """A table file as S3 or a sidecar describes it."""

    path: str
    size: int
    sha256: str | None = None
    etag: str | None = None
    # A download must find a SHA-256 (here or stored with the object by the push that
    # uploaded it): set for files of this project's versions whose record was not read.
    needs_sha256: bool = False


@dataclass
class TransferStats:
    """Requests and bytes of one sync-like call; safe to update from transfer threads."""

    requests: Counter[str] = field(default_factory=Counter)
    files_up: int = 0
    bytes_up: int = 0
    files_down: int = 0
    bytes_down: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, kind: str, n: int = 1) -> None:
        """Record ``n`` requests of ``kind`` (GET, PUT, LIST, HEAD, DELETE, POST)."""
        with self._lock:
            self.requests[kind] += n

    def up(self, size: int) -> None:
        """Record one uploaded file."""
        with self._lock:
            self.files_up += 1
            self.bytes_up += size

    def down(self, size: int) -> None:
        """Record one downloaded file."""
        with self._lock:
            self.files_down += 1
            self.bytes_down += size

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "requests": dict(self.requests),
            "requests_total": sum(self.requests.values()),
            "files_up": self.files_up,
            "bytes_up": self.bytes_up,
            "files_down": self.files_down,
            "bytes_down": self.bytes_down,
        }


_HINTS = {
    "NoSuchBucket": "; the bucket does not exist: check S3_BUCKET",
    "InvalidAccessKeyId": "; check AWS_ACCESS_KEY_ID",
    "SignatureDoesNotMatch": "; check AWS_SECRET_ACCESS_KEY",
    "AccessDenied": "; the keys lack permission for this bucket or prefix",
}


def _s3_failure(exc: Exception, what: str) -> S3Error:
    """Turn a botocore failure into this package's error, without leaking credentials."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "Unknown")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status is not None and int(status) >= 500:
            return S3Unavailable(f"{what}: S3 answered {status} {code}")
        hint = _HINTS.get(code, "")
        return S3Error(f"{what}: S3 refused with {code} (HTTP {status}){hint}")
    return S3Unavailable(f"{what}: S3 is unreachable ({type(exc).__name__})")


class RemoteTable:
    """The S3 side of one Lance table, and verified transfers to and from a local folder."""

    def __init__(
        self,
        client: S3Client | Callable[[], S3Client],
        bucket: str,
        table_key: str,
        sidecar_key: str,
        *,
        workers: int = 8,
    ) -> None:
        # A factory defers building the boto3 client (hundreds of ms) until S3 is first used:
        # a local-first store that never syncs in a session never pays for it.
        self._client = client
        self.bucket = bucket
        self.table_key = table_key.strip("/")
        self.sidecar_key = sidecar_key.strip("/")
        self.workers = workers

    @property
    def client(self) -> S3Client:
        """The boto3 client (built on first use when a factory was given)."""
        if callable(self._client) and not hasattr(self._client, "put_object"):
            self._client = self._client()
        return self._client  # type: ignore[return-value]

    @property
    def lean(self) -> Any:
        """What sends a sync's small requests (one-key LISTs, small PUTs): the lean client
        that goes with the boto3 one (:mod:`lancesync_bench.s3.fast`; same answers, same
        exceptions), or the boto3 client itself where there is none."""
        client = self.client
        return fast_client(client) or client

    # -- listing -------------------------------------------------------------------------

    def _list(self, prefix: str, stats: TransferStats) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            stats.count("LIST")
            try:
                page = self.client.list_objects_v2(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise _s3_failure(exc, f"listing s3://{self.bucket}/{prefix}") from exc
            items.extend(page.get("Contents", []))  # type: ignore[arg-type]
            if not page.get("IsTruncated"):
                return items
            token = page.get("NextContinuationToken")

    def list_versions(self, stats: TransferStats) -> dict[int, FileInfo]:
        """Version -> manifest file, from one listing of ``_versions/``."""
        out: dict[int, FileInfo] = {}
        for item in self._list(f"{self.table_key}/_versions/", stats):
            rel = item["Key"][len(self.table_key) + 1 :]
            version = manifest_version(rel)
            if version is not None:
                out[version] = FileInfo(
                    rel, int(item["Size"]), etag=item.get("ETag", "").strip('"')
                )
        return out

    def _first_manifest(self, stats: TransferStats) -> tuple[FileInfo | None, bool]:
        """The first key of ``_versions/`` (one one-key LIST) and whether it is the newest
        version: Lance's current manifest names sort newest first, its older ones do not."""
        stats.count("LIST")
        prefix = f"{self.table_key}/_versions/"
        try:
            page = self.lean.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        except (ClientError, BotoCoreError) as exc:
            raise _s3_failure(exc, f"listing s3://{self.bucket}/{prefix}") from exc
        first = page.get("Contents", [])
        if not first:
            return None, True
        rel = first[0]["Key"][len(self.table_key) + 1 :]
        info = FileInfo(rel, int(first[0]["Size"]), etag=first[0].get("ETag", "").strip('"'))
        number = _manifest_number(rel)
        return info, number is not None and _sorts_newest_first(number)

    def latest_version(self, stats: TransferStats) -> int | None:
        """The newest remote version (None: no manifest), from a one-key listing when it can:
        one small request however many versions S3 keeps. Tables with the older naming fall
        back to the full listing."""
        info, newest = self._first_manifest(stats)
        if info is None:
            return None
        if newest:
            return manifest_version(info.path)
        return max(self.list_versions(stats), default=None)

    def newest_manifest(self, stats: TransferStats) -> FileInfo | None:
        """The newest manifest from a one-key listing; None when S3 holds none, or when the
        table's manifest names do not sort newest first (ask :meth:`list_versions`)."""
        info, newest = self._first_manifest(stats)
        return info if newest else None

    def head_file(self, rel: str, stats: TransferStats) -> FileInfo | None:
        """A remote file's size and ETag (one HEAD); None when S3 does not hold it."""
        key = f"{self.table_key}/{rel}"
        stats.count("HEAD")
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise _s3_failure(exc, f"reading s3://{self.bucket}/{key}") from exc
        except BotoCoreError as exc:
            raise _s3_failure(exc, f"reading s3://{self.bucket}/{key}") from exc
        return FileInfo(rel, int(head["ContentLength"]), etag=head.get("ETag", "").strip('"'))

    def list_under(self, folder: str, stats: TransferStats) -> dict[str, FileInfo]:
        """The remote files under ``folder`` (a relative path ending in ``/``)."""
        out: dict[str, FileInfo] = {}
        for item in self._list(f"{self.table_key}/{folder}", stats):
            rel = item["Key"][len(self.table_key) + 1 :]
            out[rel] = FileInfo(rel, int(item["Size"]), etag=item.get("ETag", "").strip('"'))
        return out

    def list_files(self, stats: TransferStats) -> dict[str, FileInfo]:
        """Every file of the remote table (manifests included)."""
        out: dict[str, FileInfo] = {}
        for item in self._list(f"{self.table_key}/", stats):
            rel = item["Key"][len(self.table_key) + 1 :]
            if rel and rel != _HINT:
                out[rel] = FileInfo(rel, int(item["Size"]), etag=item.get("ETag", "").strip('"'))
        return out

    # -- sidecars ------------------------------------------------------------------------

    def _sidecar_name(self, version: int, manifest_sha: str) -> str:
        return f"{self.sidecar_key}/{version:020d}-{manifest_sha[:16]}.json"

    def _get_sidecar(self, version: int, manifest_sha: str, stats: TransferStats) -> str:
        key = self._sidecar_name(version, manifest_sha)
        return self._get_bytes(key, stats).decode("ascii", "replace")

    # -- upload --------------------------------------------------------------------------

    def _put_file(self, local: Path, rel: str, sha: str, stats: TransferStats) -> None:
        key = f"{self.table_key}/{rel}"
        size = local.stat().st_size
        try:
            if size <= _LEAN_PUT_MAX:
                stats.count("PUT")
                self.lean.put_object(
                    Bucket=self.bucket, Key=key, Body=local.read_bytes(), Metadata={"sha256": sha}
                )
            elif size < _MULTIPART_THRESHOLD:
                stats.count("PUT")
                with open(local, "rb") as f:
                    self.client.put_object(
                        Bucket=self.bucket, Key=key, Body=f, Metadata={"sha256": sha}
                    )
            else:
                from boto3.s3.transfer import TransferConfig

                parts = -(-size // _PART_SIZE)
                stats.count("POST", 2)
                stats.count("PUT", parts)
                self.client.upload_file(
                    str(local),
                    self.bucket,
                    key,
                    ExtraArgs={"Metadata": {"sha256": sha}},
                    Config=TransferConfig(
                        multipart_threshold=_MULTIPART_THRESHOLD,
                        multipart_chunksize=_PART_SIZE,
                        max_concurrency=4,
                    ),
                )
        except (ClientError, BotoCoreError) as exc:
            raise _s3_failure(exc, f"uploading {rel}") from exc
        stats.up(size)

    def _put_manifest(
        self, local: Path, rel: str, sha: str, *, record: str, writer: str, stats: TransferStats
    ) -> bool:
        """Create the manifest only if absent; False when an identical one is already there.

        A failure whose outcome is ambiguous (the request may have reached S3: a connection
        dropped or timed out after sending, a 5xx) is resolved before answering: the key is
        read back, and the version is ours when S3 holds our bytes (by SHA-256), another
        writer's when it holds other bytes, and not committed when it holds nothing. Only
        when that read fails too is the outcome unknown (:class:`CommitOutcomeUnknown`).

        A *torn* manifest under the key (its bytes differ from the SHA-256 recorded with
        them: some S3 servers, SeaweedFS among them, keep an empty object for an upload cut
        short by a killed client, where S3 itself keeps nothing) is no version: it is
        removed and the create tried again when this writer made it, or when it is older
        than :data:`TORN_REPAIR_AFTER_S`.
        """
        key = f"{self.table_key}/{rel}"
        body = local.read_bytes()
        metadata = {"sha256": sha, "lancesync-files": record, "lancesync-writer": writer}
        for attempt in range(2):
            stats.count("PUT")
            try:
                self.lean.put_object(
                    Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", Metadata=metadata
                )
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status == 412:
                    held = self._held(key, stats)
                    if attempt == 0 and (held is None or held.replaceable_by(writer)):
                        if held is not None:
                            self._remove_torn(key, held, stats)
                        continue  # the key is free again: create it
                    self._check_ours(b"" if held is None else held.body, rel, sha, failure=exc)
                    return False  # our own earlier, interrupted push: the version is complete
                if status is not None and int(status) < 500:
                    raise _s3_failure(exc, f"committing {rel}") from exc  # refused: not written
                return self._resolve(key, rel, sha, body, stats, failure=exc)
            except BotoCoreError as exc:
                return self._resolve(key, rel, sha, body, stats, failure=exc)
            stats.up(len(body))
            return True
        raise SyncConflict(
            f"version {manifest_version(rel)} of s3://{self.bucket}/{key}: "
            "the key kept changing under a conditional create"
        )

    def _held(self, key: str, stats: TransferStats) -> _Held | None:
        """What S3 holds under ``key`` (None: nothing)."""
        stats.count("GET")
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            body: bytes = response["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise _s3_failure(exc, f"reading s3://{self.bucket}/{key}") from exc
        except BotoCoreError as exc:
            raise _s3_failure(exc, f"reading s3://{self.bucket}/{key}") from exc
        return _Held(body, dict(response.get("Metadata", {})), response.get("LastModified"))

    def _remove_torn(self, key: str, held: _Held, stats: TransferStats) -> None:
        """Delete a torn manifest (see :meth:`_put_manifest`); nobody can have replaced it
        since it was read, since every manifest is created with ``If-None-Match: *``."""
        _log.warning(
            "s3://%s/%s holds %d bytes whose SHA-256 differs from the one recorded with them "
            "(an upload cut short); removing it and committing the version again",
            self.bucket,
            key,
            len(held.body),
        )
        stats.count("DELETE")
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise _s3_failure(exc, f"removing the torn s3://{self.bucket}/{key}") from exc

    def _check_ours(self, remote: bytes, rel: str, sha: str, *, failure: Exception) -> None:
        """Raise :class:`SyncConflict` (caused by ``failure``) unless ``remote`` is the
        manifest with SHA-256 ``sha``."""
        if hashlib.sha256(remote).hexdigest() != sha:
            raise SyncConflict(
                f"version {manifest_version(rel)} of s3://{self.bucket}/{self.table_key} was "
                "committed by another writer first"
            ) from failure

    def _resolve(
        self,
        key: str,
        rel: str,
        sha: str,
        body: bytes,
        stats: TransferStats,
        *,
        failure: Exception,
    ) -> bool:
        """The truth about a manifest PUT whose answer was lost (see :meth:`_put_manifest`)."""
        what = f"committing {rel}"
        try:
            held = self._held(key, stats)
        except S3Error as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            raise self._unknown(what, failure, cause) from failure
        if held is None:
            raise _s3_failure(failure, what) from failure  # S3 has no such version
        if held.torn:  # no version either; this writer's next push removes it
            raise S3Unavailable(
                f"{_s3_failure(failure, what)}; S3 holds only a cut-short upload of "
                "it, so nothing was committed"
            ) from failure
        self._check_ours(held.body, rel, sha, failure=failure)
        stats.up(len(body))
        return True  # S3 holds our manifest: the commit happened

    @staticmethod
    def _unknown(what: str, failure: Exception, read_failure: Exception) -> CommitOutcomeUnknown:
        return CommitOutcomeUnknown(
            f"{what}: the answer was lost ({_s3_failure(failure, what)}) and reading the "
            f"version back failed too ({_s3_failure(read_failure, 'read-back')}); the next "
            "refresh shows whether S3 holds it"
        )

    def push(
        self,
        local_dir: Path,
        files: Iterable[str],
        stats: TransferStats,
        *,
        writer: str,
        hashes: dict[str, str] | None = None,
        also_record: Iterable[str] = (),
        before_manifests: Callable[[], None] | None = None,
    ) -> list[int]:
        """Upload ``files`` (relative paths) in commit order; returns the versions created.

        Non-manifest files and the sidecars go first, in parallel; manifests follow one at
        a time, oldest first, each with ``If-None-Match: *``. Raises :class:`SyncConflict`
        when another writer owns one of the versions. ``also_record`` names files already on
        S3 that the record must list too: a push resuming one that died after some of its
        files were uploaded cannot tell those apart, and a reader installs only what the
        record lists. ``before_manifests`` runs between the two steps (in this thread); an
        exception it raises stops the push before any manifest is sent.
        """
        hashes = dict(hashes or {})
        rels = sorted(set(files))
        manifests = sorted(
            (r for r in rels if is_manifest(r)), key=lambda r: manifest_version(r) or 0
        )
        others = [r for r in rels if not is_manifest(r)]
        already = sorted(set(also_record) - set(rels))
        for rel in rels + already:
            if rel not in hashes:
                hashes[rel] = sha256_file(local_dir / rel)
        sizes = {r: (local_dir / r).stat().st_size for r in rels + already}
        records: dict[str, str] = {}
        sidecars: list[tuple[str, bytes]] = []
        for i, rel in enumerate(manifests):
            # The first manifest of a push carries the list of every file the push adds: once
            # it is visible, all of them are on S3 (they were uploaded before it). The last
            # carries it too: a reader that installs only the newest version learns from it
            # which files of the push it needs, and their SHA-256, without reading the rest.
            listed = others + already if i in (0, len(manifests) - 1) else []
            record = encode_files([FileInfo(r, sizes[r], hashes[r]) for r in listed])
            if len(record) > _MAX_INLINE_RECORD:
                version = manifest_version(rel)
                assert version is not None
                sidecars.append((self._sidecar_name(version, hashes[rel]), record.encode()))
                record = _SIDECAR
            records[rel] = record

        def put_sidecar(item: tuple[str, bytes]) -> None:
            stats.count("PUT")
            try:
                self.client.put_object(Bucket=self.bucket, Key=item[0], Body=item[1])
            except (ClientError, BotoCoreError) as exc:
                raise _s3_failure(exc, "uploading a sidecar") from exc

        jobs = [lambda r=r: self._put_file(local_dir / r, r, hashes[r], stats) for r in others]
        jobs += [lambda s=s: put_sidecar(s) for s in sidecars]
        self._run_parallel(jobs)
        if before_manifests is not None and manifests:
            before_manifests()
        created = []
        for rel in manifests:
            if self._put_manifest(
                local_dir / rel, rel, hashes[rel], record=records[rel], writer=writer, stats=stats
            ):
                version = manifest_version(rel)
                assert version is not None
                created.append(version)
        return created

    # -- download ------------------------------------------------------------------------

    def recorded_sha256(self, rel: str, stats: TransferStats) -> str | None:
        """The SHA-256 a push recorded in the object's metadata (None: no such record)."""
        stats.count("HEAD")
        key = f"{self.table_key}/{rel}"
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise _s3_failure(exc, f"reading s3://{self.bucket}/{key}") from exc
        value = head.get("Metadata", {}).get("sha256")
        return str(value) if value else None

    def _get_bytes(self, key: str, stats: TransferStats) -> bytes:
        stats.count("GET")
        try:
            data: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise _s3_failure(exc, f"reading s3://{self.bucket}/{key}") from exc
        return data

    def get_manifest(
        self, info: FileInfo, stats: TransferStats
    ) -> tuple[bytes, list[FileInfo] | None]:
        """A remote manifest's bytes (verified) and the files its push added.

        The file list is None for a manifest that plain LanceDB wrote (no record of ours).
        """
        key = f"{self.table_key}/{info.path}"
        stats.count("GET")
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            body: bytes = response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise _s3_failure(exc, f"reading s3://{self.bucket}/{key}") from exc
        meta = response.get("Metadata", {})
        sha = meta.get("sha256")
        if len(body) != info.size and info.size >= 0:
            raise IntegrityError(f"{key}: {len(body)} bytes, S3 listed {info.size}; not installed")
        if sha is not None and hashlib.sha256(body).hexdigest() != sha:
            raise IntegrityError(
                f"{key}: SHA-256 differs from the one recorded at upload; not installed"
            )
        record = meta.get("lancesync-files")
        if sha is None:
            return body, None
        if record is None:  # a later manifest of a push: an empty list (S3 drops the header)
            return body, []
        if record == _SIDECAR:
            version = manifest_version(info.path)
            assert version is not None
            record = self._get_sidecar(version, sha, stats)
        return body, decode_files(record, key)

    def get_records(
        self, infos: Iterable[FileInfo], stats: TransferStats
    ) -> dict[str, list[FileInfo] | None]:
        """The file list each manifest's push recorded (None: written by plain LanceDB), read
        with a HEAD per manifest (and the sidecar where the list was long), in parallel."""
        out: dict[str, list[FileInfo] | None] = {}

        def head(info: FileInfo) -> None:
            key = f"{self.table_key}/{info.path}"
            stats.count("HEAD")
            try:
                meta = self.client.head_object(Bucket=self.bucket, Key=key).get("Metadata", {})
            except (ClientError, BotoCoreError) as exc:
                raise _s3_failure(exc, f"reading s3://{self.bucket}/{key}") from exc
            record, sha = meta.get("lancesync-files"), meta.get("sha256")
            if sha is None or record is None:  # plain LanceDB's, or a push's empty list
                out[info.path] = None if sha is None else []
                return
            if record == _SIDECAR:
                version = manifest_version(info.path)
                assert version is not None
                record = self._get_sidecar(version, sha, stats)
            out[info.path] = decode_files(record, key)

        self._run_parallel([lambda i=i: head(i) for i in infos])
        return out

    def get_manifests(
        self, infos: Iterable[FileInfo], stats: TransferStats
    ) -> dict[str, tuple[bytes, list[FileInfo] | None]]:
        """:meth:`get_manifest` for many manifests at once, in parallel.

        A restore or a first open fetches every version's manifest: one after another that
        was one round trip each (5 s for 160 versions at a 20 ms RTT).
        """
        out: dict[str, tuple[bytes, list[FileInfo] | None]] = {}

        def fetch(info: FileInfo) -> None:
            out[info.path] = self.get_manifest(info, stats)

        self._run_parallel([lambda i=i: fetch(i) for i in infos])
        return out

    def download(self, files: Iterable[FileInfo], table_dir: Path, stats: TransferStats) -> None:
        """Fetch files into ``table_dir``, each verified before it is renamed into place."""
        tmp_dir = table_dir.parent / f".lancesync-tmp-{table_dir.name}"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        jobs = [lambda f=f: self._download_one(f, table_dir, tmp_dir, stats) for f in files]
        self._run_parallel(jobs)

    def _download_one(
        self, info: FileInfo, table_dir: Path, tmp_dir: Path, stats: TransferStats
    ) -> None:
        key = f"{self.table_key}/{info.path}"
        tmp = tmp_dir / f"{uuid.uuid4().hex}.part"
        stats.count("GET")
        sha = hashlib.sha256()
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            # The SHA-256 this project's push stored with the object, for a file no
            # manifest record lists (a version installed without its history).
            recorded = info.sha256 or response.get("Metadata", {}).get("sha256")
            with open(tmp, "wb") as out:
                for chunk in iter(lambda: body.read(_CHUNK), b""):
                    out.write(chunk)
                    sha.update(chunk)
                    md5.update(chunk)
                    size += len(chunk)
        except (ClientError, BotoCoreError) as exc:
            tmp.unlink(missing_ok=True)
            raise _s3_failure(exc, f"downloading {info.path}") from exc
        problem = None
        if info.size >= 0 and size != info.size:  # -1: not listed, the SHA-256 decides
            problem = f"size {size} bytes, expected {info.size}"
        elif recorded is None and info.needs_sha256:
            problem = "no SHA-256 was stored with it, as every push of this project does"
        elif recorded is not None and sha.hexdigest() != recorded:
            problem = "SHA-256 differs from the one recorded at upload"
        elif (
            recorded is None and info.etag and "-" not in info.etag and md5.hexdigest() != info.etag
        ):
            problem = "MD5 differs from the object's ETag"
        if problem:
            tmp.unlink(missing_ok=True)
            error = MissingChecksum if recorded is None and info.needs_sha256 else IntegrityError
            raise error(
                f"s3://{self.bucket}/{key} failed verification ({problem}); it was not installed"
            )
        dest = table_dir / info.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
        stats.down(size)

    def delete(self, rels: Iterable[str], stats: TransferStats) -> int:
        """Delete remote table files (batch requests of up to 1000 keys)."""
        keys = [f"{self.table_key}/{r}" for r in rels]
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            stats.count("POST")
            try:
                self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            except (ClientError, BotoCoreError) as exc:
                raise _s3_failure(exc, "deleting old files") from exc
        return len(keys)

    def in_background(self, fn: Callable[..., _R], *args: Any) -> Future[_R]:
        """Start ``fn(*args)`` (a request or two) on the process's small-batch pool."""
        return _small_batch_pool().submit(fn, *args)

    def _run_parallel(self, jobs: list[Any]) -> None:
        if not jobs:
            return
        if len(jobs) == 1:
            jobs[0]()
            return
        if len(jobs) <= _SMALL_BATCH:
            futures = [_small_batch_pool().submit(job) for job in jobs]
            errors = [f.exception() for f in futures]
        else:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs))) as pool:
                futures = [pool.submit(job) for job in jobs]
                errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
