"""Checking an output folder before any work is done, so a typo costs nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path

from lancesync_bench.errors import ConfigError

__all__ = ["check_output_folder"]


def check_output_folder(path: Path, option: str = "--out") -> None:
    """Create ``path`` if missing and make sure a file can be written in it.

    Raises :class:`ConfigError` (one line, exit 2) naming ``option`` and the path when it is
    a file, cannot be created, or is not writable.
    """
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: exists and is not a folder; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # A probe file answers for permissions, read-only mounts and root alike.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ConfigError(f"{option} {path}: cannot write there ({why})") from None
