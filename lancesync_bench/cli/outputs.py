"""Checking an output folder before any work is done, so a typo costs nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path

from lancesync_bench.errors import ConfigError

__all__ = ["check_output_folder"]


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
