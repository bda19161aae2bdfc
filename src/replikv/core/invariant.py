"""Broken invariants: raised, never caught, never stripped by ``python -O``."""

from __future__ import annotations


class InvariantViolation(Exception):
    """A rule of the algorithm was broken: a bug, never an expected condition."""


def invariant(condition: bool, message: str) -> None:
    """Raise ``InvariantViolation(message)`` unless ``condition`` holds.

    Used instead of ``assert`` because asserts vanish under ``python -O``.
    """
    if not condition:
        raise InvariantViolation(message)
