"""`lancesync-bench report` and the report package on small synthetic runs.

The runs are written with the real results envelope (``results.write_run``), so the report
reads exactly what a benchmark run leaves behind.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest

from lancesync_bench import report
from lancesync_bench.bench.verdicts import stats_rows
from lancesync_bench.cli import main
from lancesync_bench.results import SampleRow, VerdictRow, write_run

# Not a secret the redaction knows by key name: only the report's own care keeps it out.
PLANTED = "AKIAPLANTED0SECRET0VALUE"
PROFILES = [
    {"name": "loopback", "rtt_ms": 0.0, "jitter_ms": 0.0},
    {"name": "same-region", "rtt_ms": 20.0, "jitter_ms": 2.0},
]
# (scenario, storage mode, operation, phase, median ms on loopback, n, S3 requests)
OPS: list[tuple[str, str, str, str, float, int, int]] = [
    ("desktop-local", "local_primary_s3_backup", "cold_read", "cold", 150.0, 3, 0),
    ("desktop-local", "local_primary_s3_backup", "point_read", "warm", 2.5, 20, 0),
    ("desktop-local", "local_primary_s3_backup", "add_1", "warm", 4.0, 20, 0),
    ("desktop-local", "local_primary_s3_backup", "backup_after_add_1", "warm", 80.0, 20, 4),
    ("web-cloud", "s3_primary_local_cache", "point_read", "warm", 3.0, 20, 0),
    ("web-cloud", "s3_primary_local_cache", "miss_read", "warm", 70.0, 20, 4),
]
BASELINE = "baseline:aws-s3-sync"
VERDICTS: list[tuple[str, str, str, str, str, float | None, str]] = [
    ("desktop-local", "loopback", "add_1", "local_write", "FAIL", 12.5, "slow write note"),
    ("desktop-local", "loopback", "point_read", "local_read", "PASS", 3.1, "fast read note"),
    ("web-cloud", "loopback", "miss_read", "s3_read", "BELOW", 41.0, "below band note"),
    ("web-cloud", "same-region", "point_read", "local_point_read", "N/A", None, "n=20 note"),
]


_KEY = ("scenario", "storage_mode", "profile", "size", "operation", "path", "phase")


def _rows(key: tuple[Any, ...], values: Any, requests: int | None) -> list[SampleRow]:
    """One sample row per value, for ``key`` = (scenario, mode, profile, size, op, path, phase)."""
    out = []
    for i, ms in enumerate(values):
        row: dict[str, Any] = dict(zip(_KEY, key, strict=True))
        row |= {
            "iteration": i,
            "latency_ms": float(ms),
            "requests": requests,
            "bytes": None if requests is None else requests * 4096,
        }
        out.append(cast(SampleRow, row))
    return out


def _samples(*, sizes: tuple[int, ...], profiles: list[str], extras: bool) -> list[SampleRow]:
    """Lognormal latencies; RTT adds requests x 20 ms; a baseline and a sweep when ``extras``."""
    rng = np.random.default_rng(7)
    rows: list[SampleRow] = []
    for scenario, mode, op, phase, median, n, requests in OPS:
        for profile in profiles:
            rtt = 20.0 if profile == "same-region" else 0.0
            for size in sizes:
                grow = (size / 1000) ** 0.3
                values = (median * grow + requests * rtt) * np.exp(rng.normal(0, 0.1, n))
                key = (scenario, mode, profile, size, op)
                rows += _rows((*key, "service", phase), values, requests)
                if extras and op == "backup_after_add_1":
                    # the baseline: five times the service's time, ten times its requests
                    rows += _rows((*key, BASELINE, phase), values * 5.0, requests * 10)
    if extras:
        for users in (1, 4, 16):
            values = 2.5 * users**0.5 * np.exp(rng.normal(0, 0.1, 20))
            op = f"sweep_point_read_u{users}"
            key = ("desktop-local", "local_primary_s3_backup", "loopback", sizes[0], op)
            rows += _rows((*key, "service", "warm"), values, 0)
    return rows


def _verdicts() -> list[VerdictRow]:
    out = []
    for scenario, profile, op, target, status, value, note in VERDICTS:
        row: dict[str, Any] = {
            "scenario": scenario,
            "storage_mode": "local_primary_s3_backup",
            "profile": profile,
            "size": 1000,
            "operation": op,
            "path": "service",
            "target": target,
            "criterion": "p95 < 10 ms",
            "status": status,
            "value_ms": value,
            "note": note,
        }
        out.append(cast(VerdictRow, row))
    return out


def _write(
    folder: Path,
    *,
    sizes: tuple[int, ...] = (1000, 10000),
    profiles: tuple[str, ...] = ("loopback", "same-region"),
    extras: bool,
) -> Path:
    samples = _samples(sizes=sizes, profiles=list(profiles), extras=extras)
    metadata = {
        "git_commit": "0123456789abcdef",
        "s3": {
            "provider": "seaweedfs-embedded",
            "provider_version": "4.48",
            "kind": "embedded",
            "url": f"http://127.0.0.1:9000/?k={PLANTED}",
            "access_key_id": PLANTED,
        },
        "profiles": [p for p in PROFILES if p["name"] in profiles],
    }
    scenario = {"name": "desktop-local", "targets": {"local_read_ms": 10.0, "s3_min_ms": 50.0}}
    write_run(
        folder,
        metadata=metadata,
        scenarios=[scenario],
        stats_rows=stats_rows(samples),
        samples_rows=samples,
        verdict_rows=_verdicts(),
    )
    return folder


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], str]:
    """A run with baselines and a sweep, reported through the CLI's ``--latest``."""
    root = tmp_path_factory.mktemp("runs")
    run = _write(root / "20250101T000000Z-aaaaaa", extras=True)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["report", "--latest", str(root)])
    assert code == 0
    return run, [Path(line) for line in out.getvalue().splitlines()], out.getvalue()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A run without baselines or sweep, reported into a folder holding a stale figure."""
    run = _write(tmp_path_factory.mktemp("plain") / "run", extras=False)
    out = run / "elsewhere"
    out.mkdir()
    (out / "baselines.png").write_bytes(b"left over from an earlier report")
    return run, report.write_report(run, out)


def _html(paths: list[Path]) -> str:
    return next(p for p in paths if p.suffix == ".html").read_text(encoding="utf-8")


def test_cli_writes_every_figure_and_one_page_into_run_report(
    full: tuple[Path, list[Path], str],
) -> None:
    import matplotlib.image

    run, paths, _ = full
    names = {p.name for p in paths}
    # This run has no search-parameter sweep: no latency_recall figure (test_report_recall).
    drawn = [stem for stem, _, _ in report.FIGURES if stem != "latency_recall"]
    expected = {f"{stem}.png" for stem in drawn} | {"report.html"}
    assert names == expected
    for p in paths:
        assert p.parent == run / "report" and p.is_file()
        if p.suffix == ".png":
            pixels = matplotlib.image.imread(p)
            assert pixels.ndim == 3 and min(pixels.shape[:2]) > 200  # decodes, not a stub
            assert float(pixels[..., :3].std()) > 0.01  # something is drawn on the white
            assert b"http" not in p.read_bytes()  # matplotlib's software tag is stripped


def test_page_is_self_contained_and_shows_verdicts_without_secrets(
    full: tuple[Path, list[Path], str],
) -> None:
    page = _html(full[1])
    assert "http://" not in page and "https://" not in page
    assert PLANTED not in page and "127.0.0.1" not in page
    assert not re.search(r"<(script|link|iframe)\b", page)
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    # every figure but the verdict PNG (the page has the table as HTML) and latency_recall
    # (this run has no search-parameter sweep)
    assert len(sources) == len(report.FIGURES) - 2
    rows = re.findall(r'<tr class="([A-Z]+)">(.*?)</tr>', page)
    for scenario, profile, op, target, status, _, note in VERDICTS:
        cells = (scenario, profile, op, target, status, note)
        assert any(
            cls == status.replace("/", "") and all(f"<td>{c}</td>" in tds for c in cells)
            for cls, tds in rows
        ), f"no {status} row for {scenario}/{profile}/{op}"
    assert "1 FAIL" in page and "1 PASS" in page and "1 BELOW" in page and "1 N/A" in page
    assert "seaweedfs-embedded 4.48" in page
    assert "not cloud S3" in page
    assert "same-region (RTT 20 ms, emulated)" in page


def test_missing_baselines_and_sweep_skip_their_figures_and_stale_files(
    plain: tuple[Path, list[Path]],
) -> None:
    run, paths = plain
    names = {p.name for p in paths}
    assert "baselines.png" not in names and "growth_users.png" not in names
    assert {"latency.png", "requests.png", "profiles.png", "growth_size.png"} <= names
    assert not (run / "elsewhere" / "baselines.png").exists()  # no mix of two reports
    assert all(p.parent == run / "elsewhere" for p in paths)
    data = report.load_report_data(run)
    assert report.baseline_figure(data) is None
    assert report.users_growth_figure(data) is None
    assert report.baseline_ratios(data).empty
    page = _html(paths)
    assert "slow write note" in page and "https://" not in page and PLANTED not in page


def test_baseline_ratio_is_service_median_over_baseline_median_as_in_run(
    full: tuple[Path, list[Path], str],
) -> None:
    data = report.load_report_data(full[0])
    ratios = report.baseline_ratios(data)
    assert set(ratios["baseline"]) == {"aws-s3-sync"}
    assert len(ratios) == 4  # 2 profiles x 2 sizes of backup_after_add_1
    assert np.allclose(ratios["ratio"], 0.2)  # the baseline takes five times as long
    # The figure says it in the same words as the terminal: the service is 5x faster.
    fig = report.baseline_figure(data)
    assert fig is not None
    texts = {t.get_text().strip() for ax in fig.axes for t in ax.texts}
    assert "5x faster" in texts
    assert "service slower \u2192" in texts
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["aws s3 sync"]


def test_ratios_are_said_in_words_one_direction_everywhere() -> None:
    from lancesync_bench.bench.summary import format_baselines, ratio_words
    from lancesync_bench.report.baselines import ratio_label

    assert (
        ratio_words(2.2, "baseline:lancedb-local") == "2.2x slower than plain LanceDB on local disk"
    )
    assert ratio_words(1 / 1.3, "baseline:rclone-sync") == "1.3x faster than rclone sync"
    assert ratio_words(1.02, "baseline:lancedb-s3") == "as fast as plain LanceDB on S3"
    assert ratio_words(None, "baseline:x") == "no ratio against x"
    assert (ratio_label(2.2), ratio_label(1 / 1.3), ratio_label(1.0)) == (
        "2.2x slower",
        "1.3x faster",
        "same",
    )
    row = {
        "scenario": "web-cloud",
        "profile": "loopback",
        "size": 1000,
        "operation": "point_read",
        "baseline": "baseline:lancedb-local",
        "service_p50_ms": 1.1,
        "baseline_p50_ms": 0.5,
        "median_ratio": 2.2,
    }
    table = format_baselines([row])
    assert table.splitlines()[0].split()[-2:] == ["service", "is"]
    assert table.splitlines()[-1].endswith("2.2x slower than plain LanceDB on local disk")


def test_baselines_figure_stays_compact_with_many_rows(tmp_path: Path) -> None:
    """A full run's ~40 rows: no more than ~0.6 in per row, ticks that do not collide."""
    rows: list[SampleRow] = []
    for sc in ("desktop-cloud", "desktop-local", "web-cloud", "web-local"):
        for op in ("point_read", "vector_search", "add_1", "add_batch"):
            for size in (1000, 10000, 100000):
                key = (sc, "local_primary_s3_backup", "loopback", size, op)
                rows += _rows((*key, "service", "warm"), [1.0] * 20, 0)
                rows += _rows((*key, "baseline:lancedb-local", "warm"), [0.02] * 20, 0)
                rows += _rows((*key, "baseline:lancedb-s3", "warm"), [40.0] * 20, 0)
    write_run(
        tmp_path / "run",
        metadata={"profiles": PROFILES[:1]},
        scenarios=[],
        stats_rows=stats_rows(rows),
        samples_rows=rows,
        verdict_rows=[],
    )
    fig = report.baseline_figure(report.load_report_data(tmp_path / "run"))
    assert fig is not None
    _, height = fig.get_size_inches()
    assert height <= 48 * 0.6 + 2.5
    ax = fig.axes[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert len(ticks) <= 8  # 5 decades: one label each, not three


def test_stats_table_carries_percentiles_and_request_medians(
    plain: tuple[Path, list[Path]],
) -> None:
    table = report.stats_table(report.load_report_data(plain[0]))
    backup = table[(table["operation"] == "backup_after_add_1") & (table["size"] == 1000)]
    assert list(backup["profile"]) == ["loopback", "same-region"]  # fastest network first
    assert (backup["requests"] == 4).all() and (backup["kib"] == 16).all()
    cold = table[table["operation"] == "cold_read"]
    assert cold["p95_ms"].isna().all() and cold["p50_ms"].notna().all()  # n=3: no p95


def test_verdict_table_puts_failures_first(plain: tuple[Path, list[Path]]) -> None:
    table = report.verdict_table(report.load_report_data(plain[0]))
    assert list(table["status"]) == ["FAIL", "PASS", "BELOW", "N/A"]
    assert table["value"].iloc[-1] == "-"


@pytest.mark.parametrize(
    ("operation", "label", "users"),
    [
        ("sweep_point_read_u8", "point_read", 8),
        ("sweep_add_1@4", "add_1", 4),
        ("sweep_vector_search_16users", "vector_search", 16),
    ],
)
def test_sweep_operation_names_give_label_and_users(operation: str, label: str, users: int) -> None:
    frame = pd.DataFrame(
        {"operation": [operation, "sweep_without_count", "point_read"], "phase": ["warm"] * 3}
    )
    out = report.sweep_samples(frame)
    assert list(out["label"]) == [label] and list(out["users"]) == [users]


def test_single_profile_single_size_run_still_draws(tmp_path: Path) -> None:
    run = _write(tmp_path / "run", sizes=(1000,), profiles=("loopback",), extras=False)
    data = report.load_report_data(run)
    assert report.profiles_figure(data) is None  # nothing to compare a profile with
    growth = report.size_growth_figure(data)
    assert growth is not None and "only one table size" in growth.get_suptitle()
    requests = report.requests_figure(data)
    assert requests is not None and "no emulated profile" in requests.get_suptitle()


def test_cli_without_results_json_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no results.json" in err and "Traceback" not in err
    _write(empty / "20250101T000000Z-bbbbbb", sizes=(1000,), extras=False)
    assert main(["report", str(empty)]) == 2  # a folder of runs: hint at --latest
    assert "--latest" in capsys.readouterr().err
    assert main(["report", str(empty / "20250101T000000Z-bbbbbb"), "--format", "pdf"]) == 2
    assert "png, html" in capsys.readouterr().err


def test_cli_corrupt_samples_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _write(tmp_path / "run", sizes=(1000,), profiles=("loopback",), extras=False)
    with (run / "samples.csv").open("a", encoding="utf-8") as f:
        f.write("tampered\n")
    assert main(["report", str(run)]) == 2
    assert "checksum" in capsys.readouterr().err
    assert not (run / "report" / "report.html").exists()


def test_run_without_samples_gets_a_page_and_no_figures(tmp_path: Path) -> None:
    run = tmp_path / "empty"
    write_run(run, metadata={}, scenarios=[], stats_rows=[], samples_rows=[], verdict_rows=[])
    paths = report.write_report(run, formats="html")
    assert [p.name for p in paths] == ["report.html"]
    page = _html(paths)
    assert "No figures" in page and "No verdicts" in page and "S3 server:</b> not recorded" in page


def _sweep_run(folder: Path) -> Path:
    """A sweep at two table sizes whose medians differ (12.8 and 21.3 ms at 1 user)."""
    rows: list[SampleRow] = []
    for size, median in ((1000, 12.8), (10000, 21.3)):
        for users in (1, 2, 4):
            key = ("web-cloud", "s3_primary_local_cache", "same-region", size)
            op = f"sweep_point_read_u{users}"
            rows += _rows((*key, op, "service", "warm"), [median * users**0.3] * 20, None)
            rows += _rows((*key, "point_read", "service", "warm"), [median] * 20, 0)
    write_run(
        folder,
        metadata={"profiles": PROFILES},
        scenarios=[],
        stats_rows=stats_rows(rows),
        samples_rows=rows,
        verdict_rows=[],
    )
    return folder


def test_users_growth_draws_one_line_per_table_size(tmp_path: Path) -> None:
    data = report.load_report_data(_sweep_run(tmp_path / "run"))
    fig = report.users_growth_figure(data)
    assert fig is not None
    ax = fig.axes[0]
    curves = [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()]
    styles = [line.get_linestyle() for line in ax.get_lines()]
    solid = [y for y, style in zip(curves, styles, strict=True) if style == "-" and len(y) == 3]
    assert sorted(round(float(y[0]), 1) for y in solid) == [12.8, 21.3]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "web-cloud / same-region / 1,000 rows" in legend
    assert "web-cloud / same-region / 10,000 rows" in legend


def test_size_growth_labels_more_than_the_decades(tmp_path: Path) -> None:
    data = report.load_report_data(_sweep_run(tmp_path / "run"))
    fig = report.size_growth_figure(data, profile="same-region")
    assert fig is not None
    ax = fig.axes[0]
    fig.canvas.draw()
    low, high = ax.get_ylim()
    shown = [t for t in ax.get_yticks() if low <= t <= high]
    assert len(shown) >= 5  # 10, 20, 50, 100, 200 rather than 10 and 100 alone
    assert 20 in [round(t) for t in shown]


def test_sweep_table_prints_every_level() -> None:
    from lancesync_bench.bench.summary import format_sweep

    rows = [
        {
            "scenario": "web-cloud",
            "profile": "same-region",
            "size": size,
            "users": users,
            "operation": "point_read",
            "n": 14 * users,
            "p50_ms": 12.8 * users,
            "p95_ms": None if users == 1 else 20.0 * users,
            "late_share": 0.25,
        }
        for size in (1000, 10000)
        for users in (1, 4)
    ]
    lines = format_sweep(rows).splitlines()
    assert lines[0].split() == [
        "scenario",
        "profile",
        "size",
        "operation",
        "users",
        "offered/s",
        "done/s",
        "n",
        "p50",
        "ms",
        "p95",
        "ms",
        "late",
    ]
    assert len(lines) == 2 + 4
    assert lines[2].split() == [
        "web-cloud",
        "same-region",
        "1000",
        "point_read",
        "1",
        "-",  # rows of runs before the ramp carry no load figures
        "-",
        "14",
        "12.8",
        "-",
        "25%",
    ]
    knee = {**rows[-1], "offered_per_s": 160.0, "throughput_per_s": 101.5, "knee": "why"}
    lines = format_sweep([*rows, knee]).splitlines()
    assert lines[-2].split()[5:7] == ["160.0", "101.5"]
    assert lines[-1] == "knee: web-cloud at 10000 rows, 4 users offered 160 ops/s: why"
    assert format_sweep([]) == ""


def test_the_rtt_model_is_checked_and_a_miss_over_20_percent_is_flagged(tmp_path: Path) -> None:
    from lancesync_bench.report.rtt_model import model_rows

    # The fixture's latencies follow the model (loopback median + requests x 20 ms).
    run = _write(tmp_path / "held", sizes=(1000,), extras=False)
    held = model_rows(report.load_report_data(run))
    assert set(held["operation"]) == {"backup_after_add_1", "miss_read"}
    assert set(held["profile"]) == {"same-region"}
    assert not held["flagged"].any()
    assert "Every measured p50 is within 20%" in _html(report.write_report(run, tmp_path / "h"))

    # The same run with one operation's same-region figure twice its model.
    rows = [
        r
        if not (r["operation"] == "miss_read" and r["profile"] == "same-region")
        else cast(SampleRow, {**r, "latency_ms": r["latency_ms"] * 2})
        for r in _samples(sizes=(1000,), profiles=["loopback", "same-region"], extras=False)
    ]
    missed = tmp_path / "missed"
    write_run(
        missed,
        metadata={"profiles": PROFILES},
        scenarios=[{"name": "web-cloud"}],
        stats_rows=stats_rows(rows),
        samples_rows=rows,
        verdict_rows=[],
    )
    checked = model_rows(report.load_report_data(missed))
    flagged = checked[checked["flagged"]]
    assert list(flagged["operation"]) == ["miss_read"]
    assert 0.8 < float(flagged["deviation"].iloc[0]) < 1.2  # about +100 %
    page = _html(report.write_report(missed, tmp_path / "m"))
    assert "1 of 2</b> operation-profile pairs are more than 20% off the model" in page
    assert "miss_read" in page.split('id="model"')[1]
