"""Output folders checked before any work is done (so a typo costs nothing), and the
shared ending of the commands that judge a list of checks."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lancesync_bench.errors import ConfigError

if TYPE_CHECKING:
    from lancesync_bench.bench.tier import TierCheck

__all__ = ["check_output_folder", "elapsed_progress", "write_checks"]


def check_output_folder(path: Path, option: str = "--out") -> None:
    """Make sure ``path`` is, or can be created as, a folder a file can be written in.

    Nothing is created: the folder itself is made when results are written. Raises
    :class:`ConfigError` (one line, exit 2) naming ``option`` and the path when it is a
    file, lies below a file, or sits where this process cannot write.
    """
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: exists and is not a folder; give a folder")
    existing = path
    while not existing.exists():  # the nearest ancestor that exists: where mkdir starts
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {path}: {existing} is a file, not a folder")
    try:
        # A probe file answers for permissions, read-only mounts and root alike.
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ConfigError(f"{option} {path}: cannot write in {existing} ({why})") from None


def elapsed_progress() -> Callable[[str], None]:
    """A progress printer: each message on stderr after the seconds since this call."""
    start = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f} s] {message}", file=sys.stderr, flush=True)

    return progress


def write_checks(
    path: Path, result: dict[str, Any], checks: list[TierCheck], *, label: str, fail_on_miss: bool
) -> int:
    """Save ``result`` with its judged ``checks`` to ``path``, print the checks' table and
    where the file is, and return the exit code (1 on a FAIL when ``fail_on_miss``)."""
    from lancesync_bench.bench.tier import format_checks

    result["checks"] = [c.__dict__ for c in checks]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True))
    print(format_checks(checks))
    print(f"\n{label} results: {path} ({result['wall_s']} s)")
    failed = any(c.verdict == "FAIL" for c in checks)
    return 1 if failed and fail_on_miss else 0
