"""What a reliability run records: sections of figures and pass/fail checks, and the file.

``results/<run-id>/reliability.json`` holds one section per fault. A section has
``figures`` (numbers a reader wants: trials, rows lost, latencies), ``checks`` (named
claims, each passed or failed with a one-line detail), and for the bad-input catalogue
``cases`` (one row per input). The file is redacted, checked for known secret values and
written atomically; its presence means the run finished.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lancesync_bench.errors import LanceSyncError
from lancesync_bench.results import atomic_write, redact

__all__ = [
    "RELIABILITY_FILE",
    "SCHEMA_VERSION",
    "Check",
    "Section",
    "envelope",
    "find_secrets",
    "leak_paths",
    "render_summary",
    "serialise",
    "write_reliability",
]

# Bump on any change a reader must know about (renamed or removed fields, changed units).
SCHEMA_VERSION = 1
RELIABILITY_FILE = "reliability.json"
# A detail is one line a human reads in a table; longer text belongs in figures or cases.
_MAX_DETAIL = 400


@dataclass(frozen=True)
class Check:
    """One claim a section tested, whether it held, and the evidence in one line."""

    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass
class Section:
    """The outcome of one fault family: figures, checks and (optionally) catalogue cases."""

    name: str
    title: str
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)
    summary: str = ""  # one line of headline figures for the printed table
    duration_s: float = 0.0
    _started: float = field(default_factory=time.perf_counter, repr=False)

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        """Record a check; returns ``passed`` so callers can branch on it."""
        text = " ".join(str(detail).split())
        if len(text) > _MAX_DETAIL:
            text = text[: _MAX_DETAIL - 3] + "..."
        self.checks.append(Check(name, bool(passed), text))
        return bool(passed)

    def figure(self, **values: Any) -> None:
        """Add or replace figures."""
        self.figures.update(values)

    @property
    def passed(self) -> bool:
        """Whether the section recorded at least one check and every check held."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    def finish(self) -> None:
        """Stamp the section's duration."""
        self.duration_s = round(time.perf_counter() - self._started, 3)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        out: dict[str, Any] = {
            "title": self.title,
            "summary": self.summary,
            "passed": self.passed,
            "duration_s": self.duration_s,
            "figures": self.figures,
            "checks": [c.as_dict() for c in self.checks],
        }
        if self.cases:
            out["cases"] = self.cases
        return out


def find_secrets(text: str, secrets: Iterable[str]) -> list[str]:
    """Which of ``secrets`` occur in ``text`` (raw, JSON-escaped or repr-escaped); masked."""
    found = []
    for secret in secrets:
        if not secret:
            continue
        forms = {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]}
        if any(form in text for form in forms):
            found.append(secret[:2] + "***")
    return found


def envelope(
    *,
    run_id: str,
    quick: bool,
    seed: int,
    metadata: Mapping[str, Any],
    sections: Iterable[Section],
) -> dict[str, Any]:
    """The reliability document (not yet redacted)."""
    listed = list(sections)
    checks = [c for s in listed for c in s.checks]
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "mode": "quick" if quick else "full",
        "seed": seed,
        "passed": bool(listed) and all(s.passed for s in listed),
        "checks_total": len(checks),
        "checks_failed": sum(not c.passed for c in checks),
        "metadata": dict(metadata),
        "sections": {s.name: s.as_dict() for s in listed},
    }


def leak_paths(obj: Any, secrets: Iterable[str], path: str = "$") -> list[str]:
    """JSON paths (``$.sections.kill.cases[3].message``) of strings holding a secret."""
    wanted = [s for s in secrets if s]
    if isinstance(obj, Mapping):
        return [p for k, v in obj.items() for p in leak_paths(v, wanted, f"{path}.{k}")]
    if isinstance(obj, list | tuple):
        return [p for i, v in enumerate(obj) for p in leak_paths(v, wanted, f"{path}[{i}]")]
    return [path] if find_secrets(str(obj), wanted) else []


def serialise(document: Mapping[str, Any], secrets: Iterable[str]) -> str:
    """Redacted JSON text, every known secret value masked as ``***``.

    The caller records a failed check for any secret found before this point (see
    :func:`leak_paths`); masking here keeps the file safe to share either way.
    """
    text = json.dumps(redact(dict(document)), indent=2, allow_nan=False, default=str) + "\n"
    for secret in (s for s in secrets if s):
        for form in {secret, json.dumps(secret)[1:-1]}:
            text = text.replace(form, "***")
    if find_secrets(text, secrets):  # defensive: a form the masking above did not cover
        raise LanceSyncError(f"refusing to write {RELIABILITY_FILE}: it contains a secret value")
    return text


def write_reliability(run_dir: Path, text: str) -> Path:
    """Write ``text`` as ``run_dir/reliability.json`` atomically (temp file, fsync, rename)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / RELIABILITY_FILE
    atomic_write(target, text)
    return target


def render_summary(sections: Iterable[Section]) -> str:
    """A plain-text table, one row per check, then each section's headline figures."""
    listed = list(sections)
    rows = [("section", "check", "result")]
    for section in listed:
        for check in section.checks:
            rows.append((section.name, check.name, "PASS" if check.passed else "FAIL"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(row[j].ljust(widths[j]) for j in range(3)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines += [f"{s.name}: {s.summary}" for s in listed if s.summary]
    failed = [(s.name, c) for s in listed for c in s.checks if not c.passed]
    if failed:
        lines.append("")
        lines += [f"FAIL {name}: {c.name}: {c.detail}" for name, c in failed]
    return "\n".join(lines)
