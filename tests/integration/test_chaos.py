"""The reliability suite against the real embedded S3 server.

* ``lancesync-bench chaos --quick`` (in process, on the session's server as an external
  endpoint) passes every check, writes reliability.json with every section's figures, prints
  no secret, and leaves no process, proxy thread or work folder behind;
* the stripping proxy really makes the server ignore ``If-None-Match`` for boto3 and for
  LanceDB's own object store, while the server itself enforces it.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from pathlib import Path

import pytest

from lancesync_bench.cli import main
from lancesync_bench.netem import ConditionalStripper, S3Proxy
from lancesync_bench.s3.embedded import EmbeddedSeaweedFS
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.s3.probe import probe_conditional_put

pytestmark = pytest.mark.integration


def _children() -> set[int]:
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        text = (task / "children").read_text().split()
        pids |= {int(p) for p in text}
    return pids


def _redacted_values(obj: object, path: str = "$") -> list[str]:
    """Paths whose whole value redaction replaced: a key named like a secret hid a figure."""
    if obj == "***":
        return [path]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _redacted_values(v, f"{path}.{k}")]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _redacted_values(v, f"{path}[{i}]")]
    return []


def _work_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("lancesync-chaos-*")}


@pytest.mark.slow
def test_quick_suite_passes_every_check_and_records_every_figure(
    s3: S3Endpoint,
    s3_server: EmbeddedSeaweedFS,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    children, folders = _children(), _work_folders()

    code = main(["chaos", "--quick", "--out", str(tmp_path), "--s3", "external", "--seed", "7"])

    out, err = capfd.readouterr()
    secret = s3.secret_access_key.reveal()
    assert secret not in out and secret not in err
    [path] = tmp_path.glob("*/reliability.json")
    text = path.read_text()
    assert secret not in text
    doc = json.loads(text)
    failed = [
        f"{name}: {c['name']}: {c['detail']}"
        for name, section in doc["sections"].items()
        for c in section["checks"]
        if not c["passed"]
    ]
    assert not failed, "\n".join(failed)
    assert code == 0 and doc["passed"] and doc["schema_version"] == 1 and doc["mode"] == "quick"
    assert "all" in out and "checks passed" in out

    sections = doc["sections"]
    assert not _redacted_values(sections), "a figure's key looks like a secret's name"
    assert list(sections) == [
        "integrity",
        "bad_input",
        "devices",
        "flaky",
        "outage",
        "clock_skew",
        "lost_answers",
        "background",
        "kill",
        "security",
    ]
    kill = sections["kill"]["figures"]
    assert kill["trials"] >= 9 and kill["complete"] == kill["trials"] and kill["rows_lost"] == 0
    assert set(kill["by_kind"]) == {"sync", "backup", "primary", "writes"}
    assert kill["by_kind"]["writes"]["trials"] == 3  # killed during sustained local writes
    outage = sections["outage"]["figures"]["modes"]
    for mode, figures in outage.items():
        assert figures["writes_lost"] == 0, mode
        assert figures["catch_up_s"] is not None and figures["caught_up"], mode
    assert outage["s3_primary_local_cache"]["failed_write_latency_outage"]["n"] > 0
    for mode in ("local_primary_s3_backup", "local_primary_s3_sync"):
        assert outage[mode]["write_latency_outage"]["n"] > 0
        assert outage[mode]["write_latency_before"]["n"] > 0
    flaky = sections["flaky"]["figures"]
    assert flaky["faults_injected"] > 0 and flaky["writes_lost"] == 0
    devices = sections["devices"]["figures"]
    assert devices["hash_a"] == devices["hash_b"] and devices["acknowledged_lost"] == 0
    assert all(sections[name]["summary"] for name in sections), "a section without a summary"
    clock = sections["clock_skew"]["figures"]
    assert clock["acknowledged_writes"] > 0 and clock["writes_lost"] == 0
    assert clock["own_reads_stale"] == 0 and clock["diverged_at_skews"] == []
    lost = sections["lost_answers"]["figures"]
    assert lost["outcomes"]["log answer lost"] == {"committed": lost["trials_per_kind"]}
    assert lost["twice_or_missing"] == [] and lost["wrong"] == []
    background = sections["background"]["figures"]
    assert background["failures_counted"] >= 2 and background["documents_on_other_device"] == 5
    integrity = sections["integrity"]["figures"]
    assert all(c["detected"] for c in integrity["corruption_cases"])
    assert all(r["refused"] for r in integrity["conditional_put"]["refused"].values())
    bad = sections["bad_input"]
    assert {c["category"] for c in bad["cases"]} == {
        "configuration",
        "user id",
        "document",
        "S3 access keys",
        "S3 bucket",
        "scenario file",
    }
    assert all(
        {"input", "error_type", "message", "nothing_written"} <= set(c) for c in bad["cases"]
    )
    security = sections["security"]["figures"]
    assert security["leak_scan"]["leaks"] == [] and security["final_scan"]["leaks"] == []
    assert security["benchmark_run"]["exit_code"] == 0

    # Nothing left behind: no child process (the session's S3 server was there before),
    # no proxy thread, no work folder, and nothing under the run's S3 prefix.
    assert _children() <= children
    assert not [t.name for t in threading.enumerate() if t.name.startswith("lancesync-netem")]
    assert _work_folders() <= folders
    leftovers = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=s3.key("chaos-"))
    assert leftovers.get("KeyCount", 0) == 0


def test_stripping_proxy_makes_the_real_server_ignore_conditional_puts(s3: S3Endpoint) -> None:
    import lancedb
    import pyarrow as pa

    assert probe_conditional_put(s3).enforced
    stripper = ConditionalStripper(s3.secret_access_key)
    with S3Proxy(str(s3.url), rewrite=stripper) as proxy:
        through = proxy.endpoint_for(s3)
        result = probe_conditional_put(through)
        assert not result.enforced and result.statuses == (200, 200)

        async def lance_commits() -> int:
            db = await lancedb.connect_async(
                through.uri("stripped"), storage_options=through.storage_options()
            )
            table = await db.create_table("t", data=pa.table({"a": [1, 2]}))
            await table.add(pa.table({"a": [3]}))
            return int(await table.count_rows())

        before = stripper.stripped
        assert asyncio.run(lance_commits()) == 3  # Lance's re-signed commits are accepted
        assert stripper.stripped > before and stripper.unchanged == 0
        assert proxy.snapshot().status(403) == 0  # no request lost its signature
