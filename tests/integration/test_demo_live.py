"""The live demo scenarios against the session's embedded S3 server.

Each scenario runs in a lab over the test's own prefix, at the quick sizes the notebook
tests use, and its tables are checked for what the notebook's text claims. No assertion
depends on how fast anything ran: where the staleness bound matters, the scenario reports
an upper bound on the cache's age and the test checks the claim only when it applies.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pandas as pd
import pytest

from lancesync_bench.demo import (
    DemoLab,
    DemoSizes,
    machine_loss_and_restore,
    s3_outage,
    s3_primary_cache,
    two_devices_converge,
)
from lancesync_bench.demo.devices import DEVICE_A, DEVICE_B
from lancesync_bench.s3.endpoint import S3Endpoint

pytestmark = pytest.mark.integration

SIZES = DemoSizes.quick()
N = SIZES.docs


@pytest.fixture
def lab(s3: S3Endpoint) -> Iterator[DemoLab]:
    """A demo lab over the test's prefix of the session server."""
    with DemoLab(endpoint=s3, sizes=SIZES) as started:
        yield started


def _assert_no_secret(s3: S3Endpoint, lab: DemoLab, *frames: pd.DataFrame | str) -> None:
    secret = s3.secret_access_key.reveal()
    shown = [repr(lab), lab.describe().to_string()]
    for item in frames:
        shown += [item] if isinstance(item, str) else [item.to_string(), item.to_html()]
    assert not [text for text in shown if secret in text]


def test_machine_loss_and_restore(lab: DemoLab, s3: S3Endpoint) -> None:
    result = asyncio.run(machine_loss_and_restore(lab))
    docs = result.documents
    assert result.identical
    assert docs["same"].all()
    assert len(docs) == N + 2 - 1  # two added, one deleted
    assert "doc-000002" not in docs.index
    assert docs.loc["doc-000001", "after restore (new laptop)"] == "Edited after the first backup."
    assert result.files_lost > 0
    t = result.transfers
    assert t["reachable"].all()
    first, second, restore, after = (t.iloc[i] for i in range(4))
    assert 0 < second["files up"] < first["files up"]  # incremental
    assert restore["files down"] > 0
    assert restore["bytes down"] > 0
    assert restore["records down"] >= len(docs)
    assert restore["remote version"] == second["remote version"]
    assert after["files down"] == 0
    _assert_no_secret(s3, lab, docs, t)


def test_two_devices_converge(lab: DemoLab, s3: S3Endpoint) -> None:
    result = asyncio.run(two_devices_converge(lab))
    assert result.converged
    docs = result.documents
    assert docs["same"].all()
    assert len(docs) == N + 2 - 1
    assert result.deleted_id not in docs.index
    assert docs.loc[result.conflict_id, DEVICE_A] == f"Edited on {DEVICE_B}."
    syncs = result.syncs
    assert syncs["reachable"].all()
    assert list(syncs["records up"]) == [N, 0, 2, 3, 0]
    assert list(syncs["records down"]) == [0, N, 0, 2, 3]
    history = result.history
    winners = history[history["wins"]]
    assert len(winners) == 2
    conflict = winners[winners["id"] == result.conflict_id].iloc[0]
    assert (conflict["device"], conflict["text"]) == (DEVICE_B, f"Edited on {DEVICE_B}.")
    assert bool(winners[winners["id"] == result.deleted_id].iloc[0]["deleted"])
    # The rule the table shows is the one the service applies: the latest record wins.
    for _, group in history.groupby("id"):
        assert group["wins"].tolist()[-1]
    assert "updated_at" in result.rule
    _assert_no_secret(s3, lab, syncs, docs, history, result.rule)


def test_s3_primary_cache(lab: DemoLab, s3: S3Endpoint) -> None:
    result = asyncio.run(s3_primary_cache(lab))
    reads = result.reads
    first, hits, check, within, after = (reads.iloc[i] for i in range(5))
    assert first["S3 requests per read"] > 0
    assert first["bytes down per read"] > 0
    assert hits["reads"] == 5
    assert hits["found"] == "5 of 5"
    # Nothing changed on S3: a hit never downloads; at most the two LISTs of a refresh
    # (the writers with log objects, the newest manifest) check the version.
    assert hits["GET"] == 0
    assert hits["LIST"] <= 2
    # Two LISTs; three while SeaweedFS still lists web-1's log folder, emptied by its flush
    # a moment before (the server removes empty folders in the background; S3 has none).
    assert (check["GET"], check["other"]) == (0, 0)
    assert check["LIST"] in (2, 3)
    if result.cache_age_ms < result.staleness_ms:
        assert not result.visible_within_bound
        assert within["S3 requests per read"] == 0
    assert result.visible_after_bound
    assert after["GET"] > 0
    assert result.new_id == f"doc-{N:06d}"
    _assert_no_secret(s3, lab, reads)


def test_s3_outage(lab: DemoLab, s3: S3Endpoint) -> None:
    result = asyncio.run(s3_outage(lab))
    assert not lab.proxy.is_cut  # put back, whatever happened
    local = result.local_primary
    shown = local.to_string()  # every step's detail, so a failure says what went wrong
    assert list(local["outcome"]) == ["ok", "ok", "ok", "unreachable", "ok", "ok", "ok", "ok"], (
        shown
    )
    assert list(local["S3 path"]) == ["up", "cut", "cut", "cut", "cut", "up", "up", "up"]
    detail = list(local["detail"])
    assert detail[1] == "written locally"
    assert "reachable=False" in detail[3]
    assert "pending_changes=3" in detail[4]
    assert detail[5] == "caught up: pushed 3 records"
    assert detail[6] == f"pulled {N + 3} records"
    assert detail[7] == f"B has {N + 3} documents"

    primary = result.s3_primary
    outcomes = list(primary["outcome"])
    expected = ["ok", "ok", "ok", "unreachable", "stale", "ok", "failed", "ok", "ok", "ok"]
    assert outcomes == expected, primary.to_string()
    detail = list(primary["detail"])
    original = detail[1]
    assert detail[4] == f"cache: {original}"  # served, though web-2 changed it on S3
    assert "reads_may_be_stale=True" in detail[5]
    # The cut path closes connections after the request went out: the write is refused,
    # either as not written or, when its read-back fails too, as of unknown outcome (a
    # subclass of S3Unavailable); it is never acknowledged.
    assert result.write_error.startswith(("S3Unavailable: ", "CommitOutcomeUnknown: "))
    assert detail[6] == result.write_error
    assert detail[8] == repr("Updated by web-2.")
    _assert_no_secret(s3, lab, local, primary, result.write_error)


def _refuses(url: str) -> bool:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2):
            return False
    except OSError:
        return True


def test_lab_runs_are_apart_and_cleaned_up(s3: S3Endpoint) -> None:
    with DemoLab(endpoint=s3, sizes=SIZES) as lab:
        one, two = lab.run("x"), lab.run("x")
        assert (one.name, two.name) == ("x-1", "x-2")
        assert one.folder != two.folder
        assert one.folder.is_dir()
        assert one.direct_endpoint.prefix == f"{s3.prefix}/x-1"
        assert one.endpoint.url == lab.proxy.url
        assert one.endpoint.prefix == one.direct_endpoint.prefix
        assert lab.start() is lab  # starting twice is harmless
        root = one.folder.parent
        proxy_url = lab.proxy.url
    assert not lab.running
    assert not root.exists()
    assert _refuses(proxy_url)
    lab.close()


def test_lab_starts_and_stops_its_own_server() -> None:
    with DemoLab(sizes=SIZES) as lab:
        url = lab.server_url
        assert str(lab.describe().loc["S3 server", "value"]).startswith("seaweedfs-embedded")
        assert lab.direct_endpoint.prefix == "demo"
        assert not _refuses(url)
    assert _refuses(url)
