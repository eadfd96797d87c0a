"""One line of headline figures per section, for the printed table and the file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lancesync_bench.chaos.common import PRIMARY, tail_ms
from lancesync_bench.chaos.report import Section

__all__ = ["summarise"]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _outage(f: dict[str, Any]) -> str:
    parts = []
    for mode, m in f.get("modes", {}).items():
        short = mode.replace("local_primary_s3_", "").replace("_local_cache", "")
        if mode == PRIMARY:
            parts.append(
                f"{short}: {m['reads_outage']['ok']} stale reads served, "
                f"{m['writes_failed']['outage']} writes failed (p99/max "
                f"{_ms(tail_ms(m['failed_write_latency_outage']))}), caught up in "
                f"{m.get('catch_up_s')} s"
            )
        else:
            parts.append(
                f"{short}: {sum(m['writes_acknowledged'].values())} acked, "
                f"{m['writes_lost']} lost, write p99/max "
                f"{_ms(tail_ms(m['write_latency_before']))} before -> "
                f"{_ms(tail_ms(m['write_latency_outage']))} during, caught up in "
                f"{m.get('catch_up_s')} s"
            )
    return "; ".join(parts)


def summarise(section: Section) -> None:
    """Set ``section.summary`` from its figures (nothing when a figure is missing)."""
    f = section.figures
    table: dict[str, Callable[[], str]] = {
        "kill": lambda: (
            f"{f['trials']} trials, {f['complete']} complete, {f['rows_lost']} of "
            f"{f['acknowledged_writes']} acknowledged writes lost, "
            f"{f['killed_mid_operation']} killed mid-operation"
            + (
                f", {f['server_torn_uploads']} upload(s) the S3 server kept cut short "
                "(repaired by the rerun)"
                if f.get("server_torn_uploads")
                else ""
            )
        ),
        "outage": lambda: _outage(f),
        "flaky": lambda: (
            f"{f['faults_injected']} injected faults, {f['writes_lost']} acknowledged "
            f"writes lost over {f['operations_per_mode']} operations per mode"
        ),
        "devices": lambda: (
            f"{f['rounds']} rounds, {f['acknowledged_records']} acknowledged records, "
            f"hashes {f['hash_a']} / {f['hash_b']}, {f['acknowledged_lost']} lost"
        ),
        "integrity": lambda: (
            f"{sum(c['detected'] for c in f['corruption_cases'])}/"
            f"{len(f['corruption_cases'])} rotten objects detected, "
            f"{sum(bool(c['rotten_files_installed']) for c in f['corruption_cases'])} "
            f"installed; multi-writer modes refused without If-None-Match: "
            f"{all(r['refused'] for r in f['conditional_put']['refused'].values())}"
        ),
        "bad_input": lambda: (
            f"{f['rejected_cleanly']}/{f['cases']} bad inputs rejected cleanly with nothing written"
        ),
        "security": lambda: (
            f"{sum(r['requests_by_alice'] for r in f['isolation'])} S3 requests stayed "
            f"in their user's prefix; {f['leak_scan']['files']} files and "
            f"{f['leak_scan']['texts']} texts scanned, "
            f"{len(f['leak_scan']['leaks'])} secret leaks"
        ),
    }
    if section.name not in table:
        return  # the section writes its own summary
    try:
        text = table[section.name]()
    except (KeyError, TypeError, ZeroDivisionError):
        text = ""  # the section failed before its figures existed; its checks say why
    section.summary = text
