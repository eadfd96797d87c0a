"""A commit whose answer is lost is resolved before the caller is answered.

S3 may take a request and the answer never arrive (a connection dropped or timed out after
sending). For the request that decides whether a write happened (the S3-primary mode's log
PUT, a manifest PUT), the service reads the key back and reports the truth: written when
S3 holds our bytes, not written when it holds nothing, and "outcome unknown" only when the
read-back fails too. The faults are injected on the service's real boto3 client through
botocore's event hooks (``netem.lost.LostAnswers``): the request reaches the real S3
server (or not), and only the answer is replaced by a dropped connection.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from _storage_helpers import make_docs, open_service, remote_records

from lancesync_bench.chaos.common import torn_uploads
from lancesync_bench.errors import CommitOutcomeUnknown, S3Unavailable
from lancesync_bench.netem.lost import LostAnswers
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.storage.service import LanceDBStorageService

pytestmark = pytest.mark.integration

USER = "lost"
SYNC = "local_primary_s3_sync"
PRIMARY = "s3_primary_local_cache"
BACKUP = "local_primary_s3_backup"


def Faults(svc: LanceDBStorageService) -> LostAnswers:
    """Faults on the service's own boto3 client."""
    return LostAnswers(svc._s3_client())


def doc(doc_id: str) -> dict[str, Any]:
    return {**make_docs(1)[0], "id": doc_id, "text": f"text of {doc_id}"}


async def on_s3(s3: S3Endpoint, doc_id: str) -> bool:
    return any(r["id"] == doc_id for r in (await remote_records(s3, USER)).to_pylist())


def test_s3_primary_write_reports_what_s3_holds_after_a_lost_answer(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    """A write is one PUT of a log object: a lost answer is resolved by reading it back."""

    async def scenario() -> None:
        async with (
            open_service(PRIMARY, tmp_path / "A", s3, device="A") as a,
            open_service(PRIMARY, tmp_path / "B", s3, device="B") as b,
        ):
            await a.add_documents(USER, [doc("seed")])
            faults = Faults(a)

            # 1. The log PUT reached S3, its answer was lost: read back, ours, acknowledged.
            faults.lose("PutObject", ".wal/")
            assert await a.add_documents(USER, [doc("w-landed")]) == 1
            assert faults.hits and not faults.armed
            assert (await b.get_document(USER, "w-landed")) is not None
            assert (await a.get_document(USER, "w-landed")) is not None

            # 2. The log PUT never left: the read-back finds nothing; not written, and said so.
            faults.lose("PutObject", ".wal/", "request")
            with pytest.raises(S3Unavailable, match="nothing was written") as info:
                await a.add_documents(USER, [doc("w-unsent")])
            assert not isinstance(info.value, CommitOutcomeUnknown)
            assert await a.get_document(USER, "w-unsent") is None
            assert await b.get_document(USER, "w-unsent") is None

            # 3. The answer and the read-back are both lost: the outcome is unknown and said
            #    to be; the next refresh shows the write S3 took, on both instances.
            faults.lose("PutObject", ".wal/")
            faults.lose("GetObject", ".wal/", "request")
            with pytest.raises(CommitOutcomeUnknown, match="may or may not be on S3"):
                await a.add_documents(USER, [doc("w-unknown")])
            await a.refresh(USER)
            assert (await a.get_document(USER, "w-unknown")) is not None
            assert (await b.get_document(USER, "w-unknown")) is not None

            # 4. A flush's manifest PUT reached S3, its answer was lost: read back, ours.
            await a.add_documents(USER, [doc("f-landed")])
            faults.lose("PutObject", "/_versions/")
            await a.flush(USER)
            assert faults.hits and not faults.armed
            assert await on_s3(s3, "f-landed")

            # 5. A flush's manifest answer and its read-back are both lost: the flush fails,
            #    the records stay in memory and in S3's log, and the next flush finds the
            #    version S3 took instead of committing the records twice.
            await a.add_documents(USER, [doc("f-unknown")])
            faults.lose("PutObject", "/_versions/")
            faults.lose("GetObject", "/_versions/", "request")
            with pytest.raises(CommitOutcomeUnknown):
                await a.flush(USER)
            assert (await a.get_document(USER, "f-unknown")) is not None
            await a.flush(USER)
            ids = [r["id"] for r in (await remote_records(s3, USER)).to_pylist()]
            assert ids.count("f-unknown") == 1, ids

            # Later writes go on normally, and both instances agree.
            await a.add_documents(USER, [doc("after")])
            await a.flush(USER)
            for svc in (a, b):
                await svc.refresh(USER)
                for doc_id in ("seed", "w-landed", "w-unknown", "f-landed", "f-unknown", "after"):
                    assert await svc.get_document(USER, doc_id) is not None, doc_id
                assert await svc.get_document(USER, "w-unsent") is None
            assert (await a.status(USER)).in_sync

    asyncio.run(scenario())


def test_sync_push_with_a_lost_manifest_answer_counts_the_records_once(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with (
            open_service(SYNC, tmp_path / "A", s3, device="A") as a,
            open_service(SYNC, tmp_path / "B", s3, device="B") as b,
        ):
            await a.add_documents(USER, [doc("first")])
            assert (await a.sync(USER)).reachable
            faults = Faults(a)
            await a.add_documents(USER, [doc("second")])
            faults.lose("PutObject", "/_versions/")
            report = await a.sync(USER)
            assert report.reachable, report.error
            assert faults.hits
            assert report.records_up == 1
            assert (await a.status(USER)).pending_changes == 0
            report = await a.sync(USER)  # nothing is pushed twice
            assert report.records_up == 0
            assert (await b.sync(USER)).reachable
            assert await b.get_document(USER, "second") is not None
            ids = [r["id"] for r in (await remote_records(s3, USER)).to_pylist()]
            assert sorted(ids) == ["first", "second"]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("operation", "key_part"),
    [
        ("ListObjectsV2", "/_versions/"),  # the check that runs while the files go up
        ("PutObject", "/data/"),
        ("PutObject", "/_transactions/"),
    ],
)
def test_a_sync_push_that_loses_an_answer_before_its_manifest_publishes_nothing(
    operation: str, key_part: str, s3: S3Endpoint, tmp_path: Path
) -> None:
    """A lost answer at any step before the manifest: the sync reports S3 unreachable, no
    version is published, and the next sync pushes the record, once."""

    async def scenario() -> None:
        async with open_service(SYNC, tmp_path / "A", s3, device="A") as a:
            await a.add_documents(USER, [doc("first")])
            first = await a.sync(USER)
            assert first.reachable, first.error
            faults = Faults(a)
            await a.add_documents(USER, [doc("second")])
            faults.lose(operation, key_part)
            report = await a.sync(USER)
            assert faults.hits, "the fault never fired"
            assert not report.reachable and report.records_up == 0, report
            ids = [r["id"] for r in (await remote_records(s3, USER)).to_pylist()]
            assert ids == ["first"]
            assert (await a.status(USER)).pending_changes == 1
            report = await a.sync(USER)
            assert report.reachable and report.records_up == 1, report
            ids = [r["id"] for r in (await remote_records(s3, USER)).to_pylist()]
            assert sorted(ids) == ["first", "second"]

    asyncio.run(scenario())


def test_a_manifest_upload_cut_short_is_no_version_and_the_next_push_repairs_it(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    """SeaweedFS keeps an empty object (with the request's metadata) for a PUT cut short by
    a killed client. Such a manifest is no version: the push that met it reports "not
    written", plain LanceDB cannot open the table meanwhile, and the next push of the same
    writer removes it and commits the version, so S3 again opens with every row."""

    async def scenario() -> None:
        async with open_service(BACKUP, tmp_path / "A", s3, device="A") as a:
            await a.add_documents(USER, [doc("first")])
            assert (await a.backup(USER)).reachable
            faults = Faults(a)
            await a.add_documents(USER, [doc("second")])
            faults.lose("PutObject", "/_versions/", "torn")
            report = await a.backup(USER)
            assert faults.hits and not report.reachable
            assert "nothing was committed" in (report.error or "")
            with pytest.raises(Exception, match=r"of size 0 bytes"):
                await remote_records(s3, USER)  # the torn manifest is the newest key
            (torn,) = torn_uploads(s3, USER)  # what the chaos kill check names
            assert "/_versions/" in torn and torn.endswith(".manifest")
            report = await a.backup(USER)
            assert report.reachable, report.error
            assert torn_uploads(s3, USER) == []
            ids = sorted(r["id"] for r in (await remote_records(s3, USER)).to_pylist())
            assert ids == ["first", "second"]

    asyncio.run(scenario())
