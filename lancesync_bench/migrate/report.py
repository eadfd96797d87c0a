"""What a migration did (or, in a dry run, would do), as data and as text."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lancesync_bench.migrate.content import Snapshot

__all__ = ["MigrationReport", "format_report"]


@dataclass
class MigrationReport:
    """The outcome of one migration.

    ``files``/``bytes``/``versions`` are the S3 uploads (planned ones in a dry run; for a
    sync, ``bytes`` is then the pending records' Arrow size, an estimate of the data file);
    ``records`` counts the records a final sync pushed; ``download_*`` what it pulled first.
    ``verified`` is True only when S3 was read back after the move and held the source's
    live documents (``source_content``/``target_content`` show both sides).
    """

    user_id: str
    source_mode: str
    target_mode: str
    dry_run: bool
    source: str
    target: str
    files: int = 0
    bytes: int = 0
    versions: list[int] = field(default_factory=list)
    records: int = 0
    download_files: int = 0
    download_bytes: int = 0
    source_version: int | None = None
    target_version: int | None = None
    source_content: Snapshot | None = None
    target_content: Snapshot | None = None
    verified: bool = False
    notes: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _versions(versions: list[int]) -> str:
    if not versions:
        return "none"
    if len(versions) > 3 and versions == list(range(versions[0], versions[-1] + 1)):
        return f"{versions[0]}-{versions[-1]}"
    return ", ".join(map(str, versions))


def _side(snap: Snapshot | None, version: int | None) -> str:
    if snap is not None:
        return (
            f"version {snap.version}, {snap.live} live documents, "
            f"content sha256 {snap.content_sha256[:16]}"
        )
    return "no table yet" if not version else f"version {version}"


def format_report(report: MigrationReport) -> str:
    """A few aligned lines for a terminal."""
    head = f"migrate {report.user_id}: {report.source_mode} -> {report.target_mode}"
    if report.dry_run:
        head += " (dry run: nothing was changed; below is what would move)"
    lines = [
        head,
        f"  source    {report.source} ({_side(report.source_content, report.source_version)})",
        f"  target    {report.target} ({_side(report.target_content, report.target_version)})",
        f"  upload    {report.files} files, {_size(report.bytes)}, "
        f"S3 versions {_versions(report.versions)}",
    ]
    if report.source_mode == "local_primary_s3_sync":
        lines.append(
            f"  sync      {report.records} records of this device to push; "
            f"{report.download_files} files, {_size(report.download_bytes)} to pull first"
        )
    if not report.dry_run:
        lines.append(f"  verified  {'yes' if report.verified else 'NO'}")
    lines += [f"  note      {note}" for note in report.notes]
    if report.next_steps:
        lines.append("next steps:")
        lines += [f"  - {step}" for step in report.next_steps]
    return "\n".join(lines)
