"""Stopping the command line from outside leaves nothing behind.

SIGTERM (what `timeout`, `kill` and CI runners send) unwinds like Ctrl-C: the embedded S3
server stops and every temporary folder goes. A kill -9 of the process that started the
server runs no cleanup at all; the server then dies with its parent (Linux parent-death
signal), so no `weed` process is orphaned.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
# Starting the server takes ~1 s; a loaded 2-core machine gets far more before we give up.
_WAIT_S = 60.0

_TINY = """
description = "tiny local"
[env]
FRONTEND_TYPE = "desktop"
BACKEND_LOCATION = "local"
[workload]
sizes = [200]
dim = 16
seed = 7
repetitions = 20
warmup = 2
queries = 20
[profiles.loopback]
rtt_ms = 0
default = true
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _serves(proc: Path) -> bool:
    """Whether the process is the server (``weed mini``), not ``weed version``."""
    try:
        return b"mini" in (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False


def _weed_children(parent: int) -> list[int]:
    """Pids of live ``weed`` processes whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        if comm == "weed" and int(fields[1]) == parent and fields[0] != "Z" and _serves(entry):
            found.append(int(entry.name))
    return found


def _wait_for(check: Callable[[], T], what: str, proc: subprocess.Popen[bytes] | None = None) -> T:
    deadline = time.monotonic() + _WAIT_S
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _env(tmp: Path) -> dict[str, str]:
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    for name in ("FRONTEND_TYPE", "BACKEND_LOCATION"):
        env.pop(name, None)
    return env


def test_sigterm_stops_the_server_and_removes_temporary_folders(tmp_path: Path) -> None:
    scenarios, tmp, out = tmp_path / "scenarios", tmp_path / "tmp", tmp_path / "results"
    scenarios.mkdir()
    tmp.mkdir()
    (scenarios / "tiny.toml").write_text(_TINY, encoding="utf-8")
    cmd = [
        sys.executable,
        "-m",
        "lancesync_bench",
        "run",
        "--s3",
        "embedded",
        "--scenarios-dir",
        str(scenarios),
        "--out",
        str(out),
        "--no-baselines",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, env=_env(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        weed = _wait_for(lambda: _weed_children(proc.pid), "the embedded S3 server", proc)
        # The run is measuring, or about to: the moment CI's timeout would strike.
        _wait_for(lambda: any(tmp.glob("lancesync-bench-*")), "the run's work folder", proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=_WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    assert b"Traceback" not in err, err.decode()
    assert b"terminated (SIGTERM)" in err
    assert not [pid for pid in weed if _alive(pid)]
    assert list(tmp.iterdir()) == []


_STARTER = """
import sys, time
from lancesync_bench.s3.embedded import EmbeddedSeaweedFS
server = EmbeddedSeaweedFS()
server.start()
print(server.data_dir, flush=True)
time.sleep(600)
"""


def test_server_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _STARTER], env=_env(tmp_path), stdout=subprocess.PIPE
    )
    weed: list[int] = []
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip(), "the starter printed no data folder"
        weed = _weed_children(proc.pid)
        assert weed, "no weed process under the starter"
        proc.kill()  # SIGKILL: no cleanup code runs in the parent
        proc.wait()
        # The kernel signals the child at once; allow a loaded machine a few seconds.
        _wait_for(lambda: not any(_alive(pid) for pid in weed), "weed to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in weed:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
