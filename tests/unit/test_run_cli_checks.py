"""What `run` and `report` check before measuring, and how failed operations are kept out.

Every case here would have been a full benchmark followed by a traceback, a silent exit 0
or a misleading line before: a failed operation recorded as a latency sample, `--out` on a
file, a missing scenarios folder, a table too large for memory, an invalid environment
with `--env`, a closed pipe, a proxy's port in a wrong-secret error.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest

from lancesync_bench.bench.env_scenario import ENV_SCENARIO, env_scenario
from lancesync_bench.bench.recorder import CellKey, Recorder, failure_of
from lancesync_bench.bench.summary import format_failures
from lancesync_bench.cli import main
from lancesync_bench.config import Secret, StorageMode
from lancesync_bench.errors import ConfigError, S3Unavailable
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.scenarios import load_scenarios
from lancesync_bench.storage.reports import SyncReport

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "scenarios"
_MODE_VARS = ("FRONTEND_TYPE", "BACKEND_LOCATION", "S3_STORAGE_ENABLED", "USE_S3_AS_PRIMARY")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _MODE_VARS:
        monkeypatch.delenv(name, raising=False)


# -- failed operations are never samples (issue 15, item 2) ------------------------------


def _recorder() -> Recorder:
    return Recorder(CellKey("sc", "local_primary_s3_backup", "loopback", 100), probe=None)


def test_a_report_saying_s3_did_not_answer_is_a_failure_not_a_sample() -> None:
    rec = _recorder()
    down = SyncReport("backup", "u", "m", reachable=False, error="connect refused")
    ok = SyncReport("backup", "u", "m")
    calls = iter([ok, down, ok])

    async def backup(_: int) -> SyncReport:
        return next(calls)

    asyncio.run(rec.run("backup_after_add_1", backup, repetitions=3))
    assert len(rec.samples) == 2
    assert [(f.operation, f.iteration, f.error) for f in rec.failures] == [
        ("backup_after_add_1", 1, "connect refused")
    ]


def test_a_report_with_an_error_fails_even_when_reachable() -> None:
    assert failure_of(SyncReport("sync", "u", "m", error="conflict")) == "conflict"
    assert failure_of(SyncReport("sync", "u", "m", reachable=False)) == "S3 did not answer"
    assert failure_of(SyncReport("sync", "u", "m")) is None
    assert failure_of({"id": "doc-1"}) is None  # a read's result is no report


def test_an_exception_is_recorded_as_failed_and_raised_again() -> None:
    rec = _recorder()

    async def restore(_: int) -> None:
        raise S3Unavailable("S3 endpoint http://x did not answer")

    with pytest.raises(S3Unavailable):
        asyncio.run(rec.run("restore_latest", restore, repetitions=2))
    assert rec.samples == []
    assert len(rec.failures) == 1
    assert rec.failures[0].error.startswith("S3Unavailable: S3 endpoint http://x")


def test_failures_are_counted_and_named_in_one_block() -> None:
    rec = _recorder()
    for i in range(12):
        rec.fail("backup_after_add_1", f"S3 did not answer ({i})", phase="warm", iteration=i)
    rec.fail("restore_latest", "S3 did not answer", phase="warm", iteration=0)
    lines = format_failures(rec.failures).splitlines()
    assert lines[0] == "13 operation(s) FAILED and were not recorded as samples:"
    assert lines[1] == "  sc/loopback/100 backup_after_add_1 (service) x12: S3 did not answer (0)"
    assert lines[2] == "  sc/loopback/100 restore_latest (service) x1: S3 did not answer"
    assert format_failures([]) == ""


# -- outputs and inputs are checked before measuring (items 3 and 9) ----------------------


def test_run_out_on_a_file_fails_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "results"
    a_file.write_text("not a folder")
    assert main(["run", "--quick", "--out", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip()
        == f"lancesync-bench: error: --out {a_file}: exists and is not a folder; give a folder"
    )


def test_a_missing_out_folder_passes_and_is_not_created_yet(tmp_path: Path) -> None:
    from lancesync_bench.cli.outputs import check_output_folder

    check_output_folder(tmp_path / "new" / "results")
    assert not (tmp_path / "new").exists()  # made when results are written, not before


def test_run_out_under_a_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("")
    assert main(["run", "--out", str(tmp_path / "f" / "sub")]) == 2
    assert f"{tmp_path / 'f'} is a file, not a folder" in capsys.readouterr().err


def test_report_out_on_a_file_fails_before_reading_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "report.png"
    a_file.write_text("")
    assert main(["report", str(tmp_path), "--out", str(a_file)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_missing_scenarios_folder_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nonexistent"
    code = main(["run", "--out", str(tmp_path / "r"), "--scenarios-dir", str(missing)])
    assert code == 2
    assert capsys.readouterr().err.strip().endswith(f"--scenarios-dir {missing}: no such folder")


def test_a_table_larger_than_memory_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (SCENARIOS / "desktop-local.toml").read_text(encoding="utf-8")
    text = text.replace("quick_sizes = [1000]", "quick_sizes = [100000000000]")
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "huge.toml").write_text(text, encoding="utf-8")
    args = ["run", "--quick", "--out", str(tmp_path / "r"), "--scenarios-dir", str(folder)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "workload.quick_sizes: a 100,000,000,000-row table of 384 dimensions" in err
    assert "GiB available; use smaller sizes" in err


# -- run --env (item 8) ------------------------------------------------------------------


def test_run_env_rejects_what_config_rejects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FRONTEND_TYPE", "bogus")
    assert main(["config"]) == 2
    config_error = capsys.readouterr().err.strip().splitlines()[-1]
    assert main(["run", "--env", "--quick", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == config_error
    assert "FRONTEND_TYPE='bogus' is not allowed" in config_error


def test_run_env_rejects_an_invalid_combination(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"FRONTEND_TYPE": "desktop", "USE_S3_AS_PRIMARY": "true"}
    with pytest.raises(ConfigError, match="USE_S3_AS_PRIMARY=true is not allowed"):
        env_scenario(load_scenarios(SCENARIOS), env)


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({"FRONTEND_TYPE": "web", "BACKEND_LOCATION": "cloud"}, "s3_primary_local_cache"),
        ({"FRONTEND_TYPE": "web", "BACKEND_LOCATION": "local"}, "local_primary_s3_sync"),
        ({"FRONTEND_TYPE": "desktop"}, "local_primary_s3_backup"),
        # A cloud indicator decides the backend, as `config` would.
        ({"FRONTEND_TYPE": "web", "AWS_LAMBDA_FUNCTION_NAME": "f"}, "s3_primary_local_cache"),
    ],
)
def test_run_env_measures_the_mode_the_environment_resolves_to(
    env: dict[str, str], mode: str
) -> None:
    sc = env_scenario(load_scenarios(SCENARIOS), {**env, "CACHE_MAX_STALENESS_MS": "250"})
    assert sc.name == ENV_SCENARIO
    assert sc.storage_mode is StorageMode(mode)
    assert sc.env["CACHE_MAX_STALENESS_MS"] == "250"
    assert "AWS_LAMBDA_FUNCTION_NAME" not in sc.env  # stated as BACKEND_LOCATION instead
    assert sc.env["BACKEND_LOCATION"] in ("cloud", "local")


def test_run_env_borrows_the_workload_of_the_same_frontend_and_backend() -> None:
    env = {"FRONTEND_TYPE": "desktop", "BACKEND_LOCATION": "local"}
    sc = env_scenario(load_scenarios(SCENARIOS), env)
    assert sc.description.endswith("workload, profiles and targets from desktop-local")
    cloud = env_scenario(load_scenarios(SCENARIOS), {**env, "BACKEND_LOCATION": "cloud"})
    assert cloud.description.endswith("from desktop-cloud")


def test_run_without_env_says_the_scenario_files_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FRONTEND_TYPE", "web")
    missing = tmp_path / "none"  # stops the run right after the note
    main(["run", "--out", str(tmp_path / "r"), "--scenarios-dir", str(missing)])
    err = capsys.readouterr().err
    assert "note: FRONTEND_TYPE set in the environment; the scenario files are measured" in err
    assert "--env would measure" in err


def test_run_env_with_scenario_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FRONTEND_TYPE", "web")
    args = ["run", "--env", "--scenario", "web-cloud", "--out", str(tmp_path)]
    assert main(args) == 2
    assert "drop --scenario" in capsys.readouterr().err


# -- the entry point (item 9) ------------------------------------------------------------


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no file descriptor")


def test_a_closed_pipe_ends_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FRONTEND_TYPE", "web")
    monkeypatch.setenv("BACKEND_LOCATION", "local")
    monkeypatch.setenv("S3_BUCKET", "some-bucket")
    monkeypatch.setattr("sys.stdout", _ClosedPipe())
    assert main(["config"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_wrong_secret_names_the_users_endpoint_not_the_proxy() -> None:
    from botocore.exceptions import ClientError

    from lancesync_bench.s3.probe import as_s3_error

    user = S3Endpoint(
        url="http://s3.example.internal:9000",
        region="us-east-1",
        access_key_id="AKIAEXAMPLE",
        secret_access_key=Secret("not-the-right-one"),
        bucket="bench",
    )
    via_proxy = user.via_proxy("http://127.0.0.1:45678").with_prefix("p")
    response: Any = {
        "Error": {"Code": "SignatureDoesNotMatch", "Message": "no"},
        "ResponseMetadata": {"HTTPStatusCode": 403},
    }
    error = as_s3_error(ClientError(response, "ListObjectsV2"), via_proxy, "listing")
    text = str(error)
    assert text.startswith("S3 endpoint http://s3.example.internal:9000 ")
    assert "(through the local proxy http://127.0.0.1:45678)" in text
    assert "check AWS_SECRET_ACCESS_KEY" in text
    assert (
        as_s3_error(ClientError(response, "x"), user, "listing")
        .args[0]
        .startswith("S3 endpoint http://s3.example.internal:9000 rejected")
    )


def test_the_delay_proxy_hands_out_an_endpoint_that_names_the_server() -> None:
    from lancesync_bench.netem import S3Proxy

    user = S3Endpoint(
        url="http://127.0.0.1:9",
        region="us-east-1",
        access_key_id="AKIAEXAMPLE",
        secret_access_key=Secret("x" * 30),
        bucket="bench",
    )
    with S3Proxy("http://127.0.0.1:9") as proxy:
        ep = proxy.endpoint_for(user)
        assert ep.url == proxy.url
        assert ep.describe() == f"http://127.0.0.1:9 (through the local proxy {proxy.url})"
    assert user.with_url("http://other:1").describe() == "http://other:1"
