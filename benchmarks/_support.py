"""Helpers the benchmark scripts share: free loopback ports, waits, log tails, timing,
probes that run in a thread beside a measurement.

The scripts run as ``python benchmarks/<name>.py``, so this directory is on
``sys.path`` and they ``import _support``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

_taken: set[int] = set()  # ports handed out in this run, never handed out twice


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """``count`` consecutive free loopback ports, none handed out before in this run."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        block = list(range(base, base + count))
        if base + count <= 65535 and not _taken & set(block) and all(map(port_free, block)):
            _taken.update(block)
            return block
    raise RuntimeError(f"no block of {count} free ports found")


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
