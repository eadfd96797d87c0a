"""The ``lancesync-bench`` command line: one module per subcommand.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning an exit code. Errors a
user can cause (:class:`~lancesync_bench.errors.LanceSyncError`) print one line, never a
traceback: exit 2 for configuration and usage errors, 1 for the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from lancesync_bench.errors import ConfigError, LanceSyncError, UserIdError

__all__ = ["main"]

# Subcommand modules, in the order `--help` lists them.
_COMMANDS = (
    "run",
    "tier",
    "sync-cost",
    "report",
    "compare",
    "gate",
    "matrix",
    "config",
    "s3",
    "chaos",
    "migrate",
)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors exit 2 with the subcommand's usage line."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available subcommand registered."""
    parser = _Parser(
        prog="lancesync-bench",
        description=(
            "Benchmarks and demos for a LanceDB sync system: the storage mode chosen by "
            "frontend type and backend location, measured against local and S3 targets."
        ),
    )
    from lancesync_bench import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module_name = f"lancesync_bench.cli.{name.replace('-', '_')}_cmd"
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # not built yet
            raise
        module.register(subparsers)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds like Ctrl-C, so every server and folder is cleaned up."""


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(signum)


def _quiet_stdout() -> None:
    """After a closed pipe (``| head``), send further output nowhere instead of failing."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _failure(exc: BaseException) -> tuple[str, int]:
    """The one line and the exit code for an error the command line reports itself."""
    if isinstance(exc, ConfigError | UserIdError):
        return f"error: {exc}", 2
    if isinstance(exc, LanceSyncError):
        return f"error: {exc}", 1
    if isinstance(exc, MemoryError):
        return "error: out of memory; use smaller table sizes (workload.sizes)", 1
    if isinstance(exc, Terminated):
        return "terminated (SIGTERM); cleaned up", 128 + signal.SIGTERM
    return "interrupted", 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    # CI runners, `timeout` and `kill` send SIGTERM: clean up as Ctrl-C does. Only the main
    # thread may install a handler (tests call main() from others).
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = int(func(args))
        sys.stdout.flush()  # a closed pipe shows here, not as a traceback at exit
        return code
    except BrokenPipeError:
        # The reader went away (`config | head -1`): what it wanted was printed.
        _quiet_stdout()
        return 0
    except (LanceSyncError, MemoryError, KeyboardInterrupt) as exc:
        message, code = _failure(exc)
        print(f"lancesync-bench: {message}", file=sys.stderr)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
