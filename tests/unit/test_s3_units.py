"""Fast tests of S3 endpoint selection, error translation and the container presets.

Nothing here starts a server: "no Docker engine" is arranged by pointing DOCKER_HOST at a
socket that does not exist (or that never answers), so these pass with or without Docker.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from lancesync_bench.cli import main
from lancesync_bench.config import Secret
from lancesync_bench.errors import ConfigError, S3Error, S3Unavailable
from lancesync_bench.s3 import (
    DEFAULT_MINIO_IMAGE,
    ContainerS3,
    docker_available,
    external_endpoint,
    minio_preset,
    open_s3,
)
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.s3.minio import image_tag
from lancesync_bench.s3.probe import as_s3_error

SECRET = "unit-secret-Zq9xW3"
ENV = {
    "S3_ENDPOINT_URL": "http://127.0.0.1:9000/",
    "S3_BUCKET": "team-bucket",
    "AWS_ACCESS_KEY_ID": "AKIDUNIT",
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "AWS_REGION": "eu-west-1",
    "S3_PREFIX": "/apps/notes/",
}


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """DOCKER_HOST pointing at a socket that does not exist."""
    host = f"unix://{tmp_path}/missing-docker.sock"
    monkeypatch.setenv("DOCKER_HOST", host)
    return host


@pytest.fixture
def silent_docker(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """DOCKER_HOST pointing at a socket that accepts connections but never answers."""
    folder = tempfile.mkdtemp(prefix="lsb-sock-", dir="/tmp")  # unix paths max 107 bytes
    path = f"{folder}/docker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    try:
        yield path
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


def _endpoint() -> S3Endpoint:
    return external_endpoint(ENV)


def _client_error(code: str, status: int, message: str = "boom") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "ListObjectsV2",
    )


def test_external_endpoint_reads_every_variable() -> None:
    ep = external_endpoint(ENV)
    assert ep.url == "http://127.0.0.1:9000"
    assert (ep.bucket, ep.region, ep.prefix, ep.provider) == (
        "team-bucket",
        "eu-west-1",
        "apps/notes",
        "external",
    )
    assert ep.secret_access_key.reveal() == SECRET
    assert SECRET not in repr(ep)


def test_external_endpoint_falls_back_to_aws_endpoint_url_and_defaults() -> None:
    env = {k: v for k, v in ENV.items() if k not in ("S3_ENDPOINT_URL", "AWS_REGION")}
    env["AWS_ENDPOINT_URL"] = "https://s3.example.test"
    ep = external_endpoint(env)
    assert (ep.url, ep.region) == ("https://s3.example.test", "us-east-1")
    no_url = {k: v for k, v in env.items() if k != "AWS_ENDPOINT_URL"}
    assert external_endpoint(no_url).url is None  # AWS S3 itself


@pytest.mark.parametrize("missing", ["S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])
def test_external_endpoint_names_the_missing_variable(missing: str) -> None:
    env = {k: v for k, v in ENV.items() if k != missing}
    with pytest.raises(ConfigError, match=f"^{missing} is not set") as info:
        external_endpoint(env)
    assert SECRET not in str(info.value)


def test_external_endpoint_rejects_a_bad_url_and_bucket() -> None:
    with pytest.raises(ConfigError, match=r"S3_ENDPOINT_URL='ftp://x' is not an endpoint URL"):
        external_endpoint({**ENV, "S3_ENDPOINT_URL": "ftp://x"})
    with pytest.raises(ConfigError, match=r"S3_BUCKET: bucket name 'Bad_Bucket' is not allowed"):
        external_endpoint({**ENV, "S3_BUCKET": "Bad_Bucket"})


def test_open_s3_external_starts_nothing() -> None:
    with open_s3("external", env=ENV) as selection:
        assert (selection.kind, selection.server) == ("external", None)
        assert "http://127.0.0.1:9000" in selection.reason
        assert selection.to_dict()["secret_access_key"] == "***"
        assert SECRET not in repr(selection)


def test_open_s3_rejects_an_unknown_kind_and_bucket() -> None:
    with pytest.raises(ConfigError) as info, open_s3("docker"):
        pass
    assert "'docker'" in str(info.value)
    assert "'auto', 'embedded', 'minio', 'external'" in str(info.value)
    with (
        pytest.raises(ConfigError, match="bucket name 'x' is not allowed"),
        open_s3("embedded", bucket="x"),
    ):
        pass


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z", "RELEASE.2025-09-07T16-13-09Z"),
        ("localhost:5000/weed", "latest"),
        ("localhost:5000/weed:4.48", "4.48"),
        ("minio/minio@sha256:abc", "sha256:abc"),
    ],
)
def test_image_tag(image: str, tag: str) -> None:
    assert image_tag(image) == tag


def test_minio_preset_takes_the_image_from_the_environment() -> None:
    assert minio_preset(env={}).image == DEFAULT_MINIO_IMAGE
    preset = minio_preset(env={"MINIO_IMAGE": "minio/minio:RELEASE.2024-01-01T00-00-00Z"})
    assert preset.provider == "minio-testcontainers"
    assert preset.version == "RELEASE.2024-01-01T00-00-00Z"
    assert minio_preset("my/minio:dev", env={"MINIO_IMAGE": "other:1"}).version == "dev"


def test_docker_available_reports_a_missing_socket(no_docker: str) -> None:
    ok, reason = docker_available()
    assert not ok
    assert reason == f"no Docker engine answers at {no_docker}: the socket does not exist"


def test_docker_available_does_not_hang_on_a_silent_socket(silent_docker: str) -> None:
    ok, reason = docker_available(timeout_s=0.5)
    assert not ok
    assert reason.startswith(f"no Docker engine answers at unix://{silent_docker}: ")
    assert "\n" not in reason


def test_open_s3_minio_without_engine_raises_one_line(no_docker: str) -> None:
    with pytest.raises(S3Error) as info, open_s3("minio", env={}):
        pass
    message = str(info.value)
    assert message.startswith(f"no Docker engine answers at {no_docker}")
    assert "\n" not in message


def test_container_s3_hides_its_secret_and_closes_twice() -> None:
    server = ContainerS3(minio_preset(env={}))
    secret = server.secret_access_key.reveal()
    assert secret not in repr(server)
    assert "stopped" in repr(server)
    server.close()
    server.close()
    assert not server.running


@pytest.mark.parametrize(
    ("error", "kind", "expected"),
    [
        (_client_error("InvalidAccessKeyId", 403), S3Error, "check AWS_ACCESS_KEY_ID"),
        (_client_error("SignatureDoesNotMatch", 403), S3Error, "check AWS_SECRET_ACCESS_KEY"),
        (_client_error("NoSuchBucket", 404), S3Error, "bucket 'team-bucket' does not exist"),
        (_client_error("AccessDenied", 403), S3Error, "'AKIDUNIT' is not allowed"),
        (_client_error("SlowDown", 503), S3Unavailable, "answered HTTP 503 SlowDown"),
        (_client_error("InvalidRequest", 400), S3Error, "refused listing with HTTP 400"),
        (EndpointConnectionError(endpoint_url="http://x"), S3Unavailable, "did not answer"),
        (ReadTimeoutError(endpoint_url="http://x"), S3Unavailable, "timed out"),
    ],
)
def test_as_s3_error_names_what_was_wrong(
    error: Exception, kind: type[S3Error], expected: str
) -> None:
    result = as_s3_error(error, _endpoint(), "listing")
    assert type(result) is kind
    assert expected in str(result)
    assert "http://127.0.0.1:9000" in str(result) or "team-bucket" in str(result)
    assert SECRET not in str(result)


def test_as_s3_error_masks_a_secret_echoed_by_the_server() -> None:
    error = _client_error("InvalidArgument", 400, message=f"bad header value {SECRET}")
    result = as_s3_error(error, _endpoint(), "listing")
    assert SECRET not in str(result)
    assert "***" in str(result)


def test_secret_never_formats() -> None:
    assert f"{Secret(SECRET)}" == "***"


def test_cli_s3_without_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["s3"]) == 2
    assert "serve" in capsys.readouterr().err


def test_cli_s3_probe_rejects_an_unknown_kind(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["s3", "probe", "--s3", "docker"])
    assert info.value.code == 2
    assert "invalid choice: 'docker'" in capsys.readouterr().err


def test_cli_s3_probe_external_names_missing_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert main(["s3", "probe", "--s3", "external"]) == 2
    assert "S3_BUCKET, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set" in (
        capsys.readouterr().err
    )


def test_endpoint_params_no_rule_reads_are_found_and_named_ones_kept() -> None:
    from lancesync_bench.s3.endpoint import _unread_endpoint_params, unread_params

    ruleset = {
        "parameters": {"Bucket": {}, "Key": {}, "Prefix": {}, "Region": {}, "KeyId": {}},
        "rules": [
            {
                "conditions": [{"fn": "isSet", "argv": [{"ref": "Bucket"}]}],
                "endpoint": {"url": "https://{Bucket}.s3.{Region#name}.example"},
            },
            {"conditions": [], "error": "a KeyId is needed"},
        ],
    }
    assert unread_params(ruleset) == {"Key", "Prefix"}
    # in botocore's own S3 rule set, object keys and prefixes are never read
    assert {"Key", "Prefix"} <= _unread_endpoint_params()
    assert not {"Bucket", "Region", "Endpoint", "ForcePathStyle"} & _unread_endpoint_params()


@pytest.mark.parametrize(
    ("method", "key", "query", "headers", "body"),
    [
        (
            "PUT",
            "p/t.lance/_versions/18446744073709551614.manifest",
            {},
            {"if-none-match": "*"},
            b"m",
        ),
        ("PUT", "p/data/a b+c~d.lance", {}, {"x-amz-meta-sha256": "ab  cd "}, b"x" * 100),
        ("GET", "", {"list-type": "2", "prefix": "p/t.lance/_versions/", "max-keys": "1"}, {}, b""),
    ],
)
def test_the_lean_client_signs_as_botocore_does(
    method: str, key: str, query: dict[str, str], headers: dict[str, str], body: bytes
) -> None:
    """Signature V4 of the lean client against botocore's own signer, same request, same time."""
    import hashlib
    import urllib.parse

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from lancesync_bench.s3.fast import _signing_key, sign_v4

    amz_date, region, ak, sk = "20261204T120000Z", "us-east-1", "AKIDEXAMPLE", "s3cr3t/key+x"
    path = "/bucket" + ("/" + urllib.parse.quote(key, safe="/-_.~") if key else "")
    query_string = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in sorted(query.items())
    )
    payload = hashlib.sha256(body).hexdigest()
    signed = {
        **headers,
        "host": "127.0.0.1:8333",
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload,
    }
    ours = sign_v4(
        method=method,
        path=path,
        query=query_string,
        headers=signed,
        payload_sha256=payload,
        region=region,
        access_key_id=ak,
        signing_key=_signing_key(sk, amz_date[:8], region),
        amz_date=amz_date,
    )
    url = "http://127.0.0.1:8333" + path + (f"?{query_string}" if query_string else "")
    request = AWSRequest(method=method, url=url, data=body, headers=dict(signed))
    request.context["timestamp"] = amz_date
    auth = S3SigV4Auth(Credentials(ak, sk), "s3", region)
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    names = ";".join(sorted(signed))
    assert ours == (
        f"AWS4-HMAC-SHA256 Credential={ak}/{amz_date[:8]}/{region}/s3/aws4_request, "
        f"SignedHeaders={names}, Signature={signature}"
    )


class _Scripted:
    """A local HTTP server answering each request with the next (status, body) of a script;
    ``"close"`` drops the connection instead of answering."""

    def __init__(self, script: list[Any]) -> None:
        import http.server
        import threading

        self.script = list(script)
        self.seen: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.seen.append(f"{self.command} {self.path}")
                step = outer.script.pop(0)
                if step == "close":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, body = step
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", '"e"')
                self.end_headers()
                self.wfile.write(body)

            do_PUT = do_GET = _answer

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _lean(url: str, attempts: int = 3) -> Any:
    from lancesync_bench.s3.fast import FastS3

    return FastS3(
        url,
        region="us-east-1",
        access_key_id="AK",
        secret_access_key=Secret("SK"),
        connect_timeout_s=2.0,
        request_timeout_s=2.0,
        max_attempts=attempts,
    )


def test_the_lean_client_retries_what_boto3_retries_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lancesync_bench.s3 import fast

    monkeypatch.setattr(fast.random, "random", lambda: 0.0)  # no back-off wait in the test
    err = b"<Error><Code>SlowDown</Code><Message>slow</Message></Error>"
    server = _Scripted(
        [
            (503, err),
            "close",
            (200, b""),  # third attempt: written
            (412, b"<Error><Code>PreconditionFailed</Code><Message>x</Message></Error>"),
            (500, b""),
            (500, b""),
            (500, b""),
        ]
    )
    try:
        lean = _lean(server.url)
        assert lean.put_object(Bucket="b", Key="k", Body=b"x")["ETag"] == '"e"'
        assert len(server.seen) == 3
        with pytest.raises(ClientError) as refused:  # a refusal is not retried
            lean.put_object(Bucket="b", Key="k", Body=b"x", IfNoneMatch="*")
        assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
        assert len(server.seen) == 4
        with pytest.raises(ClientError) as failed:  # 3 attempts, then the last answer
            lean.put_object(Bucket="b", Key="k", Body=b"x")
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert failed.value.response["Error"]["Code"] == "500"
        assert len(server.seen) == 7
    finally:
        server.close()


def test_the_lean_client_reports_a_dropped_connection_as_boto3_does() -> None:
    from botocore.exceptions import ConnectionClosedError

    server = _Scripted(["close"])
    try:
        with pytest.raises(ConnectionClosedError):
            _lean(server.url, attempts=1).put_object(Bucket="b", Key="k", Body=b"x")
    finally:
        server.close()
    with pytest.raises(ValueError, match="plain-HTTP"):
        _lean("https://127.0.0.1:1")


def test_the_lean_client_reconnects_when_the_server_closed_an_idle_connection() -> None:
    import time

    server = _Scripted([(200, b""), (200, b"")])
    try:
        lean = _lean(server.url, attempts=1)  # no retry: the reuse itself must not fail
        lean.put_object(Bucket="b", Key="k1", Body=b"x")
        conn = lean._local.conn
        conn.sock.shutdown(socket.SHUT_RD)  # stand-in for the server's close: EOF to read
        time.sleep(0.05)
        lean.put_object(Bucket="b", Key="k2", Body=b"x")
        assert lean._local.conn is not conn
        assert server.seen == ["PUT /b/k1", "PUT /b/k2"]
    finally:
        server.close()
