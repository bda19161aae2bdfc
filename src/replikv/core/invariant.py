"""The `invariant()` helper: a broken invariant is a bug, never an expected condition.

Rule (DESIGN.md, "Rules that keep the core honest"): a broken invariant raises
`InvariantViolation` through `invariant()` and is never caught; a bare
`assert` would vanish under `python -O`. Expected conditions (not the leader,
a dropped proposal) are typed errors in each protocol's `errors.py` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

__all__ = ["InvariantViolation", "invariant", "violated"]


class InvariantViolation(Exception):
    """An invariant of a core object does not hold: the code (or its input) is broken."""


def invariant(cond: bool, msg: str | Callable[[], str]) -> None:
    """Raise `InvariantViolation(msg)` unless `cond` holds.

    `msg` may be a zero-argument callable so that an expensive message is only
    built when the invariant is actually broken.
    """
    if not cond:
        violated(msg() if callable(msg) else msg)


def violated(msg: str) -> NoReturn:
    """Raise `InvariantViolation(msg)` unconditionally (unreachable branches)."""
    raise InvariantViolation(msg)
