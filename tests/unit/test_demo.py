"""The demo package's pieces that need no S3: configuration tables, sizes, helpers, figures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

from lancesync_bench.config import CLOUD_INDICATORS, StorageMode
from lancesync_bench.demo import (
    QUICK_ENV,
    CacheDemo,
    DemoLab,
    DemoSizes,
    OutageDemo,
    check_env,
    detection_frame,
    matrix_frame,
    plot_cache_reads,
    plot_matrix,
    plot_outage,
    validation_errors_frame,
)
from lancesync_bench.demo.configuration import VALIDATION_CASES
from lancesync_bench.demo.lab import DemoRun
from lancesync_bench.demo.tables import (
    ABSENT,
    attempt,
    counts_row,
    demo_documents,
    edited,
    report_row,
    side_by_side,
)
from lancesync_bench.errors import ConfigError, S3Unavailable
from lancesync_bench.netem import RequestCounts
from lancesync_bench.s3.endpoint import S3Endpoint
from lancesync_bench.storage.reports import SyncReport
from lancesync_bench.workload import Workload

matplotlib.use("Agg")


# -- notebook 01: configuration tables ----------------------------------------------------


def test_matrix_frame_matches_the_spec() -> None:
    frame = matrix_frame()
    assert list(frame.columns) == [
        "frontend",
        "backend",
        "storage mode",
        "S3 primary",
        "local cache",
        "S3 sync",
        "S3 backup",
        "use case",
    ]
    modes = {(r["frontend"], r["backend"]): r["storage mode"] for _, r in frame.iterrows()}
    assert modes == {
        ("web", "cloud"): "s3_primary_local_cache",
        ("web", "local"): "local_primary_s3_sync",
        ("desktop", "cloud"): "local_primary_s3_backup",
        ("desktop", "local"): "local_primary_s3_backup",
    }
    web_cloud = frame[(frame["frontend"] == "web") & (frame["backend"] == "cloud")].iloc[0]
    assert bool(web_cloud["S3 primary"]) and bool(web_cloud["local cache"])
    assert not frame[frame["frontend"] == "desktop"]["S3 primary"].any()


def test_detection_frame_covers_every_indicator_and_the_override() -> None:
    frame = detection_frame()
    assert len(frame) == len(CLOUD_INDICATORS) + 3  # none, BACKEND_LOCATION both ways
    by_name = {name: frame.iloc[i + 1] for i, (name, _) in enumerate(CLOUD_INDICATORS)}
    for name, platform in CLOUD_INDICATORS:
        row = by_name[name]
        assert str(row.name).startswith(f"{name}=")
        assert row["platform"] == platform
        assert row["detected location"] == "cloud"
        assert name in row["reason"]
        assert row["mode (web)"] == "s3_primary_local_cache"
    none = frame.loc["(no indicator)"]
    assert (none["detected location"], none["mode (web)"]) == ("local", "local_primary_s3_sync")
    override = frame.iloc[-2]
    assert "KUBERNETES_SERVICE_HOST" in str(override.name)
    assert override["detected location"] == "local"
    assert override["reason"] == "explicit: BACKEND_LOCATION=local"
    assert frame.iloc[-1]["detected location"] == "cloud"
    # Desktop apps are local-first wherever the backend runs.
    assert set(frame["mode (desktop)"]) == {"local_primary_s3_backup"}


def test_validation_errors_frame_shows_each_message_as_raised() -> None:
    frame = validation_errors_frame()
    assert len(frame) == len(VALIDATION_CASES)
    messages = dict(zip(frame.index, frame["message"], strict=True))
    assert messages["desktop app asks for S3 as primary"].startswith(
        "USE_S3_AS_PRIMARY=true is not allowed with FRONTEND_TYPE=desktop"
    )
    assert messages["web app in the cloud with S3 switched off"].startswith(
        "S3_STORAGE_ENABLED=false is not allowed with a cloud backend"
    )
    assert "KUBERNETES_SERVICE_HOST" in messages["same, the cloud detected from Kubernetes"]
    assert messages["web app in the cloud without a bucket"].startswith("S3_BUCKET is not set")
    assert "'maybe'" in messages["a flag that is not a boolean"]
    outcomes = list(frame["outcome"])
    assert outcomes[:-1] == ["ConfigError"] * (len(outcomes) - 1)
    assert outcomes[-1] == "accepted: s3_primary_local_cache"
    assert frame["message"].iloc[-1] == ""
    # No traceback, only the message; and the variables as the user set them.
    assert not frame["message"].str.contains("Traceback").any()
    assert frame.loc["frontend type not set", "variables"] == (
        "BACKEND_LOCATION=cloud S3_BUCKET=notes-app"
    )


def test_check_env_keeps_the_error_as_data() -> None:
    bad = check_env({"FRONTEND_TYPE": "desktop", "USE_S3_AS_PRIMARY": "true"})
    assert bad.config is None
    assert isinstance(bad.error, ConfigError)
    assert bad.outcome == "ConfigError"
    good = check_env({"FRONTEND_TYPE": "desktop", "S3_BUCKET": "notes-app"})
    assert good.error is None
    assert good.config is not None
    assert good.outcome == "accepted: local_primary_s3_backup"


# -- sizes and the lab without a server -----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "docs"), [("1", 12), ("true", 12), ("", 40), ("0", 40), ("off", 40)]
)
def test_sizes_from_env(value: str, docs: int) -> None:
    sizes = DemoSizes.from_env({QUICK_ENV: value})
    assert sizes.docs == docs
    assert sizes.dim == 8
    assert DemoSizes.from_env({}) == DemoSizes()


def test_sizes_reject_nonsense() -> None:
    with pytest.raises(ConfigError, match=QUICK_ENV):
        DemoSizes.from_env({QUICK_ENV: "fast"})
    with pytest.raises(ConfigError, match="docs >= 8"):
        DemoSizes(docs=3)


def test_lab_is_unusable_until_started() -> None:
    lab = DemoLab(sizes=DemoSizes.quick())
    assert not lab.running
    assert repr(lab) == "DemoLab(stopped)"
    with pytest.raises(ConfigError, match="not started"):
        lab.run("x")
    with pytest.raises(ConfigError, match="not started"):
        _ = lab.endpoint
    lab.close()  # closing a lab that never started is harmless
    lab.close()


def _endpoint(url: str = "http://127.0.0.1:9") -> S3Endpoint:
    from lancesync_bench.config import Secret

    return S3Endpoint(
        url=url,
        region="us-east-1",
        access_key_id="demo-key",
        secret_access_key=Secret("do-not-show-me"),
        bucket="demo-bucket",
        prefix="p/run-1",
    )


@pytest.mark.parametrize(
    "mode",
    [
        StorageMode.LOCAL_PRIMARY_S3_BACKUP,
        StorageMode.LOCAL_PRIMARY_S3_SYNC,
        StorageMode.S3_PRIMARY_LOCAL_CACHE,
    ],
)
def test_run_config_selects_the_mode_without_credentials(mode: StorageMode, tmp_path: Path) -> None:
    ep = _endpoint()
    run = DemoRun(
        name="x-1",
        folder=tmp_path,
        endpoint=ep.with_url("http://127.0.0.1:8"),
        direct_endpoint=ep,
        sizes=DemoSizes.quick(),
    )
    config = run.config(mode, device="dev-1")
    assert config.storage_mode is mode
    assert config.device_id == "dev-1"
    assert config.embedding_dim == 8
    assert config.cache_max_staleness_ms == 500
    assert config.local_storage_path == tmp_path / "dev-1"
    assert config.s3_max_retries == 0
    assert config.aws_secret_access_key is None
    assert config.s3_bucket == "demo-bucket"
    assert run.config(mode, device="d", place="elsewhere").local_storage_path == (
        tmp_path / "elsewhere"
    )
    proxied = run.service(mode, device="dev-1")
    direct = run.service(mode, device="dev-1", direct=True)
    assert proxied.endpoint is not None and proxied.endpoint.url == "http://127.0.0.1:8"
    assert direct.endpoint is not None and direct.endpoint.url == "http://127.0.0.1:9"
    asyncio.run(proxied.close())
    asyncio.run(direct.close())


# -- table helpers --------------------------------------------------------------------------


def test_demo_documents_are_the_workload_with_one_sentence() -> None:
    docs = demo_documents(8, 5, 3)
    full = Workload(2024, 8).documents(5, 3)
    assert [d["id"] for d in docs] == ["doc-000005", "doc-000006", "doc-000007"]
    for doc, ref in zip(docs, full, strict=True):
        assert doc["vector"] == ref["vector"]
        assert doc["metadata"] == ref["metadata"]
        assert ref["text"].startswith(doc["text"][:-1])
        assert doc["text"].endswith(".") and doc["text"].count(".") == 1
    assert demo_documents(8, 5, 3) == docs  # seeded
    changed = edited(docs[0], "new")
    assert changed["text"] == "new" and changed["vector"] == docs[0]["vector"]
    assert docs[0]["text"] != "new"


def test_side_by_side_marks_differences_and_absence() -> None:
    left = {"a": {"text": "x", "vector": [1.0]}, "b": {"text": "y", "vector": [2.0]}}
    right = {"a": {"text": "x", "vector": [1.0]}, "c": {"text": "z", "vector": [3.0]}}
    right_b = {**right, "b": {"text": "y", "vector": [9.0]}}
    frame = side_by_side(left, right, ("L", "R"))
    assert list(frame.index) == ["a", "b", "c"]
    assert list(frame["same"]) == [True, False, False]
    assert frame.loc["b", "R"] == ABSENT and frame.loc["c", "L"] == ABSENT
    # Same text, different vector: not the same document.
    assert not side_by_side(left, right_b, ("L", "R")).loc["b", "same"]


def test_report_and_counts_rows() -> None:
    report = SyncReport(
        operation="backup",
        user_id="u",
        mode="local_primary_s3_backup",
        files_up=3,
        bytes_up=300,
        requests={"PUT": 3, "LIST": 1, "GET": 0},
        remote_version=7,
        duration_s=0.01234,
    )
    row = report_row("step", report)
    assert row["S3 requests"] == 4
    assert row["by kind"] == "LIST 1, PUT 3"
    assert (row["files up"], row["bytes up"], row["remote version"], row["ms"]) == (3, 300, 7, 12.3)
    assert report_row("s", SyncReport("sync", "u", "m"))["by kind"] == "-"
    counts = RequestCounts(gets=4, lists=2, puts=2, bytes_down=1000)
    per = counts_row(counts, reads=2)
    assert per == {
        "S3 requests per read": 4.0,
        "GET": 2.0,
        "LIST": 1.0,
        "other": 1.0,
        "bytes down per read": 500,
    }


def test_attempt_keeps_library_errors_and_lets_others_through() -> None:
    async def ok() -> int:
        return 5

    async def offline() -> int:
        raise S3Unavailable("S3 is unreachable")

    async def bug() -> int:
        raise KeyError("bug")

    good = asyncio.run(attempt(ok()))
    assert (good.ok, good.value, good.error_text) == (True, 5, "")
    assert good.ms >= 0
    bad = asyncio.run(attempt(offline()))
    assert not bad.ok
    assert bad.error_text == "S3Unavailable: S3 is unreachable"
    with pytest.raises(KeyError):
        asyncio.run(attempt(bug()))


# -- figures --------------------------------------------------------------------------------


def _texts(fig: object) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts)  # type: ignore[attr-defined]


def test_plot_matrix_draws_one_coloured_cell_per_combination() -> None:
    from matplotlib.figure import Figure

    fig = plot_matrix()
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.patches) == 4
    text = _texts(fig)
    for mode in ("s3_primary_local_cache", "local_primary_s3_sync", "local_primary_s3_backup"):
        assert mode in text
    colours = {p.get_facecolor() for p in ax.patches}
    assert len(colours) == 3  # both desktop cells share their mode's colour
    import matplotlib.pyplot as plt

    assert fig.number not in plt.get_fignums()  # closed: a notebook shows it once


def test_plot_cache_reads_and_outage_from_tables() -> None:
    reads = pd.DataFrame(
        {
            "GET": [9.0, 0.0, 0.0],
            "LIST": [2.0, 0.0, 1.0],
            "other": [3.0, 0.0, 0.0],
            "found": ["1 of 1", "5 of 5", "1 of 1"],
        },
        index=["first", "hits", "check"],
    )
    cache = CacheDemo(
        reads=reads,
        staleness_ms=500,
        cache_age_ms=10.0,
        visible_within_bound=False,
        visible_after_bound=True,
        new_id="doc-000012",
    )
    fig = plot_cache_reads(cache)
    assert len(fig.axes[0].patches) == 9  # 3 steps x 3 kinds
    assert "14 (found 1 of 1)" in _texts(fig)

    def table(outcomes: list[str], paths: list[str]) -> pd.DataFrame:
        return pd.DataFrame(
            {"S3 path": paths, "outcome": outcomes, "detail": "", "ms": [0.0, 5.0, 100.0]},
            index=["1. a", "2. b", "3. c"],
        )

    outage = OutageDemo(
        local_primary=table(["ok", "unreachable", "ok"], ["up", "cut", "up"]),
        s3_primary=table(["stale", "failed", "ok"], ["cut", "cut", "up"]),
        write_error="S3Unavailable: ...",
    )
    fig = plot_outage(outage)
    assert len(fig.axes) == 2
    bars = [p for p in fig.axes[1].patches if p.get_width() > 0 and p.get_height() == 0.8]
    assert len(bars) == 3
    assert min(p.get_width() for p in bars) == pytest.approx(0.01)  # 0 ms drawn at the floor
