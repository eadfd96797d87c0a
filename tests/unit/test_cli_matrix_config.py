"""`lancesync-bench matrix` and `lancesync-bench config`, in-process and as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lancesync_bench.cli import main
from lancesync_bench.cli.config_cmd import ENVIRONMENT_VARIABLES
from lancesync_bench.config import CLOUD_INDICATORS
from lancesync_bench.matrix import MATRIX_KEYS, MatrixRow, configuration_matrix, format_table

REPO = Path(__file__).resolve().parents[2]
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
JSON_KEYS = {
    "frontend_type",
    "backend_location",
    "storage_mode",
    "s3_primary",
    "local_cache",
    "s3_sync",
    "s3_backup",
    "use_case",
}
# The spec's configuration matrix tables, one entry per row.
EXPECTED_ROWS: list[dict[str, Any]] = [
    {
        "frontend_type": "web",
        "backend_location": "cloud",
        "storage_mode": "s3_primary_local_cache",
        "s3_primary": True,
        "local_cache": True,
        "s3_sync": False,
        "s3_backup": False,
        "use_case": "Production Web App",
    },
    {
        "frontend_type": "web",
        "backend_location": "local",
        "storage_mode": "local_primary_s3_sync",
        "s3_primary": False,
        "local_cache": True,
        "s3_sync": True,
        "s3_backup": False,
        "use_case": "Development/Testing",
    },
    {
        "frontend_type": "desktop",
        "backend_location": "cloud",
        "storage_mode": "local_primary_s3_backup",
        "s3_primary": False,
        "local_cache": True,
        "s3_sync": False,
        "s3_backup": True,
        "use_case": "Desktop with Cloud Backup",
    },
    {
        "frontend_type": "desktop",
        "backend_location": "local",
        "storage_mode": "local_primary_s3_backup",
        "s3_primary": False,
        "local_cache": True,
        "s3_sync": False,
        "s3_backup": True,
        "use_case": "Desktop Standalone",
    },
]
# Everything the configuration reads, so the tests start from a known-empty environment.
CONFIG_VARIABLES = {name for name, _ in ENVIRONMENT_VARIABLES} | {
    name for name, _ in CLOUD_INDICATORS
}
CONFIG_VARIABLES |= {
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "DEVICE_ID",
    "CACHE_MAX_STALENESS_MS",
    "SYNC_INTERVAL_S",
    "RETENTION_S",
    "S3_CONNECT_TIMEOUT_S",
    "S3_REQUEST_TIMEOUT_S",
    "S3_MAX_RETRIES",
}
VALID_CLOUD = {
    "FRONTEND_TYPE": "web",
    "BACKEND_LOCATION": "cloud",
    "S3_BUCKET": "lancesync-test",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": SECRET,
}
# Cross-field violation: a cloud backend without S3.
INVALID_CLOUD = {**VALID_CLOUD, "S3_STORAGE_ENABLED": "false"}


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """os.environ without any configuration variable; LOCAL_STORAGE_PATH in tmp_path."""
    for name in CONFIG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_STORAGE_PATH", str(tmp_path))
    return monkeypatch


def set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Put ``env`` into os.environ for this test."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """main(argv) -> (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_process(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m lancesync_bench argv` with the configuration variables replaced by ``env``."""
    base = {k: v for k, v in os.environ.items() if k not in CONFIG_VARIABLES}
    return subprocess.run(
        [sys.executable, "-m", "lancesync_bench", *argv],
        env={**base, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- matrix -----------------------------------------------------------------------------------


def test_configuration_matrix_matches_the_spec_tables() -> None:
    rows = configuration_matrix()
    assert [row.as_dict() for row in rows] == EXPECTED_ROWS
    assert all(isinstance(row, MatrixRow) for row in rows)
    assert all(tuple(row.as_dict()) == MATRIX_KEYS for row in rows)
    assert set(MATRIX_KEYS) == JSON_KEYS


def test_configuration_matrix_ignores_the_process_environment(
    environ: pytest.MonkeyPatch,
) -> None:
    set_env(environ, {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "S3_STORAGE_ENABLED": "false"})
    set_env(environ, {"USE_S3_AS_PRIMARY": "true", "FRONTEND_TYPE": "desktop"})
    assert [row.as_dict() for row in configuration_matrix()] == EXPECTED_ROWS


def test_format_table_has_a_header_and_one_line_per_row() -> None:
    rows = configuration_matrix()
    lines = format_table(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[0].split()[:3] == ["Frontend", "Backend", "Storage"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    for line, row in zip(lines[2:], rows, strict=True):
        assert line.split()[:3] == [row.frontend_type, row.backend_location, row.storage_mode]
        assert line.endswith(row.use_case)


def test_matrix_command_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "matrix")
    assert (code, err) == (0, "")
    assert out.strip() == format_table(configuration_matrix())
    for row in EXPECTED_ROWS:
        assert row["storage_mode"] in out and row["use_case"] in out


def test_matrix_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "matrix", "--json")
    assert (code, err) == (0, "")
    data: list[dict[str, Any]] = json.loads(out)
    assert all(set(item) == JSON_KEYS for item in data)
    assert data == EXPECTED_ROWS


def test_matrix_json_in_a_real_process() -> None:
    result = run_process("matrix", "--json", env={})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == EXPECTED_ROWS


# -- config -----------------------------------------------------------------------------------


def test_config_valid_text(environ: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    set_env(environ, VALID_CLOUD)
    code, out, err = run_cli(capsys, "config")
    assert (code, err) == (0, "")
    fields = dict(line.split(None, 1) for line in out.splitlines() if len(line.split()) > 1)
    assert fields["storage_mode"] == "s3_primary_local_cache"
    assert fields["detection_reason"] == "explicit: BACKEND_LOCATION=cloud"
    assert fields["validation"] == "valid"
    assert fields["aws_secret_access_key"] == "***"
    assert SECRET not in out


def test_config_valid_json(environ: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    set_env(environ, {**VALID_CLOUD, "BACKEND_LOCATION": "", "VERCEL": "1"})
    code, out, err = run_cli(capsys, "config", "--json")
    assert (code, err) == (0, "")
    report: dict[str, Any] = json.loads(out)
    assert report["validation"] == "valid"
    assert report["backend_location"] == "cloud"
    assert "VERCEL" in report["detection_reason"]
    assert report["storage_mode"] == "s3_primary_local_cache"
    assert report["aws_secret_access_key"] == "***"
    assert report["s3_bucket"] == "lancesync-test"
    assert SECRET not in out


@pytest.mark.parametrize("as_json", [False, True])
def test_config_invalid_exits_2_with_one_line(
    environ: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    set_env(environ, INVALID_CLOUD)
    code, out, err = run_cli(capsys, "config", *(["--json"] if as_json else []))
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("lancesync-bench: error: S3_STORAGE_ENABLED=false")
    assert "Traceback" not in out + err
    assert SECRET not in out + err
    message = err.removeprefix("lancesync-bench: error: ").strip()
    if as_json:
        assert json.loads(out)["validation"] == message
    else:
        fields = dict(line.split(None, 1) for line in out.splitlines() if len(line.split()) > 1)
        assert fields["validation"] == message


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"FRONTEND_TYPE": "web", "EMBEDDING_DIM": "abc"}, "EMBEDDING_DIM='abc'"),
        ({"FRONTEND_TYPE": "tablet"}, "FRONTEND_TYPE='tablet'"),
        ({"FRONTEND_TYPE": "web", "S3_PREFIX": "../up"}, "S3_PREFIX='../up'"),
        ({}, "FRONTEND_TYPE is not set"),
    ],
)
def test_config_unparseable_exits_2_with_one_line(
    environ: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    expected: str,
) -> None:
    set_env(environ, {**env, "AWS_SECRET_ACCESS_KEY": SECRET})
    code, out, err = run_cli(capsys, "config")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and expected in err
    assert "Traceback" not in err and SECRET not in err


def test_config_invalid_in_a_real_process() -> None:
    result = run_process("config", env=INVALID_CLOUD)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "S3_STORAGE_ENABLED=false" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_config_help_lists_the_environment_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["config", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("FRONTEND_TYPE", "BACKEND_LOCATION", "S3_BUCKET", "AWS_SECRET_ACCESS_KEY"):
        assert name in out
    for name, _ in (*ENVIRONMENT_VARIABLES, *CLOUD_INDICATORS):
        assert name in out


# -- usage errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["matrix", "--bogus"], ["matrix", "extra"], ["config", "--json=yes"], ["config", "-x"]],
)
def test_bad_arguments_exit_2_with_usage(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "Traceback" not in err


def test_bad_arguments_in_a_real_process() -> None:
    result = run_process("matrix", "--bogus", env={})
    assert result.returncode == 2
    assert "usage:" in result.stderr and "--bogus" in result.stderr
    assert "Traceback" not in result.stderr
