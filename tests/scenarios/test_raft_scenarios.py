"""Data-driven Raft scenarios (the style of etcd-io/raft's testdata).

Each file in tests/scenarios/raft/*.txt is a sequence of blocks:

    # comments
    command args...
    ----
    expected output (no blank lines)
    <blank line>

The runner feeds each command to `replikv.sim.raft_env.InteractionEnv` and
compares the output with the golden text. `REWRITE=1 pytest ...` rewrites
the goldens from the actual output (review the diff before committing).
"""

from __future__ import annotations

import os
import pathlib

import pytest

from replikv.sim.raft_env import InteractionEnv

DIR = pathlib.Path(__file__).parent / "raft"
FILES = sorted(DIR.glob("*.txt"))


def parse(text: str) -> list[tuple[list[str], str, str]]:
    """Blocks of (leading comment/blank lines, command, expected output)."""
    blocks: list[tuple[list[str], str, str]] = []
    lines = text.split("\n")
    i = 0
    pre: list[str] = []
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            pre.append(line)
            i += 1
            continue
        cmd = line
        i += 1
        if i >= len(lines) or lines[i] != "----":
            raise ValueError(f"line {i}: expected ---- after {cmd!r}")
        i += 1
        out: list[str] = []
        while i < len(lines) and lines[i] != "":
            out.append(lines[i])
            i += 1
        blocks.append((pre, cmd, "\n".join(out)))
        pre = []
        i += 1  # the blank line that ends the block
    if pre and any(p.strip() for p in pre):
        blocks.append((pre, "", ""))
    return blocks


def render(blocks: list[tuple[list[str], str, str]]) -> str:
    parts: list[str] = []
    for pre, cmd, out in blocks:
        parts.extend(pre)
        if cmd:
            parts.append(cmd)
            parts.append("----")
            if out:
                parts.append(out)
            parts.append("")
    return "\n".join(parts).rstrip("\n") + "\n"


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_scenario(path: pathlib.Path) -> None:
    blocks = parse(path.read_text())
    env = InteractionEnv()
    actual = []
    for pre, cmd, expected in blocks:
        got = env.run(cmd) if cmd else ""
        actual.append((pre, cmd, got))
    if os.environ.get("REWRITE") == "1":
        path.write_text(render(actual))
        return
    for (_, cmd, expected), (_, _, got) in zip(blocks, actual):
        assert got == expected, (
            f"{path.name}: command {cmd!r}\n--- expected\n{expected}\n--- got\n{got}"
        )


def test_scenario_files_exist() -> None:
    names = {f.stem for f in FILES}
    for required in (
        "election",
        "prevote_partition",
        "checkquorum_stepdown",
        "log_backtracking",
        "snapshot_lagging_follower",
        "membership",
        "leadership_transfer",
        "read_index",
    ):
        assert required in names, f"missing scenario {required}.txt"
