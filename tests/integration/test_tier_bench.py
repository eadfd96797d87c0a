"""The write-tier benchmark end to end at a tiny size (real LanceDB, real kill -9)."""

from __future__ import annotations

import json
from pathlib import Path

from lancesync_bench.cli import main


def test_tier_command_measures_every_part_and_loses_nothing(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(
        ["tier", "--rows", "300", "--writes", "120", "--kills", "2", "--out", str(tmp_path)]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "single write vs raw add" in out and "kill -9 x2" in out
    (result_file,) = tmp_path.glob("*-tier/write_tier.json")
    result = json.loads(result_file.read_text())
    figures = result["figures"]
    for name in ("service_write", "raw_add"):
        assert figures[name]["n"] == 120
    for name in ("service_read", "raw_static_read"):  # two point reads per write
        assert figures[name]["n"] == 240
    assert figures["read_after_kills"]["n"] == 120
    # The batch loop times the machine's reference job beside every batch.
    assert figures["batch_reference_job"]["n"] == figures["service_batch"]["n"] == 24
    assert "100-doc batch tail vs the machine's" in out
    assert result["after_kills"]["acknowledged"] > 0 and result["after_kills"]["lost"] == 0
    assert set(result["throughput_writes_per_s"]) == {
        "process_1_writer",
        "process_4_writer",
        "fsync_1_writer",
        "fsync_4_writer",
    }
    assert result["tier"]["log_frames"] >= 120
    assert result["memwal_skipped"] is None or "MemWAL" in result["memwal_skipped"]


def test_tier_command_rejects_a_file_as_out(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["tier", "--quick", "--out", str(target)]) == 2
