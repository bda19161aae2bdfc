"""Every module under core/ is pure (DESIGN.md "The core is pure"): no I/O,
no clock, no global RNG, and nothing from the layers above (runtime, storage,
sim, check, cli)."""

from __future__ import annotations

import ast
import pathlib

import replikv.core as core_pkg

FORBIDDEN = {"asyncio", "socket", "time", "random", "os", "threading", "subprocess", "select", "selectors",
             "signal", "ssl", "uvloop"}
UPPER_LAYERS = ("replikv.runtime", "replikv.storage", "replikv.sim", "replikv.check", "replikv.cli",
                "replikv.modes")
ALLOWED_TYPE_ONLY = {"random"}  # `import random` for the Random type; never called globally


def _modules(path: pathlib.Path) -> set[str]:
    """Every module ``path`` imports, dotted."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _imports(path: pathlib.Path) -> set[str]:
    return {name.split(".")[0] for name in _modules(path)}


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


def core_files() -> list[pathlib.Path]:
    return sorted(pathlib.Path(core_pkg.__file__).parent.rglob("*.py"))


def test_every_core_module_imports_no_io_module() -> None:
    files = core_files()
    assert any(f.parent.name == "raft" for f in files) and any(f.parent.name == "shipping" for f in files)
    for f in files:
        bad = (_imports(f) & FORBIDDEN) - ALLOWED_TYPE_ONLY
        assert not bad, f"{f} imports {bad}"
        assert not _global_random_calls(f), _global_random_calls(f)
        upward = [m for m in _modules(f) if m.startswith(UPPER_LAYERS)]
        assert not upward, f"{f} imports from a layer above core/: {upward}"


def test_the_check_itself_catches_an_io_import(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os.path\nfrom time import monotonic\nfrom replikv.runtime import base\n")
    assert _imports(bad) & FORBIDDEN == {"os", "time"}
    assert [m for m in _modules(bad) if m.startswith(UPPER_LAYERS)] == ["replikv.runtime"]
