"""The Raft core is pure (DESIGN.md "The core is pure"): no I/O, clock or global RNG."""

from __future__ import annotations

import ast
import pathlib

import replikv.core.raft as raft_pkg

FORBIDDEN = {"asyncio", "socket", "time", "random", "os", "threading", "subprocess", "select"}
ALLOWED_TYPE_ONLY = {"random"}  # `import random` for the Random type; never called globally


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _global_random_calls(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text())
    bad = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
            and node.attr != "Random"
        ):
            bad.append(f"{path.name}:{node.lineno} random.{node.attr}")
    return bad


def test_raft_core_imports_no_io_module() -> None:
    root = pathlib.Path(raft_pkg.__file__).parent
    files = sorted(root.glob("*.py")) + [root.parent / "invariant.py"]
    for f in files:
        bad = (_imports(f) & FORBIDDEN) - ALLOWED_TYPE_ONLY
        assert not bad, f"{f.name} imports {bad}"
        assert not _global_random_calls(f), _global_random_calls(f)
