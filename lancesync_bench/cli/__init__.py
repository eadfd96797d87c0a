"""The ``lancesync-bench`` command line: one module per subcommand.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning an exit code. Errors a
user can cause (:class:`~lancesync_bench.errors.LanceSyncError`) print one line, never a
traceback: exit 2 for configuration and usage errors, 1 for the rest.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lancesync_bench.errors import ConfigError, LanceSyncError, UserIdError

__all__ = ["main"]

# Subcommand modules, in the order `--help` lists them.
_COMMANDS = ("run", "report", "compare", "gate", "matrix", "config", "s3", "chaos", "migrate")


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
            module = importlib.import_module(f"lancesync_bench.cli.{name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name == f"lancesync_bench.cli.{name}_cmd":
                continue  # not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args))
    except (ConfigError, UserIdError) as exc:
        print(f"lancesync-bench: error: {exc}", file=sys.stderr)
        return 2
    except LanceSyncError as exc:
        print(f"lancesync-bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lancesync-bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
