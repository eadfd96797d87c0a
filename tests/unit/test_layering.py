"""chaos/ imports only the stages before it: never the command line, and no circle.

The order is config -> s3 -> storage -> bench/chaos -> report -> cli. Two arrows once broke
it: chaos/badinput.py imported lancesync_bench.cli (upward), and chaos/context.py and
chaos/security.py imported each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "lancesync_bench"


def _imports(path: Path) -> set[str]:
    """Every lancesync_bench module ``path`` imports, at any depth (TYPE_CHECKING too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # ``from lancesync_bench.chaos import kill`` imports the module chaos.kill.
            package = PACKAGE.parent.joinpath(*node.module.split("."))
            found.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if (package / f"{alias.name}.py").is_file() or (package / alias.name).is_dir()
            )
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("lancesync_bench")}


def test_chaos_never_imports_the_command_line_or_the_report() -> None:
    for path in sorted((PACKAGE / "chaos").glob("*.py")):
        upward = {
            m
            for m in _imports(path)
            if m.startswith(("lancesync_bench.cli", "lancesync_bench.report"))
        }
        assert not upward, f"{path.name} imports {sorted(upward)}"


def test_chaos_modules_import_no_circle() -> None:
    graph = {
        f"lancesync_bench.chaos.{path.stem}": {
            m for m in _imports(path) if m.startswith("lancesync_bench.chaos.")
        }
        for path in (PACKAGE / "chaos").glob("*.py")
    }

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, set()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    circles = sorted(m for m in graph if reaches(m, m, {m}))
    assert circles == []


def test_the_suite_context_imports_no_section() -> None:
    assert _imports(PACKAGE / "chaos" / "context.py") <= {"lancesync_bench.s3.endpoint"}
