"""The seed plans of the simulator tests: a plan split into chunks (one pytest test each, so
the suite's workers share them), their test ids, and a chunk's run with its failures listed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from replikv.sim.engine import SafetyViolation

__all__ = ["assert_seeds_pass", "chunk_id", "split"]


def split(plan: Sequence[tuple[Any, ...]], chunk: int, long_chunk: int) -> list[tuple[Any, ...]]:
    """``(*head, first seed, seeds, long)`` rows -> ``(*head, start, count, long)`` chunks of at
    most ``chunk`` seeds (``long_chunk`` for long seeds)."""
    return [(*head, start, min(step, first + count - start), long)
            for *head, first, count, long in plan
            for step in [long_chunk if long else chunk]
            for start in range(first, first + count, step)]


def chunk_id(chunk: tuple[Any, ...], prefix: str = "") -> str:
    """``ml-3n-long-20000+8``: the prefix, the head's fields, nodes, long, first seed + count
    (the chunk's last four fields are nodes, start, count, long)."""
    *head, nodes, start, count, long = chunk
    parts = [prefix] if prefix else []
    return "-".join([*parts, *map(str, head), f"{nodes}n", *(["long"] if long else []), f"{start}+{count}"])


def assert_seeds_pass(run_one: Callable[[int], object], start: int, count: int) -> None:
    """Run seeds ``start .. start + count - 1``; fail naming the first failing ones (with their
    replay commands)."""
    failures = []
    for seed in range(start, start + count):
        try:
            run_one(seed)
        except SafetyViolation as e:
            failures.append(str(e))
    assert not failures, f"{len(failures)} failing seeds:\n" + "\n".join(failures[:5])
