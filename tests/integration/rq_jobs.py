"""Jobs for the python-rq test (test_rq.py): a worker process imports them by name."""

from __future__ import annotations


def add(a: int, b: int) -> int:
    return a + b
