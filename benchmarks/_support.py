"""Helpers the benchmark scripts share: free loopback ports, waits, log tails, timing,
probes that run in a thread beside a measurement.

The scripts run as ``python benchmarks/<name>.py``, so this directory is on
``sys.path`` and they ``import _support``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from replikv.ports import free_port_block

def free_ports(count: int) -> list[int]:
    """``count`` consecutive free loopback ports, picked as ``replikv.ports`` picks them (below the
    ephemeral range, never the same ones twice in a run)."""
    base = free_port_block(count)
    return list(range(base, base + count))


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str,
               alive: Callable[[], str | None] = lambda: None, interval_s: float = 0.1) -> None:
    """Poll ``predicate``; fail early if ``alive()`` names a problem, or at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return
        problem = alive()
        if problem:
            raise RuntimeError(f"{what}: {problem}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def best_of(fn: Callable[[], None], rounds: int = 5) -> float:
    """The fastest of ``rounds`` timed calls of ``fn``, in seconds (the least
    disturbed by anything else running)."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


class Background:
    """A probe that runs ``_run`` in a daemon thread for the length of a ``with`` block;
    ``_run`` watches ``self._stop`` (set on leaving the block) and returns when it is set."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "Background":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
