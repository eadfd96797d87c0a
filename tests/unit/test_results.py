"""The results envelope: round trip, redaction, refusal to leak, atomic writes, metadata."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pytest

from lancesync_bench.config import Secret
from lancesync_bench.results import (
    SAMPLE_COLUMNS,
    SCHEMA_VERSION,
    Phase,
    ResultsError,
    SampleRow,
    StatsRow,
    VerdictRow,
    collect_metadata,
    latest_run,
    load,
    load_stats,
    load_verdicts,
    redact,
    write_run,
)
from lancesync_bench.scenarios import Profile, load_scenario
from lancesync_bench.stats import Targets, judge, summarize

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "web-cloud.toml"
KEY: dict[str, Any] = {  # the identifying columns shared by every row type
    "scenario": "web-cloud",
    "storage_mode": "s3_primary_local_cache",
    "profile": "loopback",
    "size": 1000,
    "operation": "point_read",
    "path": "service",
}


def _sample(phase: Phase, i: int, ms: float, requests: int, size: int | None) -> SampleRow:
    row: dict[str, Any] = {**KEY, "phase": phase, "iteration": i, "latency_ms": ms}
    row.update(requests=requests, bytes=size)
    return cast(SampleRow, row)


def _samples(n: int = 25) -> list[SampleRow]:
    cold = [_sample("cold", 0, 19.5, 4, None)]
    return cold + [_sample("warm", i, 3.0 + i / 10, 2, 4096) for i in range(n)]


def _stats_and_verdicts(samples: list[SampleRow]) -> tuple[list[StatsRow], list[VerdictRow]]:
    summary = summarize([r["latency_ms"] * 1e6 for r in samples if r["phase"] == "warm"])
    stats = [cast(StatsRow, {**KEY, "phase": "warm", **summary.as_dict()})]
    target = Targets().as_targets()["local_read"]
    v = judge(summary, target, profile="loopback")
    verdict = {
        **KEY,
        "target": target.name,
        "criterion": target.describe(),
        "status": v.status,
        "value_ms": v.value_ms,
        "note": v.note,
    }
    return stats, [cast(VerdictRow, verdict)]


def _write(run_dir: Path, **overrides: Any) -> Path:
    samples = _samples()
    stats, verdicts = _stats_and_verdicts(samples)
    kwargs: dict[str, Any] = {
        "metadata": collect_metadata({"provider": "seaweedfs-embedded"}, [Profile("loopback", 0)]),
        "scenarios": [load_scenario(SCENARIO)],
        "stats_rows": stats,
        "samples_rows": samples,
        "verdict_rows": verdicts,
    }
    return write_run(run_dir, **{**kwargs, **overrides})


def test_write_and_load_round_trip(tmp_path: Path) -> None:
    path = _write(tmp_path / "run-1", extra={"note": "hello"})
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION and data["run_id"] == "run-1"
    assert data["scenarios"][0]["storage_mode"] == "s3_primary_local_cache"
    assert data["samples_count"] == 26 and data["extra"] == {"note": "hello"}
    frame = load(tmp_path / "run-1")
    assert list(frame.columns) == ["run_id", *SAMPLE_COLUMNS]
    assert len(frame) == 26 and (frame["run_id"] == "run-1").all()
    assert frame["bytes"].isna().sum() == 1 and frame["requests"].sum() == 4 + 2 * 25
    assert frame.loc[0, "phase"] == "cold" and frame["latency_ms"].iloc[0] == 19.5
    assert load(path).equals(frame)
    stats = load_stats(path)
    assert stats.loc[0, "n"] == 25 and stats.loc[0, "p95_ms"] == pytest.approx(5.28)
    assert stats["p99_ms"].isna().iloc[0]  # 25 samples cannot support p99
    assert load_verdicts(path).loc[0, "status"] == "PASS"


def test_existing_run_is_not_overwritten(tmp_path: Path) -> None:
    _write(tmp_path / "r")
    with pytest.raises(ResultsError, match="already exists"):
        _write(tmp_path / "r")
    _write(tmp_path / "r", overwrite=True)


def test_redact_replaces_secret_keys_recursively() -> None:
    out = redact(
        {
            "aws_secret_access_key": "s1",
            "nested": [{"Password": "s2", "token": None}],
            "options": {"session_token": "s3", "region": "us-east-1"},
            "key": Secret("s4"),
            "url": "http://user:s5@host:9000/b",
        }
    )
    text = json.dumps(out)
    assert not any(s in text for s in ("s1", "s2", "s3", "s4", "s5"))
    assert out["options"]["region"] == "us-east-1" and out["nested"][0]["token"] is None


def test_planted_secret_is_caught(tmp_path: Path) -> None:
    run = tmp_path / "leak"
    with pytest.raises(ResultsError, match="secret"):
        _write(run, extra={"endpoint_note": "key is hunter2-secret"}, secrets=["hunter2-secret"])
    assert not run.exists() or not any(run.iterdir())


def test_secret_under_a_secret_key_is_redacted_not_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "ok", extra={"aws_secret_access_key": "zz-top"}, secrets=["zz-top"])
    assert "zz-top" not in path.read_text()


def test_failed_serialization_leaves_no_file(tmp_path: Path) -> None:
    run = tmp_path / "partial"
    run.mkdir()
    with pytest.raises(TypeError):
        _write(run, extra={"unserializable": object()})
    assert list(run.iterdir()) == []


def test_bad_sample_row_is_refused(tmp_path: Path) -> None:
    bad: list[dict[str, Any]] = [dict(row) for row in _samples()]
    bad[1]["phase"] = "hot"
    with pytest.raises(ResultsError, match="samples row 2"):
        _write(tmp_path / "bad", samples_rows=bad)


def test_tampered_samples_are_detected(tmp_path: Path) -> None:
    path = _write(tmp_path / "t")
    csv = path.parent / "samples.csv"
    csv.write_text(csv.read_text().replace("19.5", "1.5"))
    with pytest.raises(ResultsError, match="checksum"):
        load(path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "v")
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ResultsError, match="schema_version"):
        load_stats(path)


def test_latest_run_picks_the_newest_complete_run(tmp_path: Path) -> None:
    assert latest_run(tmp_path) is None
    for name, created in (("a", "2025-01-02T00:00:00+00:00"), ("b", "2025-01-01T00:00:00+00:00")):
        path = _write(tmp_path / name)
        path.write_text(json.dumps({**json.loads(path.read_text()), "created_at": created}))
    (tmp_path / "incomplete").mkdir()
    (tmp_path / "incomplete" / "samples.csv").write_text("x")
    assert latest_run(tmp_path) == tmp_path / "a"


def test_metadata_is_hostname_free_and_complete() -> None:
    meta = collect_metadata({"secret_access_key": "abc", "url": "http://127.0.0.1:1"}, [])
    assert meta["s3"]["secret_access_key"] == "***"
    assert set(meta["versions"]) >= {"lancedb", "pylance", "pyarrow", "numpy"}
    assert meta["cpu"]["count"] and meta["python"].split()[-1].count(".") == 2
    text = json.dumps(meta)
    host = socket.gethostname()
    if len(host) >= 4:
        assert host not in text


# -- schema version 2: machine_slowdown ------------------------------------------------


def test_machine_slowdown_round_trips_and_may_be_left_out(tmp_path: Path) -> None:
    samples = _samples()
    samples[1]["machine_slowdown"] = 2.5
    samples[2]["machine_slowdown"] = None
    assert "machine_slowdown" not in samples[3]  # rows built without a probe (the sweep)
    path = _write(tmp_path / "ms", samples_rows=samples)
    header = (path.parent / "samples.csv").read_text().splitlines()[0]
    assert header.endswith(",bytes,machine_slowdown")
    frame = load(path)
    assert frame["machine_slowdown"].dtype == "float64"
    assert frame["machine_slowdown"].iloc[1] == 2.5
    assert frame["machine_slowdown"].isna().sum() == len(samples) - 1


def test_sample_row_with_unknown_or_missing_columns_is_refused(tmp_path: Path) -> None:
    extra: list[dict[str, Any]] = [dict(row) for row in _samples()]
    extra[0]["cpu_speed"] = 1.0
    with pytest.raises(ResultsError, match="samples row 1"):
        _write(tmp_path / "extra", samples_rows=extra)
    short: list[dict[str, Any]] = [dict(row) for row in _samples()]
    del short[3]["latency_ms"]  # only machine_slowdown may be left out
    with pytest.raises(ResultsError, match="samples row 4"):
        _write(tmp_path / "short", samples_rows=short)


def _as_version_1(path: Path) -> None:
    """Rewrite a run as schema version 1 wrote it: no machine_slowdown, no steady figures."""
    csv_path = path.parent / "samples.csv"
    lines = csv_path.read_text().splitlines()
    assert lines[0].endswith(",machine_slowdown")
    old = "\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n"
    csv_path.write_text(old)
    data = json.loads(path.read_text())
    new_keys = {"slowed_n", "steady_n", "steady_p95_ms", "steady_p99_ms"}
    new_keys |= {"n", "steady_value_ms", "steady_status"}
    for key in ("stats", "verdicts"):
        data[key] = [{k: v for k, v in row.items() if k not in new_keys} for row in data[key]]
    data["schema_version"] = 1
    data["samples_sha256"] = hashlib.sha256(old.encode()).hexdigest()
    path.write_text(json.dumps(data))


def test_version_1_runs_still_load_with_the_new_columns_missing(tmp_path: Path) -> None:
    path = _write(tmp_path / "v1")
    _as_version_1(path)
    assert "machine_slowdown" not in (path.parent / "samples.csv").read_text()
    frame = load(path)
    assert list(frame.columns) == ["run_id", *SAMPLE_COLUMNS]
    assert frame["machine_slowdown"].isna().all() and len(frame) == 26
    assert frame["latency_ms"].iloc[0] == 19.5  # the old columns read as before
    stats = load_stats(path)
    assert stats.loc[0, "p95_ms"] == pytest.approx(5.28) and pd.isna(stats.loc[0, "slowed_n"])
    verdicts = load_verdicts(path)
    assert verdicts.loc[0, "status"] == "PASS" and pd.isna(verdicts.loc[0, "steady_status"])


def test_unknown_schema_versions_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "v0")
    data = json.loads(path.read_text())
    for version in (0, "2", None):
        path.write_text(json.dumps({**data, "schema_version": version}))
        with pytest.raises(ResultsError, match="this reader knows 1, 2"):
            load(path)
