"""S3 endpoints against real servers: the embedded SeaweedFS always, a container when Docker runs.

The container test builds a ``FROM scratch`` image holding the static ``weed`` binary (no
registry needed) and runs it through the same :class:`ContainerS3` code path as MinIO.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from lancesync_bench.cli import main
from lancesync_bench.config import Secret
from lancesync_bench.errors import S3Error, S3Unavailable
from lancesync_bench.s3 import (
    ContainerPreset,
    ContainerS3,
    EmbeddedSeaweedFS,
    check_access,
    docker_available,
    open_s3,
    probe_conditional_put,
)
from lancesync_bench.s3.embedded import find_weed_binary
from lancesync_bench.s3.endpoint import S3Endpoint, Timeouts

pytestmark = pytest.mark.integration

WRONG_SECRET = "wrong-secret-Vb7Kq2"


def test_boto3_put_get_list(s3: S3Endpoint) -> None:
    client = s3.client()
    for name in ("a.txt", "b.txt"):
        client.put_object(Bucket=s3.bucket, Key=s3.key("docs", name), Body=name.encode())
    body = client.get_object(Bucket=s3.bucket, Key=s3.key("docs", "a.txt"))["Body"].read()
    assert body == b"a.txt"
    listed = client.list_objects_v2(Bucket=s3.bucket, Prefix=s3.key("docs") + "/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        s3.key("docs", "a.txt"),
        s3.key("docs", "b.txt"),
    ]


def _vectors(rows: int, dim: int, seed: int) -> pa.FixedSizeListArray:
    values = np.random.default_rng(seed).random(rows * dim, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values), dim)


async def _lancedb_round_trip(endpoint: S3Endpoint) -> tuple[int, list[str], list[str]]:
    import lancedb

    db = await lancedb.connect_async(endpoint.uri("db"), storage_options=endpoint.storage_options())
    ids = [f"doc-{i}" for i in range(50)]
    table = await db.create_table("docs", data=pa.table({"id": ids, "vector": _vectors(50, 8, 1)}))
    target = np.full(8, 5.0, dtype=np.float32)
    await table.add(
        pa.table({"id": ["far"], "vector": pa.FixedSizeListArray.from_arrays(pa.array(target), 8)})
    )
    hits = await table.query().nearest_to(target).limit(3).to_list()
    reopened = await (
        await lancedb.connect_async(endpoint.uri("db"), storage_options=endpoint.storage_options())
    ).open_table("docs")
    return await reopened.count_rows(), [h["id"] for h in hits], (await db.list_tables()).tables


def test_uploads_send_their_body_without_waiting_for_100_continue(
    s3: S3Endpoint, tmp_path: Path
) -> None:
    client = s3.client()
    sent: list[dict[str, str]] = []
    client.meta.events.register(
        "before-send.s3", lambda request, **_: sent.append(dict(request.headers))
    )
    path = tmp_path / "body.bin"
    path.write_bytes(b"x" * 4096)
    with open(path, "rb") as body:  # a file body is what botocore asks to Expect for
        client.put_object(Bucket=s3.bucket, Key=s3.key("expect", "a"), Body=body)
    client.put_object(Bucket=s3.bucket, Key=s3.key("expect", "b"), Body=b"y" * 10)
    assert len(sent) == 2
    assert all("Expect" not in h and "expect" not in h for h in sent), sent
    got = client.get_object(Bucket=s3.bucket, Key=s3.key("expect", "a"))["Body"].read()
    assert got == b"x" * 4096


def test_the_endpoint_is_resolved_once_for_many_keys_and_requests_go_where_botocore_sends_them(
    s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    import botocore.endpoint_provider

    evaluated: list[dict[str, object]] = []
    evaluate = botocore.endpoint_provider.RuleSet.evaluate

    def counted(self: object, input_parameters: dict[str, object]) -> object:
        evaluated.append(dict(input_parameters))
        return evaluate(self, input_parameters)  # type: ignore[arg-type]

    monkeypatch.setattr(botocore.endpoint_provider.RuleSet, "evaluate", counted)
    ours = s3.client()
    plain = boto3.session.Session().client("s3", **s3.boto3_client_kwargs())
    urls: dict[str, list[str]] = {"ours": [], "plain": []}
    for name, client in (("ours", ours), ("plain", plain)):
        client.meta.events.register(
            "before-send.s3", lambda request, name=name, **_: urls[name].append(request.url)
        )
    before = len(evaluated)
    for i in range(6):
        ours.put_object(Bucket=s3.bucket, Key=s3.key("ep", f"k{i}"), Body=b"x")
        ours.list_objects_v2(Bucket=s3.bucket, Prefix=s3.key("ep", f"k{i}"), MaxKeys=1)
    # once for the PUTs, once for the LISTs: keys and prefixes no longer miss the cache
    assert len(evaluated) - before <= 2, evaluated[before:]
    assert not any("Key" in p or "Prefix" in p for p in evaluated[before:])
    for name, client in (("ours", ours), ("plain", plain)):
        client.put_object(Bucket=s3.bucket, Key=s3.key("ep", f"same-{name}"), Body=b"y")
        client.get_object(Bucket=s3.bucket, Key=s3.key("ep", "k3"))
        client.list_objects_v2(Bucket=s3.bucket, Prefix=s3.key("ep", "k"), MaxKeys=1)
    assert [u.replace("same-ours", "same-plain") for u in urls["ours"][-3:]] == urls["plain"]
    got = plain.get_object(Bucket=s3.bucket, Key=s3.key("ep", "k5"))["Body"].read()
    assert got == b"x"


def test_the_lean_client_writes_lists_and_fails_as_boto3_does(s3: S3Endpoint) -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError

    from lancesync_bench.s3.fast import fast_client

    boto = s3.client()
    lean = fast_client(boto)
    assert lean is not None  # a plain-HTTP endpoint gets one
    key = s3.key("lean", "a b+c~d.manifest")  # characters that must be encoded
    lean.put_object(Bucket=s3.bucket, Key=key, Body=b"abc", Metadata={"sha256": "x1"})
    got = boto.get_object(Bucket=s3.bucket, Key=key)
    assert (got["Body"].read(), got["Metadata"]) == (b"abc", {"sha256": "x1"})
    with pytest.raises(ClientError) as refused:  # the conditional create, as boto3 reports it
        lean.put_object(Bucket=s3.bucket, Key=key, Body=b"other", IfNoneMatch="*")
    with pytest.raises(ClientError) as refused_boto:
        boto.put_object(Bucket=s3.bucket, Key=key, Body=b"other", IfNoneMatch="*")
    for exc in (refused.value, refused_boto.value):
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert refused.value.response["Error"]["Code"] == refused_boto.value.response["Error"]["Code"]
    assert boto.get_object(Bucket=s3.bucket, Key=key)["Body"].read() == b"abc"
    for i in range(3):
        lean.put_object(Bucket=s3.bucket, Key=s3.key("lean", "list", f"k{i}"), Body=b"")
    prefix = s3.key("lean", "list") + "/"
    mine = lean.list_objects_v2(Bucket=s3.bucket, Prefix=prefix, MaxKeys=1)
    theirs = boto.list_objects_v2(Bucket=s3.bucket, Prefix=prefix, MaxKeys=1)
    assert [c["Key"] for c in mine["Contents"]] == [c["Key"] for c in theirs["Contents"]]
    assert mine["Contents"][0]["Size"] == 0 and mine["IsTruncated"] is True
    assert lean.list_objects_v2(Bucket=s3.bucket, Prefix=s3.key("none") + "/") == {
        "ResponseMetadata": {"HTTPStatusCode": 200},
        "IsTruncated": False,
        "KeyCount": 0,
    }
    with pytest.raises(ClientError) as missing:
        lean.list_objects_v2(Bucket="no-such-bucket-here", Prefix="k")
    assert missing.value.response["Error"]["Code"] == "NoSuchBucket"
    wrong = dataclasses.replace(s3, secret_access_key=Secret("not-the-secret"))
    with pytest.raises(ClientError) as denied:
        fast_client(wrong.client()).put_object(Bucket=s3.bucket, Key=key + "2", Body=b"x")  # type: ignore[union-attr]
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "not-the-secret" not in str(denied.value)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens on it
    gone = dataclasses.replace(s3, url=f"http://127.0.0.1:{port}")
    with pytest.raises(EndpointConnectionError):
        fast_client(gone.client(Timeouts(max_retries=0))).put_object(  # type: ignore[union-attr]
            Bucket=s3.bucket, Key="k", Body=b"x"
        )


def test_lancedb_create_add_search_on_s3(s3: S3Endpoint) -> None:
    rows, hits, tables = asyncio.run(_lancedb_round_trip(s3))
    assert rows == 51
    assert hits[0] == "far"
    assert tables == ["docs"]
    listed = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=s3.key("db", "docs.lance"))
    assert any("/_versions/" in o["Key"] for o in listed["Contents"])


def test_probe_finds_conditional_put_enforced_and_cleans_up(s3: S3Endpoint) -> None:
    result = probe_conditional_put(s3)
    assert result.enforced
    assert result.statuses == (200, 412)
    assert result.key.startswith(s3.key("_lancesync_probe") + "/")
    listed = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=s3.key("_lancesync_probe"))
    assert listed.get("KeyCount", 0) == 0


def test_check_access_passes_with_the_right_keys(s3: S3Endpoint) -> None:
    check_access(s3)  # raises on any failure
    assert s3.provider == "seaweedfs-embedded"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"secret_access_key": Secret(WRONG_SECRET)}, "check AWS_SECRET_ACCESS_KEY"),
        ({"access_key_id": "nobody"}, "does not know access key id 'nobody'"),
        ({"bucket": "no-such-bucket-here"}, "bucket 'no-such-bucket-here' does not exist"),
    ],
)
def test_bad_credentials_and_missing_bucket_fail_clearly(
    s3: S3Endpoint, change: dict[str, object], expected: str
) -> None:
    bad = dataclasses.replace(s3, **change)
    for attempt in (check_access, probe_conditional_put):
        with pytest.raises(S3Error) as info:
            attempt(bad)
        message = str(info.value)
        assert expected in message
        assert s3.url is not None and s3.url in message
        assert "\n" not in message
        assert s3.secret_access_key.reveal() not in message
        assert WRONG_SECRET not in message


def test_unreachable_endpoint_is_unavailable(s3: S3Endpoint) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(S3Unavailable, match=f"127.0.0.1:{port} did not answer while listing"):
        check_access(s3.with_url(f"http://127.0.0.1:{port}"))


def test_open_s3_embedded_stops_and_cleans_up_even_on_errors() -> None:
    with pytest.raises(RuntimeError), open_s3("embedded") as selection:
        server = selection.server
        assert isinstance(server, EmbeddedSeaweedFS) and server.running
        check_access(selection.endpoint)
        sockets = server.socket_paths()
        assert any(p.exists() for p in sockets)  # the names are the ones `weed` uses
        raise RuntimeError("the benchmark failed")
    assert not server.running
    assert not server.data_dir.exists()
    assert [p for p in sockets if p.exists()] == []


def test_open_s3_auto_falls_back_to_embedded_without_docker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/missing.sock")
    with open_s3("auto", env={}) as selection:
        assert selection.kind == "embedded"
        assert selection.reason.startswith("embedded SeaweedFS ")
        assert "no Docker engine answers at unix://" in selection.reason
        assert probe_conditional_put(selection.endpoint).enforced


def test_selection_server_can_be_stopped_for_outage_tests() -> None:
    with open_s3("embedded") as selection:
        server = selection.server
        assert isinstance(server, EmbeddedSeaweedFS)
        server.stop()
        with pytest.raises(S3Unavailable):
            check_access(selection.endpoint)
        server.start()
        check_access(selection.endpoint)


def test_cli_probe_reports_the_choice_and_enforcement(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["s3", "probe", "--s3", "embedded"]) == 0
    out = capsys.readouterr().out
    assert "server: seaweedfs-embedded" in out
    assert "chosen: embedded (embedded SeaweedFS" in out
    assert "conditional put (If-None-Match: *): enforced" in out


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_s3_serve_prints_exports_and_cleans_up_on_signal(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lancesync_bench", "s3", "serve", "--bucket", "served"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        exports: dict[str, str] = {}
        data_dir = None
        while len(exports) < 6:
            line = proc.stdout.readline()
            assert line, f"serve ended early: {proc.communicate()[1]}"
            if line.startswith("# data: "):
                data_dir = Path(line.removeprefix("# data: ").split(" (")[0].strip())
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").strip().partition("=")
                exports[name] = shlex.split(value)[0]
        assert data_dir is not None and data_dir.is_dir()
        weed = [p for p in _children(proc.pid) if "weed" in Path(f"/proc/{p}/cmdline").read_text()]
        assert len(weed) == 1
        endpoint = S3Endpoint(
            url=exports["S3_ENDPOINT_URL"],
            region=exports["AWS_REGION"],
            access_key_id=exports["AWS_ACCESS_KEY_ID"],
            secret_access_key=Secret(exports["AWS_SECRET_ACCESS_KEY"]),
            bucket=exports["S3_BUCKET"],
        )
        assert exports["AWS_ENDPOINT_URL"] == endpoint.url and endpoint.bucket == "served"
        client = endpoint.client()
        client.put_object(Bucket="served", Key="hello.txt", Body=b"hi")
        assert client.get_object(Bucket="served", Key="hello.txt")["Body"].read() == b"hi"
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
        assert not Path(f"/proc/{weed[0]}").exists()
        assert not data_dir.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


# -- the container code path, with a locally built SeaweedFS image ------------------------


@pytest.fixture(scope="module")
def weed_image() -> Iterator[str]:
    """A FROM-scratch image holding the static weed binary (needs a Docker engine)."""
    ok, why = docker_available()
    if not ok:
        pytest.skip(why)
    import docker

    context = Path(tempfile.mkdtemp(prefix="lsb-weed-image-"))
    client = docker.from_env()
    try:
        shutil.copy2(find_weed_binary(), context / "weed")
        (context / "Dockerfile").write_text('FROM scratch\nCOPY weed /weed\nENTRYPOINT ["/weed"]\n')
        client.images.build(path=str(context), tag="lancesync-bench/weed:4.48", rm=True)
        yield "lancesync-bench/weed:4.48"
    finally:
        client.close()
        shutil.rmtree(context, ignore_errors=True)


def test_container_provider_runs_a_seaweedfs_image(weed_image: str) -> None:
    preset = ContainerPreset(
        provider="seaweedfs-testcontainers",
        image=weed_image,
        port=8333,
        command=(
            "mini",
            "-dir=/data",
            "-ip.bind=0.0.0.0",
            "-s3.port=8333",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
        ),
        access_key_env="AWS_ACCESS_KEY_ID",
        secret_key_env="AWS_SECRET_ACCESS_KEY",
        tmpfs=("/tmp", "/data"),  # a scratch image has neither
    )
    with ContainerS3(preset, bucket="boxed") as server:
        endpoint = server.endpoint()
        assert (endpoint.provider, endpoint.provider_version) == (
            "seaweedfs-testcontainers",
            "4.48",
        )
        check_access(endpoint)
        client = endpoint.client()
        client.put_object(Bucket="boxed", Key="k", Body=b"in a container")
        assert client.get_object(Bucket="boxed", Key="k")["Body"].read() == b"in a container"
        assert probe_conditional_put(endpoint).enforced
        name = server.name
    import docker

    with contextlib.closing(docker.from_env()) as client:
        assert client.containers.list(all=True, filters={"name": name}) == []
