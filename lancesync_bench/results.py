"""The results envelope: one folder per run, ``results.json`` plus a tidy ``samples.csv``.

``results/README.md`` documents every field. Files are written atomically (temporary file,
fsync, rename) with the samples first and ``results.json`` last, so a folder holding
``results.json`` is complete. Everything passes :func:`redact` first, and nothing is written
when a known secret string would still appear in the output.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict, get_args

from lancesync_bench.config import Secret
from lancesync_bench.errors import LanceSyncError
from lancesync_bench.stats import Status

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "SAMPLE_COLUMNS",
    "SCHEMA_VERSION",
    "Phase",
    "ResultsError",
    "SampleRow",
    "StatsRow",
    "VerdictRow",
    "atomic_write",
    "collect_metadata",
    "latest_run",
    "load",
    "load_run",
    "load_stats",
    "load_verdicts",
    "new_run_id",
    "redact",
    "write_run",
]

# Bump on any change a reader must know about (new, renamed or removed fields, changed
# units). Version 2 added ``machine_slowdown`` to the samples and the steady-sample figures
# to stats and verdicts; version 1 runs still load, with those columns missing (NaN).
# Version 3 added confidence intervals (stats: p50/p95/p99_ci_low/high_ms; verdicts:
# ci_low, ci_high, confidence), recall verdict rows (unit, value, data) and where each
# target came from (target_source); UNSURE joined the statuses. Older runs load with those
# columns missing.
SCHEMA_VERSION = 3
_READABLE_VERSIONS = frozenset({1, 2, SCHEMA_VERSION})
RESULTS_FILE = "results.json"
SAMPLES_FILE = "samples.csv"
Phase = Literal["warmup", "cold", "warm"]
# Key names whose values are secrets wherever they appear (matched case-insensitively).
_SECRET_KEY = re.compile(r"secret|passw|token|credential|api_?key|private_?key|authorization")
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")  # user:password@ in a URL
_VERSIONED = ("lancedb", "pylance", "pyarrow", "numpy", "pandas", "lancesync-bench")


class ResultsError(LanceSyncError, ValueError):
    """A results folder that cannot be written safely or read back."""


class _Key(TypedDict):
    scenario: str
    storage_mode: str
    profile: str  # network profile name, e.g. "loopback"
    size: int  # table rows
    operation: str  # e.g. "point_read", "vector_search", "add_1", "add_batch", "sync"
    path: str  # what answered: "service" or a baseline such as "baseline:aws-s3-sync"


class SampleRow(_Key):
    """One timed operation (a row of samples.csv)."""

    phase: Phase
    iteration: int  # 0-based within (key, phase)
    latency_ms: float
    requests: int | None  # S3 requests the operation made (None: not counted)
    bytes: int | None  # bytes transferred to or from S3 (None: not counted)
    # The CPU probe around the operation: its slower run over its usual time (1.0: usual
    # speed; >= 2: half speed or worse). Absent or None where no probe ran (the sweep).
    machine_slowdown: NotRequired[float | None]


class StatsRow(_Key):
    """A :class:`~lancesync_bench.stats.Summary` of one (key, phase)."""

    phase: Phase
    n: int
    mean_ms: float | None
    min_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    # Machine noise (see lancesync_bench.stats.steady): None where no sample was probed.
    slowed_n: NotRequired[int | None]  # samples with machine_slowdown >= 2
    steady_n: NotRequired[int | None]  # samples with machine_slowdown < 2
    steady_p95_ms: NotRequired[float | None]  # of the steady samples, with the same n guard
    steady_p99_ms: NotRequired[float | None]
    # Distribution-free 95% intervals of the percentiles (lancesync_bench.stats.
    # percentile_interval); None where n cannot support one (p95 needs 72, p99 368).
    p50_ci_low_ms: NotRequired[float | None]
    p50_ci_high_ms: NotRequired[float | None]
    p95_ci_low_ms: NotRequired[float | None]
    p95_ci_high_ms: NotRequired[float | None]
    p99_ci_low_ms: NotRequired[float | None]
    p99_ci_high_ms: NotRequired[float | None]


class VerdictRow(_Key):
    """A figure held against a target (see :func:`lancesync_bench.stats.judge`)."""

    target: str  # target name, e.g. "local_read"
    criterion: str  # Target.describe(), e.g. "p95 < 10 ms"
    status: Status
    value_ms: float | None
    note: str
    # Machine noise behind the figure; the status above is judged on all samples regardless.
    n: NotRequired[int]  # samples the figure comes from
    slowed_n: NotRequired[int | None]  # of those, samples with machine_slowdown >= 2
    steady_value_ms: NotRequired[float | None]  # the judged statistic of the steady samples
    # For a FAIL at p95/p99 only: the steady samples' figure against the same target.
    steady_status: NotRequired[Status | None]
    # Version 3: the judged figure with its unit ("ms", or "recall" for recall@10 rows,
    # whose value_ms is None), its interval (None: n too small) and the interval's level.
    unit: NotRequired[str]
    value: NotRequired[float | None]
    ci_low: NotRequired[float | None]
    ci_high: NotRequired[float | None]
    confidence: NotRequired[float]
    target_source: NotRequired[str]  # "default" or the scenario file that set the target
    data: NotRequired[str]  # recall rows: the data measured on (dataset, rows, dim, queries)


SAMPLE_COLUMNS: tuple[str, ...] = tuple(SampleRow.__annotations__)
# Columns a row may leave out (written as empty cells): rows built by code that has no probe.
_OPTIONAL_SAMPLE_COLUMNS = frozenset({"machine_slowdown"})
_PHASES = frozenset(get_args(Phase))


def new_run_id(now: datetime | None = None) -> str:
    """A sortable run id such as ``20250101T120000Z-1a2b3c``."""
    now = now or datetime.now(UTC)
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{os.urandom(3).hex()}"


def _git(*args: str) -> str | None:
    here = str(Path(__file__).resolve().parent)
    try:
        cmd = ["git", "-C", here, *args]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None  # no git binary
    return done.stdout.strip() if done.returncode == 0 else None  # else: not a checkout


def _proc_field(path: str, name: str) -> str | None:
    try:
        for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return None


def collect_metadata(
    s3_info: Mapping[str, Any] | None = None, profiles: Iterable[Any] = ()
) -> dict[str, Any]:
    """Describe the run's software, machine, S3 server and network profiles.

    Holds no hostname and no user name (nothing from ``platform.node()`` or home paths).
    ``profiles`` are :class:`~lancesync_bench.scenarios.Profile` objects or dicts.
    """
    commit = _git("rev-parse", "HEAD") or None
    status = _git("status", "--porcelain", "--untracked-files=no")
    mem_kb = (_proc_field("/proc/meminfo", "MemTotal") or "").removesuffix("kB").strip()
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "git_commit": commit,
        "git_dirty": None if commit is None or status is None else bool(status),
        "versions": {name: _version(name) for name in _VERSIONED},
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),  # OS, kernel, arch, libc; never the node name
        "machine": platform.machine(),
        "cpu": {
            "model": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or None,
            "count": os.cpu_count(),
            "usable": len(affinity(0)) if affinity else os.cpu_count(),
        },
        "memory_bytes": int(mem_kb) * 1024 if mem_kb.isdigit() else None,
        "s3": redact(dict(s3_info)) if s3_info is not None else None,
        "profiles": [
            asdict(p) if is_dataclass(p) and not isinstance(p, type) else dict(p) for p in profiles
        ],
    }


def redact(obj: Any) -> Any:
    """A copy of ``obj`` with secret-looking keys' values, Secrets and URL passwords as ``***``."""
    if isinstance(obj, Secret):
        return "***"
    if isinstance(obj, Mapping):
        return {
            k: "***" if v is not None and _SECRET_KEY.search(str(k).lower()) else redact(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return _URL_USERINFO.sub("***@", obj)
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # NumPy scalars
        return obj.item()
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable: {obj!r}")


def _samples_csv(rows: Iterable[Mapping[str, Any]]) -> tuple[str, int]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SAMPLE_COLUMNS)
    count = 0
    for count, row in enumerate(rows, 1):
        missing = set(SAMPLE_COLUMNS) - set(row)
        if missing - _OPTIONAL_SAMPLE_COLUMNS or set(row) - set(SAMPLE_COLUMNS):
            raise ResultsError(
                f"samples row {count}: expected keys {SAMPLE_COLUMNS} "
                f"({', '.join(sorted(_OPTIONAL_SAMPLE_COLUMNS))} optional), got {dict(row)!r}"
            )
        if row["phase"] not in _PHASES:
            raise ResultsError(
                f"samples row {count}: phase must be one of {sorted(_PHASES)}, got {dict(row)!r}"
            )
        writer.writerow(["" if row.get(c) is None else row[c] for c in SAMPLE_COLUMNS])
    return buf.getvalue(), count


def _check_secrets(text: str, secrets: Iterable[str], name: str) -> None:
    for secret in secrets:
        if secret and (secret in text or json.dumps(secret)[1:-1] in text):
            raise ResultsError(f"refusing to write {name}: it still contains a secret value")


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file beside it, fsync, rename): a reader
    sees the old file or the whole new one, never half of it. Newlines are written as is."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_run(
    run_dir: str | Path,
    *,
    metadata: Mapping[str, Any],
    scenarios: Sequence[Any],
    stats_rows: Iterable[StatsRow],
    samples_rows: Iterable[SampleRow],
    verdict_rows: Iterable[VerdictRow],
    extra: Mapping[str, Any] | None = None,
    secrets: Iterable[str] = (),
    run_id: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``samples.csv`` then ``results.json`` into ``run_dir``; return the json path.

    ``scenarios`` are :class:`~lancesync_bench.scenarios.Scenario` objects or dicts. Both
    files are fully serialized, redacted and checked against ``secrets`` before anything
    touches the disk; a run folder that already holds results is refused unless
    ``overwrite``. The run id defaults to the folder's name.
    """
    folder = Path(run_dir)
    target = folder / RESULTS_FILE
    if target.exists() and not overwrite:
        raise ResultsError(f"{target} already exists; results are never silently replaced")
    secrets = [s for s in secrets if s]
    samples_text, count = _samples_csv(samples_rows)
    _check_secrets(samples_text, secrets, SAMPLES_FILE)
    envelope = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id or folder.name,
        "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "metadata": redact(dict(metadata)),
        "scenarios": redact([s.to_dict() if hasattr(s, "to_dict") else s for s in scenarios]),
        "stats": redact(list(stats_rows)),
        "verdicts": redact(list(verdict_rows)),
        "samples_file": SAMPLES_FILE,
        "samples_count": count,
        "samples_sha256": hashlib.sha256(samples_text.encode()).hexdigest(),
        "extra": redact(dict(extra or {})),
    }
    text = json.dumps(envelope, indent=2, allow_nan=False, default=_json_default) + "\n"
    _check_secrets(text, secrets, RESULTS_FILE)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / SAMPLES_FILE, samples_text)
    atomic_write(target, text)  # last: its presence marks the run complete
    return target


def _results_path(path: str | Path) -> Path:
    p = Path(path)
    return p / RESULTS_FILE if p.is_dir() else p


def load_run(path: str | Path) -> dict[str, Any]:
    """The parsed ``results.json`` of a run folder (or of the file itself), version-checked."""
    file = _results_path(path)
    try:
        data: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{file}: cannot read results: {exc}") from None
    version = data.get("schema_version")
    if version not in _READABLE_VERSIONS:
        known = ", ".join(str(v) for v in sorted(_READABLE_VERSIONS))
        raise ResultsError(f"{file}: schema_version {version!r}; this reader knows {known}")
    return data


def load(path: str | Path) -> pd.DataFrame:
    """The samples of a run as a DataFrame, with a leading ``run_id`` column.

    Every column of :data:`SAMPLE_COLUMNS` is present: one a run predates (such as
    ``machine_slowdown`` before schema version 2) is all missing values.
    """
    import pandas as pd

    data = load_run(path)
    csv_path = _results_path(path).parent / data["samples_file"]
    raw = csv_path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != data["samples_sha256"]:
        raise ResultsError(f"{csv_path}: does not match the checksum in {RESULTS_FILE}")
    dtypes = {
        "size": "int64",
        "iteration": "int64",
        "latency_ms": "float64",
        "requests": "Int64",
        "bytes": "Int64",
        "machine_slowdown": "float64",
    }
    text_cols = {c: "string" for c in SAMPLE_COLUMNS if c not in dtypes}
    frame = pd.read_csv(
        io.BytesIO(raw),
        dtype={**dtypes, **text_cols},
        keep_default_na=False,
        na_values={c: [""] for c in ("requests", "bytes", "machine_slowdown")},
    )
    for column in _OPTIONAL_SAMPLE_COLUMNS - set(frame.columns):
        # An older run: the column did not exist yet, so every value is missing.
        frame[column] = pd.Series(math.nan, index=frame.index, dtype="float64")
    absent = [c for c in SAMPLE_COLUMNS if c not in frame.columns]
    if absent:
        raise ResultsError(f"{csv_path}: missing column(s) {', '.join(absent)}")
    frame = frame[list(SAMPLE_COLUMNS)]
    frame.insert(0, "run_id", data["run_id"])
    return frame


def _table(path: str | Path, key: str, columns: Sequence[str]) -> pd.DataFrame:
    import pandas as pd

    data = load_run(path)
    frame = pd.DataFrame(data[key], columns=list(columns))
    frame.insert(0, "run_id", data["run_id"])
    return frame


def load_stats(path: str | Path) -> pd.DataFrame:
    """The stats rows of a run (one per scenario/profile/size/operation/path/phase)."""
    return _table(path, "stats", list(StatsRow.__annotations__))


def load_verdicts(path: str | Path) -> pd.DataFrame:
    """The verdict rows of a run (one per figure held against a target)."""
    return _table(path, "verdicts", list(VerdictRow.__annotations__))


def latest_run(results_dir: str | Path) -> Path | None:
    """The most recently created complete run folder under ``results_dir``, or None."""
    runs: list[tuple[str, str, Path]] = []
    for file in Path(results_dir).glob(f"*/{RESULTS_FILE}"):
        try:
            created = str(json.loads(file.read_text(encoding="utf-8"))["created_at"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable or foreign: not a run this package wrote
        runs.append((created, file.parent.name, file.parent))
    return max(runs)[2] if runs else None
